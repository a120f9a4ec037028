"""``manage.py import_dicom PATH [PATH ...]``: files, folders, zips and CD copies into the archive.

Every file goes through ``studies.services.instance_ingest`` (source "import", the path as
detail). Files that are not DICOM are skipped with a line; a refused zip or a rejected file never
stops the others. Progress goes to stderr, the summary to stdout.

Exit status: 0 when anything was read (stored or already in the archive), 1 when nothing could
be read, 2 when the archive itself could not store files (disk full, database down): those files
were not imported and the same command can be run again once the archive is fixed; 130 when
interrupted (Ctrl-C): everything counted in the summary was handled, the rest can be imported
by running the same command again.
"""

import time
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pacsweb.lib.progress import Progress, human_bytes
from studies.file_sources import Entry, FileSources, Kind
from studies.models import Instance
from studies.services import Status, instance_ingest

# The most distinct rejection reasons the summary lists; the rest are counted together.
REASONS_SHOWN = 12


class Tally:
    def __init__(self) -> None:
        self.stored = 0
        self.duplicates = 0
        self.skipped = 0
        self.rejected: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.refused: list[tuple[str, str]] = []
        self.failed: Counter[str] = Counter()
        self.files = 0

    def reject(self, entry_label: str, reason: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, entry_label)

    @property
    def read_anything(self) -> bool:
        return self.stored + self.duplicates > 0


class Command(BaseCommand):
    help = (
        "Import DICOM files into the archive from files, folders (recursively), zips (also "
        "inside folders) and CD copies with a DICOMDIR."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")

    def handle(self, *args: object, paths: list[Path], **options: object) -> None:
        started = time.monotonic()
        sources = FileSources(paths)
        # The progress bar draws partial lines: no automatic newline, no error colour.
        self.stderr.ending = ""
        self.stderr.style_func = None
        progress = Progress(self.stderr, title="import", total=sources.bytes_total, fmt=human_bytes)
        tally = Tally()
        interrupted = False
        try:
            for entry in sources:
                stop = self._handle_entry(entry, tally, progress)
                progress.update(sources.bytes_done, note=f"{tally.files:,} files")
                if stop:
                    break
        except KeyboardInterrupt:
            # Each file is stored whole or not at all, so what is counted is what is in.
            interrupted = True
            progress.line("import interrupted; the files counted below were handled")
        progress.finish(sources.bytes_done)
        self._summary(tally, time.monotonic() - started, sources.bytes_done)
        if interrupted:
            raise CommandError("interrupted", returncode=130)
        if tally.failed:
            raise CommandError(
                "the archive could not store some files; fix it and run the same import again",
                returncode=2,
            )
        if not tally.read_anything:
            raise CommandError("nothing could be read: no DICOM instance was found", returncode=1)

    def _handle_entry(self, entry: Entry, tally: Tally, progress: Progress) -> bool:
        """Count one entry; return True when the import must stop (the archive's disk is full)."""
        tally.files += 1
        if entry.kind == Kind.DICOM:
            outcome = instance_ingest(
                file=entry.file, source=Instance.Source.IMPORT, source_detail=entry.label
            )
            if outcome.status == Status.STORED:
                tally.stored += 1
            elif outcome.status == Status.DUPLICATE:
                tally.duplicates += 1
            elif outcome.status == Status.REJECTED:
                tally.reject(entry.label, outcome.reason)
                progress.line(f"rejected: {entry.label}: {outcome.reason}")
            else:
                tally.failed[outcome.reason] += 1
                progress.line(f"NOT STORED: {entry.label}: {outcome.reason}")
                if outcome.out_of_space:
                    progress.line("import stopped: the archive's disk is full")
                    return True
        elif entry.kind == Kind.HL7:
            tally.skipped += 1
            progress.line(
                f"skipped: {entry.label}: HL7 messages, not DICOM (import them with import_hl7)"
            )
        elif entry.kind in (Kind.NOT_DICOM, Kind.DICOMDIR):
            tally.skipped += 1
            progress.line(f"skipped: {entry.label}: {entry.reason}")
        elif entry.kind == Kind.ZIP_REFUSED:
            tally.refused.append((entry.label, entry.reason))
            progress.line(f"{entry.label}: {entry.reason}")
        else:
            tally.reject(entry.label, entry.reason)
            progress.line(f"rejected: {entry.label}: {entry.reason}")
        return False

    def _summary(self, tally: Tally, seconds: float, read_bytes: int) -> None:
        out = self.stdout
        out.write(f"Import finished in {seconds:.1f} s ({human_bytes(read_bytes)} read).")
        out.write(f"  stored:       {tally.stored:>9,}")
        out.write(f"  duplicates:   {tally.duplicates:>9,}  (already in the archive)")
        out.write(f"  rejected:     {sum(tally.rejected.values()):>9,}")
        common = tally.rejected.most_common()
        for reason, count in common[:REASONS_SHOWN]:
            out.write(f"      {count:>7,} x {reason}  (e.g. {tally.examples[reason]})")
        if len(common) > REASONS_SHOWN:
            rest = sum(count for _reason, count in common[REASONS_SHOWN:])
            out.write(f"      {rest:>7,} x other reasons")
        out.write(f"  skipped:      {tally.skipped:>9,}  (not DICOM images)")
        if tally.refused:
            out.write(f"  refused zips: {len(tally.refused):>9,}")
            for label, reason in tally.refused:
                out.write(f"      {label}: {reason}")
        if tally.failed:
            out.write(f"  NOT STORED:   {sum(tally.failed.values()):>9,}  (the archive failed)")
            for reason, count in tally.failed.most_common():
                out.write(f"      {count:>7,} x {reason}")
