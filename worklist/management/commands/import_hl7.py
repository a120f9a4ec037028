"""``manage.py import_hl7 FILE [FILE ...]``: HL7 v2 order messages into the modality worklist.

Every file goes through ``worklist.services.hl7_file_intake`` (source "import", the path as
detail), so each message is stored, found to be a duplicate, or rejected with its reason on its
own. One line per file goes to stderr as it is read; rejected messages and the summary go to
stdout.

Exit status: 0 when any message is in the worklist (stored now, or a duplicate of one stored
before), 1 when nothing could be read.
"""

from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from worklist.models import HL7Message
from worklist.services import Status, hl7_file_intake


class Command(BaseCommand):
    help = "Import HL7 v2 order messages (ORM^O01, OMI^O23, ADT^A08/A31) into the worklist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")

    def handle(self, *args: object, files: list[Path], **options: object) -> None:
        totals: Counter[Status] = Counter()
        unread = 0
        for number, path in enumerate(files, start=1):
            data = self._read(path)
            if data is None:
                unread += 1
                continue
            outcomes = hl7_file_intake(
                data=data, source=HL7Message.Source.IMPORT, source_detail=str(path)
            )
            counts = Counter(o.status for o in outcomes if o.position > 0)
            totals.update(counts)
            self.stderr.write(
                f"[{number}/{len(files)}] {path}: {counts[Status.STORED]} stored, "
                f"{counts[Status.DUPLICATE]} duplicates, {counts[Status.REJECTED]} rejected"
            )
            for outcome in outcomes:
                if outcome.status == Status.REJECTED:
                    self.stdout.write(f"{path}: {outcome.reason}")
        messages = sum(totals.values())
        self.stdout.write(
            f"{len(files)} file(s), {messages} message(s): {totals[Status.STORED]} stored, "
            f"{totals[Status.DUPLICATE]} duplicates, {totals[Status.REJECTED]} rejected"
            + (f", {unread} file(s) not read" if unread else "")
        )
        if not totals[Status.STORED] + totals[Status.DUPLICATE]:
            raise CommandError("nothing was imported", returncode=1)

    def _read(self, path: Path) -> bytes | None:
        limit = settings.HL7_MAX_FILE_BYTES
        try:
            size = path.stat().st_size
            if path.is_dir():
                self.stdout.write(f"{path}: is a folder; name the HL7 files in it")
                return None
            if size > limit:
                self.stdout.write(
                    f"{path}: not read, {size:,} bytes is more than the limit of {limit:,} "
                    "(HL7_MAX_FILE_BYTES)"
                )
                return None
            return path.read_bytes()
        except OSError as exc:
            self.stdout.write(f"{path}: cannot be read ({exc.strerror})")
            return None
