"""``manage.py check_storage [--verify] [--fix]``: the archive's files against its index.

Ingest writes a file (temporary name, fsync, rename) and then its index row, so a crash between
the two leaves a file without a row, and a lost or deleted file leaves a row without a file.
This command finds both, temporary files left by interrupted writes and, with ``--verify``
(which reads every file), files whose size or CRC-32 is not what was indexed.

With ``--fix`` it heals what it can: a file without a row goes through ``instance_ingest``
again (its copy is indexed, then the orphan deleted), a row without a file is removed with
``instance_unindex`` (counts kept right), and a left-over temporary file is deleted. Files and
temporary files younger than a minute are left alone: a running receiver may be writing them.
A file whose content differs from its row cannot be healed here: it is reported.

Exit status: 0 when everything is consistent (or was healed), 1 when problems remain.
"""

import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pacsweb.lib.progress import Progress
from studies import storage
from studies.models import Instance
from studies.services import DUPLICATE_SAME_CONTENT, Status, instance_ingest, instance_unindex

# A write takes well under this; anything older was left by a crash.
SETTLE_SECONDS = 60
# The most problems of one kind that are listed one by one.
LISTED = 20


@dataclass
class Findings:
    files: int = 0
    rows: int = 0
    orphan_files: list[str] = field(default_factory=list)
    missing_files: list[tuple[int, str]] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    mismatches: list[tuple[str, str]] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Check that every stored DICOM file has its index row and every row its file; "
        "--verify also compares sizes and CRC-32s, --fix heals what can be healed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--verify", action="store_true", help="Read every file: compare its size and CRC-32."
        )
        parser.add_argument("--fix", action="store_true", help="Heal what can be healed.")

    def handle(self, *args: object, verify: bool, fix: bool, **options: object) -> None:
        findings = self._check(verify=verify)
        self._report(findings, verify=verify)
        remaining = len(findings.mismatches)
        if fix:
            remaining += self._heal(findings)
        elif findings.orphan_files or findings.missing_files or findings.temp_files:
            remaining += (
                len(findings.orphan_files) + len(findings.missing_files) + len(findings.temp_files)
            )
            self.stdout.write("Run again with --fix to heal them.")
        if remaining:
            raise CommandError(f"{remaining} problem(s) remain in the archive's storage.")
        self.stdout.write("The archive's files and index agree.")

    def _check(self, *, verify: bool) -> Findings:
        findings = Findings()
        indexed = dict(Instance.objects.values_list("path", "id").iterator())
        findings.rows = len(indexed)
        expected = {}
        if verify:
            rows = Instance.objects.values_list("path", "size", "crc32").iterator()
            expected = {path: (size, crc) for path, size, crc in rows}
        settled_before = time.time() - SETTLE_SECONDS
        # As many files as rows when all is well.
        progress = Progress(self.stderr, title="checking files", total=len(indexed))
        seen = set()
        for relative in storage.iter_files():
            findings.files += 1
            progress.update(findings.files)
            name = Path(relative).name
            if name.startswith(storage.TEMP_PREFIX):
                if _modified(relative) < settled_before:
                    findings.temp_files.append(relative)
                continue
            if relative not in indexed:
                if _modified(relative) < settled_before:
                    findings.orphan_files.append(relative)
                continue
            seen.add(relative)
            if verify:
                problem = _content_problem(relative, *expected[relative])
                if problem:
                    findings.mismatches.append((relative, problem))
        progress.finish()
        findings.missing_files = sorted(
            (pk, path) for path, pk in indexed.items() if path not in seen
        )
        return findings

    def _report(self, findings: Findings, *, verify: bool) -> None:
        out = self.stdout
        out.write(f"Checked {findings.files} files and {findings.rows} index rows.")
        sections = [
            ("files without an index row", findings.orphan_files),
            ("index rows without a file", [path for _, path in findings.missing_files]),
            ("temporary files left by interrupted writes", findings.temp_files),
        ]
        if verify:
            sections.append(
                (
                    "files that differ from their index row",
                    [f"{p}: {w}" for p, w in findings.mismatches],
                )
            )
        for title, items in sections:
            out.write(f"  {title}: {len(items)}")
            for item in items[:LISTED]:
                out.write(f"    {item}")
            if len(items) > LISTED:
                out.write(f"    ... and {len(items) - LISTED} more")
        if not verify:
            out.write("  (sizes and CRC-32s not compared: use --verify)")

    def _heal(self, findings: Findings) -> int:
        """Heal what can be; return how many problems remain."""
        remaining = 0
        for relative in findings.temp_files:
            storage.delete(relative)
        for pk, _path in findings.missing_files:
            instance_unindex(instance_id=pk)
        reindexed = 0
        for relative in findings.orphan_files:
            outcome = instance_ingest(
                file=storage.absolute(relative),
                source=Instance.Source.IMPORT,
                source_detail=f"check_storage: {relative}",
            )
            if outcome.status == Status.STORED or outcome.reason == DUPLICATE_SAME_CONTENT:
                # Its content is in the archive under another file now (or was already).
                storage.delete(relative)
                reindexed += 1
            else:
                self.stdout.write(f"  cannot re-index {relative}: {outcome.reason}")
                remaining += 1
        self.stdout.write(
            f"Fixed: {len(findings.temp_files)} temporary files deleted, "
            f"{len(findings.missing_files)} index rows without a file removed, "
            f"{reindexed} files without a row indexed again."
        )
        return remaining


def _modified(relative: str) -> float:
    try:
        return os.stat(storage.absolute(relative)).st_mtime
    except FileNotFoundError:
        # Gone since the walk saw it (a write finished or was cleaned up): not left over.
        return time.time()


def _content_problem(relative: str, size: int, expected_crc: int) -> str:
    crc = length = 0
    with storage.open_file(relative) as fp:
        while chunk := fp.read(1024 * 1024):
            length += len(chunk)
            crc = zlib.crc32(chunk, crc)
    if length != size:
        return f"{length} bytes where {size} were stored"
    if crc != expected_crc:
        return f"CRC-32 {crc:08x} where {expected_crc:08x} was stored"
    return ""
