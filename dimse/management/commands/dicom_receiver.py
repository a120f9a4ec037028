"""``python manage.py dicom_receiver``: the DICOM receiver (C-ECHO and C-STORE SCP)."""

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dimse import server
from studies import storage

MIB = 1024 * 1024


class Command(BaseCommand):
    help = (
        "Run the DICOM receiver: Verification and Storage SCP. Stops cleanly on SIGTERM or "
        "Ctrl-C once the associations in flight are finished (a second Ctrl-C aborts them)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=11112, help="TCP port (default 11112).")
        parser.add_argument("--ae-title", default="PACSWEB", help="AE title (default PACSWEB).")
        parser.add_argument(
            "--bind",
            # A DICOM receiver exists to be reached by the modalities on the network.
            default="0.0.0.0",  # noqa: S104
            help="Address to listen on (default 0.0.0.0, all IPv4 addresses).",
        )
        parser.add_argument(
            "--processes",
            type=int,
            help="Worker processes sharing the port (default: two per core, at most "
            "--max-associations).",
        )
        parser.add_argument(
            "--max-associations",
            type=int,
            default=32,
            help="Associations served at once, over all processes (default 32).",
        )
        parser.add_argument(
            "--max-pdu",
            type=int,
            default=4 * MIB,
            help="Largest PDU accepted from a peer, in bytes (default 4 MiB).",
        )

    def handle(
        self,
        *args: object,
        port: int,
        ae_title: str,
        bind: str,
        processes: int | None,
        max_associations: int,
        max_pdu: int,
        **options: object,
    ) -> None:
        ae_title = ae_title.strip()
        # PS3.5 6.2: an AE title is 1 to 16 characters of the default repertoire, no backslash
        # or control characters, and not only spaces.
        if not 0 < len(ae_title) <= 16 or not all(
            32 <= ord(c) < 127 and c != "\\" for c in ae_title
        ):
            raise CommandError(
                f"--ae-title must be 1 to 16 printable ASCII characters: {ae_title!r}"
            )
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535: {port}")
        if processes is None:
            # Each association spends much of an instance waiting for disk flushes and the
            # database: with one process per core, cores idle while they wait (bench/ingest.py:
            # 8% more instances/s with two per core, at about 90 MB of memory each).
            processes = min(2 * (os.cpu_count() or 1), max_associations)
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if max_associations < processes:
            raise CommandError("--max-associations must be at least --processes")
        # pynetdicom allows any size; below the 4 KiB that dcmtk requires is not worth allowing,
        # and above 64 MiB each association could hold that much in memory.
        if not 4096 <= max_pdu <= 64 * MIB:
            raise CommandError("--max-pdu must be between 4096 and 67108864 bytes")
        storage.prepare()
        try:
            sock = server.listen(bind, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {bind}:{port}: {exc.strerror}") from exc
        server.run(
            sock=sock,
            options=server.ReceiverOptions(
                ae_title=ae_title,
                max_pdu=max_pdu,
                max_associations=max_associations,
                processes=processes,
            ),
        )
