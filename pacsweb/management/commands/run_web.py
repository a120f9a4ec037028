"""Start the web server (gunicorn) with deploy/gunicorn.conf.py."""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pacsweb.models import ServerSetup


class Command(BaseCommand):
    help = "Run the web server on the port and with the SSL setting of the server setup."

    def handle(self, *args, **options) -> None:
        setup = ServerSetup.get()
        if setup.web_port == 0:
            raise CommandError(
                "The web module is disabled (web port 0 in the server setup). "
                "Set a web port in the admin's HTTP server setup to start it."
            )
        config = settings.BASE_DIR / "deploy" / "gunicorn.conf.py"
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        os.execv(gunicorn, [gunicorn, "-c", str(config)])
