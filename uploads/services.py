"""Taking in a web upload: DICOM files, zips of them (a CD copy) and HL7 order files.

Each file is sniffed (``studies.file_sources``: zip by its magic number, HL7 by its first
segment, else DICOM), DICOM goes through ``studies.services.instance_ingest`` and HL7 through
``worklist.services.hl7_file_intake``. A file that is rejected never stops the others, and zips
get the same bomb checks as imports. The outcome of everything is kept in one ``UploadBatch``.
"""

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.utils import timezone

from accounts.models import User
from studies.file_sources import Entry, Kind, entries_of_file, printable
from studies.models import Instance
from studies.services import Status as IngestStatus
from studies.services import instance_ingest
from uploads.models import UploadBatch
from worklist.services import hl7_file_intake

Status = UploadBatch.Status
# The result page lists at most this many outcomes, problems before stored files; the counts
# always cover everything.
MAX_LISTED = 10_000

_INGEST_STATUS = {
    IngestStatus.STORED: Status.STORED,
    IngestStatus.DUPLICATE: Status.DUPLICATE,
    IngestStatus.REJECTED: Status.REJECTED,
    IngestStatus.FAILED: Status.FAILED,
}


@dataclass
class UploadedFile:
    """One file as the browser sent it: the name to show (a folder upload's relative path)."""

    name: str
    file: BinaryIO


@dataclass
class _Row:
    name: str
    kind: str
    status: Status
    reason: str = ""

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "reason": self.reason}


class _Intake:
    def __init__(self, user: User) -> None:
        self.user = user
        self.rows: list[_Row] = []
        self.disk_full = False

    def take(self, upload: UploadedFile) -> None:
        label = printable(upload.name) or "(no name)"
        basename = os.path.basename(upload.name.replace("\\", "/"))
        for entry in entries_of_file(upload.file, label, basename):
            self._entry(entry)

    def _entry(self, entry: Entry) -> None:
        if entry.kind == Kind.DICOM:
            self._dicom(entry)
        elif entry.kind == Kind.HL7:
            self._hl7(entry)
        elif entry.kind in (Kind.NOT_DICOM, Kind.DICOMDIR):
            self.rows.append(_Row(entry.label, "other", Status.SKIPPED, entry.reason))
        else:
            self.rows.append(_Row(entry.label, "other", Status.REJECTED, entry.reason))

    def _dicom(self, entry: Entry) -> None:
        if self.disk_full:
            self.rows.append(
                _Row(entry.label, "dicom", Status.FAILED, "not stored: the archive's disk is full")
            )
            return
        outcome = instance_ingest(
            file=entry.file, source=Instance.Source.UPLOAD, source_detail=self.user.username
        )
        self.disk_full = outcome.out_of_space
        reason = "" if outcome.status == IngestStatus.STORED else outcome.reason
        self.rows.append(_Row(entry.label, "dicom", _INGEST_STATUS[outcome.status], reason))

    def _hl7(self, entry: Entry) -> None:
        # One byte past the limit is enough for the intake to refuse the file as too big,
        # without reading a huge file into memory.
        data = entry.file.read(settings.HL7_MAX_FILE_BYTES + 1)
        outcomes = hl7_file_intake(
            data=data,
            source="upload",
            source_detail=f"{self.user.username}: {entry.label}"[:256],
        )
        for outcome in outcomes:
            if outcome.position:
                name = f"{entry.label} · message {outcome.position}"
                if outcome.control_id:
                    name += f" ({printable(outcome.control_id, 60)})"
            else:
                name = entry.label
            reason = "" if outcome.status == "stored" else outcome.reason
            self.rows.append(_Row(name, "hl7", Status(outcome.status), reason))


def upload_batch_create(*, user: User, files: Iterable[UploadedFile]) -> UploadBatch:
    """Take in every file of one upload and record the outcome; never raises for bad files."""
    intake = _Intake(user)
    count = 0
    for upload in files:
        count += 1
        intake.take(upload)
    counts = Counter(row.status for row in intake.rows)
    listed = _listed(intake.rows)
    return UploadBatch.objects.create(
        user=user,
        created_at=timezone.now(),
        files=count,
        stored=counts[Status.STORED],
        duplicates=counts[Status.DUPLICATE],
        rejected=counts[Status.REJECTED],
        skipped=counts[Status.SKIPPED],
        failed=counts[Status.FAILED],
        results=[row.as_json() for row in listed],
        unlisted=len(intake.rows) - len(listed),
    )


def _listed(rows: list[_Row]) -> list[_Row]:
    """All rows, or, past ``MAX_LISTED``, problems first and then as many stored files as fit."""
    if len(rows) <= MAX_LISTED:
        return rows
    problems = [i for i, row in enumerate(rows) if row.status != Status.STORED][:MAX_LISTED]
    room = MAX_LISTED - len(problems)
    stored = [i for i, row in enumerate(rows) if row.status == Status.STORED][:room]
    return [rows[i] for i in sorted(problems + stored)]
