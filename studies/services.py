"""Writes to the archive. ``instance_ingest`` is the one way a DICOM file gets in.

Every face (the DICOM receiver, web uploads, STOW-RS, the import and demo commands) calls it.
It never raises for bad data: it returns an ``IngestOutcome`` that says what happened and why.
"""

import datetime
import io
import logging
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from pydicom.dataset import Dataset
from pypdf import PdfReader

from accounts.models import User
from pacsweb.lib.dicom_dates import parse_da
from pacsweb.lib.person_names import fold, fold_person_name
from studies import dicom_header, storage
from studies.models import Instance, Patient, Series, Study, StudyReport

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024
# The reason of a duplicate whose content is identical to the stored copy (a retransmission).
DUPLICATE_SAME_CONTENT = "already in the archive"


class Status(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # The data is bad: sending it again will not help.
    FAILED = "failed"  # The archive could not store it now (disk full, database down).


@dataclass(frozen=True)
class IngestOutcome:
    status: Status
    reason: str = ""
    sop_uid: str = ""
    study_uid: str = ""
    out_of_space: bool = False

    @property
    def ok(self) -> bool:
        """Whether the instance is in the archive after this call (stored now or before)."""
        return self.status in (Status.STORED, Status.DUPLICATE)


def instance_ingest(
    *,
    file: BinaryIO | bytes | Path,
    source: Instance.Source,
    source_detail: str = "",
) -> IngestOutcome:
    """Store one DICOM file durably and index it, or say why not.

    ``file`` is the file's bytes, a path, or a seekable binary file object. The stored file has a
    zeroed preamble, a fresh file meta group and the dataset's bytes exactly as received. The
    same SOP Instance UID again is a duplicate: identical content is a no-op, and different
    content is reported and not stored (the first copy is kept).
    """
    if isinstance(file, Path):
        try:
            with open(file, "rb") as fp:
                return _ingest_open(fp, source, source_detail)
        except OSError as exc:
            return IngestOutcome(Status.REJECTED, f"cannot read the file ({exc.strerror})")
    if isinstance(file, bytes | bytearray | memoryview):
        return _ingest_open(io.BytesIO(file), source, source_detail)
    return _ingest_open(file, source, source_detail)


def _ingest_open(fp: BinaryIO, source: str, source_detail: str) -> IngestOutcome:
    try:
        parsed = dicom_header.read(fp)
    except dicom_header.InvalidDicom as exc:
        return IngestOutcome(Status.REJECTED, str(exc))
    ds = parsed.ds
    sop_uid, study_uid = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
    try:
        prefix = dicom_header.part10_prefix(ds, parsed.transfer_syntax_uid)
        fields = _index_fields(ds)
        metadata = dicom_header.metadata_json(parsed)
        frames = dicom_header.frame_offsets(parsed, stored_dataset_start=len(prefix))
    except Exception as exc:  # noqa: BLE001 - any damaged element the header needs.
        return IngestOutcome(Status.REJECTED, f"damaged DICOM header ({exc})", sop_uid, study_uid)

    existing = Instance.objects.filter(sop_uid=sop_uid).values_list("size", "crc32").first()
    if existing is not None:
        return _duplicate(existing, fp, prefix, parsed, sop_uid, study_uid)

    relative = storage.new_relative_path()
    try:
        size, crc = storage.write(relative, _part10_chunks(fp, prefix, parsed.dataset_start))
    except storage.StorageFull:
        log.error("storage full: could not store %s", sop_uid)
        return IngestOutcome(
            Status.FAILED, "the archive's disk is full", sop_uid, study_uid, out_of_space=True
        )
    except OSError as exc:
        log.exception("could not write %s", sop_uid)
        return IngestOutcome(
            Status.FAILED, f"could not write the file ({exc.strerror})", sop_uid, study_uid
        )

    instance_fields = {
        **fields["instance"],
        "sop_uid": sop_uid,
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "path": relative,
        "size": size,
        "crc32": crc,
        "source": source,
        "source_detail": source_detail[:256],
        "metadata": metadata,
        "frames": frames,
    }
    try:
        _index(fields, instance_fields)
    except IntegrityError:
        # Another sender indexed the same SOP Instance UID between our check and our insert.
        storage.delete(relative)
        existing = Instance.objects.filter(sop_uid=sop_uid).values_list("size", "crc32").first()
        if existing is None:
            log.exception("could not index %s", sop_uid)
            return IngestOutcome(Status.FAILED, "could not index the instance", sop_uid, study_uid)
        return _duplicate(existing, fp, prefix, parsed, sop_uid, study_uid)
    except BaseException:
        # Never leave a file without its row: the file goes if the index write fails.
        storage.delete(relative)
        log.exception("could not index %s", sop_uid)
        return IngestOutcome(Status.FAILED, "could not index the instance", sop_uid, study_uid)
    return IngestOutcome(Status.STORED, "", sop_uid, study_uid)


def _duplicate(
    existing: tuple[int, int],
    fp: BinaryIO,
    prefix: bytes,
    parsed: dicom_header.ParsedFile,
    sop_uid: str,
    study_uid: str,
) -> IngestOutcome:
    # The meta group depends only on the dataset, so equal content gives equal stored bytes.
    size, crc = 0, 0
    for chunk in _part10_chunks(fp, prefix, parsed.dataset_start):
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
    if (size, crc) == tuple(existing):
        return IngestOutcome(Status.DUPLICATE, DUPLICATE_SAME_CONTENT, sop_uid, study_uid)
    return IngestOutcome(
        Status.DUPLICATE,
        "an instance with this SOP Instance UID but different content is already in the "
        "archive; the first copy was kept",
        sop_uid,
        study_uid,
    )


def _part10_chunks(fp: BinaryIO, prefix: bytes, dataset_start: int) -> Iterator[bytes]:
    yield prefix
    fp.seek(dataset_start)
    while chunk := fp.read(COPY_CHUNK):
        yield chunk


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


def _date(ds: Dataset, keyword: str) -> datetime.date | None:
    return parse_da(_text(ds, keyword, 32))


def _index_fields(ds: Dataset) -> dict[str, dict]:
    """The index columns for each level, read from the header (untrusted: bounded and tolerant)."""
    patient_id = _text(ds, "PatientID", 64)
    issuer = _text(ds, "IssuerOfPatientID", 64)
    name = _text(ds, "PatientName", 324)
    birth = _date(ds, "PatientBirthDate")
    if patient_id:
        key = f"id\\{issuer}\\{patient_id}"
    else:
        key = f"noid\\{fold_person_name(name)}\\{birth or ''}"
    referring = _text(ds, "ReferringPhysicianName", 324)
    institution = _text(ds, "InstitutionName", 128)
    return {
        "patient": {
            "key": key,
            "patient_id": patient_id,
            "issuer": issuer,
            "name": name,
            "name_norm": fold_person_name(name),
            "birth_date": birth,
            "sex": _text(ds, "PatientSex", 16).upper(),
        },
        "study": {
            "study_uid": str(ds.StudyInstanceUID),
            "study_date": _date(ds, "StudyDate"),
            "study_time": _text(ds, "StudyTime", 16),
            "study_id": _text(ds, "StudyID", 16),
            "accession_number": _text(ds, "AccessionNumber", 64),
            "description": _text(ds, "StudyDescription", 256),
            "referring_physician": referring,
            "referring_physician_norm": fold_person_name(referring),
            "institution": institution,
            "institution_norm": fold(institution),
        },
        "series": {
            "series_uid": str(ds.SeriesInstanceUID),
            "modality": _text(ds, "Modality", 16).upper(),
            "series_number": _int(ds, "SeriesNumber"),
            "description": _text(ds, "SeriesDescription", 256),
            "body_part": _text(ds, "BodyPartExamined", 64),
            "series_date": _date(ds, "SeriesDate"),
            "series_time": _text(ds, "SeriesTime", 16),
        },
        "instance": {
            "sop_class_uid": str(ds.SOPClassUID),
            "instance_number": _int(ds, "InstanceNumber"),
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "num_frames": (_int(ds, "NumberOfFrames") or 1) if 0x7FE00010 in ds else 0,
        },
    }


@transaction.atomic
def _index(fields: dict[str, dict], instance_fields: dict) -> None:
    patient_fields = fields["patient"]
    patient, _ = Patient.objects.get_or_create(key=patient_fields["key"], defaults=patient_fields)
    study_fields = fields["study"]
    study, study_created = Study.objects.get_or_create(
        study_uid=study_fields["study_uid"], defaults={**study_fields, "patient": patient}
    )
    if study_created and study.study_date:
        Patient.objects.filter(pk=patient.pk).filter(
            Q(latest_study_date__lt=study.study_date) | Q(latest_study_date__isnull=True)
        ).update(latest_study_date=study.study_date)
    series_fields = fields["series"]
    series, series_created = Series.objects.get_or_create(
        series_uid=series_fields["series_uid"], defaults={**series_fields, "study": study}
    )
    Instance.objects.create(series=series, **instance_fields)
    Series.objects.filter(pk=series.pk).update(num_instances=F("num_instances") + 1)
    Study.objects.filter(pk=study.pk).update(
        num_instances=F("num_instances") + 1,
        num_series=F("num_series") + int(series_created),
        size=F("size") + instance_fields["size"],
    )
    if series_created and series.modality:
        # The update above holds the study's row lock, so concurrent new series of one study
        # recompute the modalities one after the other.
        modalities = Series.objects.filter(study=study).values_list("modality", flat=True)
        joined = "\\".join(sorted({m for m in modalities if m}))[:128]
        Study.objects.filter(pk=study.pk).update(modalities=joined)


# PDF reports ----------------------------------------------------------------------------------

REPORT_MAX_BYTES = 50 * 1024 * 1024


class ReportRejected(ValueError):
    """The file cannot be attached as a report; the message says why, for the user."""


def study_report_attach(
    *, study: Study, file: BinaryIO, filename: str, user: User | None
) -> StudyReport:
    """Attach a PDF report to ``study``, or raise ReportRejected saying why not.

    Only a real PDF is kept: it starts with the PDF signature and a PDF parser finds its pages.
    It is stored under a generated name; ``filename`` (the user's name for it) is its title.
    """
    file.seek(0, io.SEEK_END)
    size = file.tell()
    if size == 0:
        raise ReportRejected("The file is empty.")
    if size > REPORT_MAX_BYTES:
        raise ReportRejected(
            f"The file is larger than {REPORT_MAX_BYTES // 1024**2} MB, the limit for a report."
        )
    file.seek(0)
    # ISO 32000-1 7.5.2: a PDF file starts with "%PDF-" and the version.
    if file.read(5) != b"%PDF-":
        raise ReportRejected("This is not a PDF file. Reports are attached as PDF.")
    _check_pdf_pages(file)
    file.seek(0)
    report = StudyReport(study=study, title=_report_title(filename), size=size, uploaded_by=user)
    report.file.save(f"{uuid.uuid4().hex}.pdf", File(file), save=False)
    try:
        _fsync(Path(report.file.path))
        report.save()
    except BaseException:
        # Never leave a file without its row.
        report.file.delete(save=False)
        raise
    return report


def _check_pdf_pages(file: BinaryIO) -> None:
    file.seek(0)
    try:
        reader = PdfReader(file, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ReportRejected("The PDF is protected by a password: attach an unprotected copy.")
        pages = len(reader.pages)
    except ReportRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for damaged files.
        raise ReportRejected("The PDF is damaged: it cannot be read.") from exc
    if pages == 0:
        raise ReportRejected("The PDF has no pages.")


def _report_title(filename: str) -> str:
    # Browsers send a bare name, some old ones a whole Windows path; keep the last part only.
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "report.pdf"


def _fsync(path: Path) -> None:
    with open(path, "rb") as fp:
        os.fsync(fp.fileno())
