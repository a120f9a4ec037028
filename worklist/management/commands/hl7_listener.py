"""``manage.py hl7_listener [--port 2575] [--bind 0.0.0.0]``: receive HL7 orders over MLLP.

Each message is read into the worklist by ``worklist.services.hl7_file_intake`` and answered
with an HL7 ACK (see ``worklist.mllp``). SIGTERM or Ctrl-C stops it cleanly: no new connections
are accepted, each open connection finishes the message it is on, and the command exits 0.
"""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError, CommandParser

from worklist.mllp import MLLPServer


class Command(BaseCommand):
    help = "Receive HL7 v2 order messages over MLLP and acknowledge each one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=2575, help="TCP port (default 2575)")
        parser.add_argument(
            "--bind",
            # The listener exists to be reached by the RIS on the network.
            default="0.0.0.0",  # noqa: S104
            help="address to listen on (default 0.0.0.0, all IPv4 addresses)",
        )
        parser.add_argument(
            "--max-connections",
            type=int,
            default=32,
            help="connections served at once; more are closed at once (default 32)",
        )
        parser.add_argument(
            "--idle-timeout",
            type=float,
            default=600.0,
            help="close a connection after this many seconds without data (default 600)",
        )

    def handle(
        self,
        *args: object,
        port: int,
        bind: str,
        idle_timeout: float,
        max_connections: int,
        **options: object,
    ) -> None:
        try:
            server = MLLPServer(
                (bind, port), idle_timeout=idle_timeout, max_connections=max_connections
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc.strerror}") from exc
        stop = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        # serve_forever runs beside the main thread, which only waits for a signal: shutdown()
        # must not be called from the thread that serves.
        thread = threading.Thread(target=server.serve_forever, name="hl7-accept", daemon=True)
        thread.start()
        host, bound_port = server.server_address[:2]
        self.stdout.write(f"HL7 MLLP listener on {host}:{bound_port}", ending="\n")
        self.stdout.flush()
        stop.wait()
        self.stdout.write("stopping: finishing the messages in progress")
        server.stop()
        thread.join()
        self.stdout.write("stopped")
