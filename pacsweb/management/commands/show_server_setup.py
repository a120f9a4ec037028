"""Print what the web server needs from the server setup, as JSON (read by gunicorn.conf.py)."""

import json

from django.core.management.base import BaseCommand

from pacsweb.models import ServerSetup


class Command(BaseCommand):
    help = "Print the web port, SSL switch and certificate paths of the server setup as JSON."

    def handle(self, *args, **options) -> None:
        setup = ServerSetup.get()
        self.stdout.write(json.dumps(setup.web_server_settings()))
