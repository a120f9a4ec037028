"""Run everything on this machine: the web server and the DICOM receiver, started and stopped together.

This is what ``./pacsweb.sh run`` starts. It prepares the data folder (migrations, static files,
the first admin account, the OHIF viewer when it can be fetched), then runs ``run_web`` and
``dicom_receiver`` as child processes. Ctrl-C or SIGTERM stops both cleanly; if either one exits,
the other is stopped too.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from accounts.services import admin_ensure
from pacsweb.models import ServerSetup


class Command(BaseCommand):
    help = "Run the web server and the DICOM receiver together (the embedded default)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dicom-port", type=int, default=11112)
        parser.add_argument("--ae-title", default="PACSWEB")
        parser.add_argument(
            "--hl7-port", type=int, default=0, help="Also run the HL7 (MLLP) listener on this port."
        )
        parser.add_argument("--no-ohif", action="store_true", help="Do not try to install OHIF.")

    def handle(
        self, *args, dicom_port: int, ae_title: str, hl7_port: int, no_ohif: bool, **options
    ) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        password = admin_ensure(password=os.environ.get("PACSWEB_ADMIN_PASSWORD", ""))
        if not no_ohif:
            # Offline, this warns and goes on: the viewer buttons then explain how to install it.
            call_command("install_ohif", if_missing=True)
        setup = ServerSetup.get()
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = {}
        if setup.web_port:
            children["web"] = subprocess.Popen([*manage, "run_web"])
        else:
            self.stdout.write("The web module is disabled (web port 0 in the server setup).")
        children["receiver"] = subprocess.Popen(
            [*manage, "dicom_receiver", "--port", str(dicom_port), "--ae-title", ae_title]
        )
        if hl7_port:
            children["hl7"] = subprocess.Popen([*manage, "hl7_listener", "--port", str(hl7_port)])
        self._banner(setup, dicom_port, ae_title, hl7_port, password)
        self._supervise(children)

    def _banner(
        self,
        setup: ServerSetup,
        dicom_port: int,
        ae_title: str,
        hl7_port: int,
        password: str | None,
    ) -> None:
        scheme = "https" if setup.ssl_enabled else "http"
        host = setup.web_server_name or "localhost"
        lines = ["", "pacsweb is starting."]
        if setup.web_port:
            lines.append(f"  Web:    {scheme}://{host}:{setup.web_port}/   (admin: /admin/)")
        lines.append(
            f"  DICOM:  AE title {ae_title}, port {dicom_port} (C-ECHO, C-STORE, worklist C-FIND)"
        )
        if hl7_port:
            lines.append(f"  HL7:    MLLP on port {hl7_port} (orders into the worklist)")
        lines.append(f"  Data:   {settings.DATA_DIR}")
        if password:
            lines.append(
                f"  First admin account: user 'admin', password '{password}' (shown only once)"
            )
        lines.append("  Stop with Ctrl-C.")
        self.stdout.write("\n".join(lines) + "\n")

    def _supervise(self, children: dict[str, subprocess.Popen]) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        failed = None
        while not stopping and failed is None:
            for name, child in children.items():
                if child.poll() is not None:
                    failed = name
            time.sleep(0.2)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        if failed is not None and not stopping:
            raise CommandError(
                f"The {failed} process stopped (exit status {children[failed].returncode})."
            )
        self.stdout.write("pacsweb stopped.")
