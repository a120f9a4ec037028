"""Writes to the archive. ``instance_ingest`` is the one way a DICOM file gets in.

Every face (the DICOM receiver, web uploads, STOW-RS, the import and demo commands) calls it.
It never raises for bad data: it returns an ``IngestOutcome`` that says what happened and why.
"""

import datetime
import fcntl
import functools
import io
import logging
import os
import sqlite3
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import psycopg
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Model, Q
from django.db.models.options import Options
from django.utils import timezone
from pydicom.datadict import tag_for_keyword
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
    duplicates_likely: bool = True,
) -> IngestOutcome:
    """Store one DICOM file durably and index it, or say why not.

    ``file`` is the file's bytes, a path, or a seekable binary file object. The stored file has a
    zeroed preamble, a fresh file meta group and the dataset's bytes exactly as received. The
    same SOP Instance UID again is a duplicate: identical content is a no-op, and different
    content is reported and not stored (the first copy is kept).

    With ``duplicates_likely`` (an import of a folder may hold what the archive has) the UID is
    looked up before anything is written. A caller that expects new instances (a receiver
    association that has met no duplicate yet) saves that query: a duplicate is then found by
    the index's unique constraint, after its file was written, and the file is removed again.
    """
    if isinstance(file, Path):
        try:
            with open(file, "rb") as fp:
                return _ingest_open(fp, source, source_detail, duplicates_likely)
        except OSError as exc:
            return IngestOutcome(Status.REJECTED, f"cannot read the file ({exc.strerror})")
    if isinstance(file, bytes | bytearray | memoryview):
        return _ingest_open(io.BytesIO(file), source, source_detail, duplicates_likely)
    return _ingest_open(file, source, source_detail, duplicates_likely)


def _ingest_open(
    fp: BinaryIO, source: str, source_detail: str, duplicates_likely: bool
) -> IngestOutcome:
    try:
        parsed = dicom_header.read(fp)
    except dicom_header.InvalidDicom as exc:
        return IngestOutcome(Status.REJECTED, str(exc))
    ds = parsed.ds
    sop_uid, study_uid = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
    prefix = dicom_header.part10_prefix(ds, parsed.transfer_syntax_uid)
    # A duplicate (a sender retrying a whole study) is answered before deriving anything else.
    existing = _stored_size_and_crc(sop_uid) if duplicates_likely else None
    if existing is not None:
        return _duplicate(existing, fp, prefix, parsed, sop_uid, study_uid)
    try:
        fields = _index_fields(ds, has_pixel_data=parsed.pixel_data is not None)
        metadata = dicom_header.metadata_json(parsed)
        frames = dicom_header.frame_offsets(parsed, stored_dataset_start=len(prefix))
    except Exception as exc:  # noqa: BLE001 - any damaged element the header needs.
        return IngestOutcome(Status.REJECTED, f"damaged DICOM header ({exc})", sop_uid, study_uid)

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
        # The SOP Instance UID is indexed already: it was not looked up first, or another
        # sender indexed it between our check and our insert.
        storage.delete(relative)
        existing = _stored_size_and_crc(sop_uid)
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


def _stored_size_and_crc(sop_uid: str) -> tuple[int, int] | None:
    with connection.cursor() as cursor:
        cursor.execute(_sql().stored_size_and_crc, [sop_uid])
        found = cursor.fetchone()
    return (found[0], found[1]) if found else None


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
    # A file that lends its bytes (the receiver's, held in memory) is written as it is: a copy
    # of an instance's bytes costs more than writing them to the page cache.
    lend = getattr(fp, "view_from", None)
    view = lend(dataset_start) if lend else None
    if view is not None:
        yield view
        return
    fp.seek(dataset_start)
    while chunk := fp.read(COPY_CHUNK):
        yield chunk


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    return dicom_header.header_value(ds, _tag(keyword), _clean_text)[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return dicom_header.header_value(ds, _tag(keyword), _to_int)
    except (TypeError, ValueError, OverflowError):
        # pydicom's conversion of a malformed IS value: no number.
        return None


def _date(ds: Dataset, keyword: str) -> datetime.date | None:
    return dicom_header.header_value(ds, _tag(keyword), _to_date)


_tag = functools.cache(tag_for_keyword)


# What the index makes of a value: of the value alone, so header_value can remember it.
def _clean_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).replace("\x00", "").strip()


def _to_int(value: object) -> int | None:
    return int(value) if value not in (None, "") else None


def _to_date(value: object) -> datetime.date | None:
    return parse_da(_clean_text(value)[:32])


def _index_fields(ds: Dataset, *, has_pixel_data: bool) -> dict[str, dict]:
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
            # The header is read up to the pixel data, so its presence comes from the parse.
            "num_frames": (_int(ds, "NumberOfFrames") or 1) if has_pixel_data else 0,
        },
    }


@dataclass(eq=False)
class _IndexRequest:
    """One instance's index rows, waiting to be written in a group commit."""

    fields: dict[str, dict]
    instance_fields: dict
    done: bool = False
    error: BaseException | None = None


class _StaleKey(Exception):
    """A remembered study or series key no longer names that study or series."""


class _KeyCache:
    """The primary keys of the studies and series this process indexed most recently.

    An instance of a known study and series then costs no lookup. Every use is checked by the
    counter updates, which match the UID as well as the key: a study or series deleted since
    (or any other mismatch) updates nothing, and the transaction is redone without the cache.
    """

    SIZE = 4096

    def __init__(self) -> None:
        self.studies: OrderedDict[str, int] = OrderedDict()
        self.series: OrderedDict[str, int] = OrderedDict()

    def remember(self, studies: dict[str, int], series: dict[str, int]) -> None:
        for known, found in ((self.studies, studies), (self.series, series)):
            known.update(found)
            for uid in found:
                known.move_to_end(uid)
            while len(known) > self.SIZE:
                known.popitem(last=False)

    def clear(self) -> None:
        self.studies.clear()
        self.series.clear()


class _GroupCommit:
    """Index the instances of concurrent callers in one transaction (group commit).

    Each C-STORE must be indexed (committed) before it is acknowledged, and a commit costs a
    disk flush on PostgreSQL and the single write lock on SQLite. So callers that arrive while
    a commit is running queue up, and the next of them to run commits the whole queue at once,
    on its own connection, while the others wait for the outcome. A lone caller commits alone,
    as it would without this. Only the caller that commits touches the key cache.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[_IndexRequest] = []
        self._leading = False
        self._keys = _KeyCache()

    def index(self, request: _IndexRequest) -> None:
        with self._cond:
            self._pending.append(request)
            while self._leading and not request.done:
                self._cond.wait()
            if request.done:
                return
            self._leading = True
        try:
            # The lock comes first and the batch after: what arrives while another process
            # writes joins this batch rather than waiting for the next commit.
            with _write_lock():
                with self._cond:
                    batch, self._pending = self._pending, []
                _index_each(batch, self._keys)
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()


_group_commit = _GroupCommit()


def _index(fields: dict[str, dict], instance_fields: dict) -> None:
    request = _IndexRequest(fields, instance_fields)
    if transaction.get_connection().in_atomic_block:
        # The caller's transaction must hold this instance's rows and only them; keys created
        # in it are not remembered, since it may still roll back.
        _index_each([request], None)
    else:
        _group_commit.index(request)
    if request.error is not None:
        raise request.error


def _index_each(requests: list[_IndexRequest], keys: _KeyCache | None) -> None:
    """Index ``requests`` in one transaction; if that fails, each in its own, to find which.

    Each request ends done, with the error that kept it out of the index if any; an interrupt
    (which is re-raised) is the error of every request not indexed yet, so no caller waits for
    ever and none keeps a file whose row was not written.
    """
    try:
        try:
            _index_committed(requests, keys)
            for request in requests:
                request.done = True
        except Exception as exc:  # noqa: BLE001 - handed to the callers, request by request.
            if len(requests) == 1:
                requests[0].error, requests[0].done = exc, True
                return
            for request in requests:
                try:
                    _index_committed([request], keys)
                except Exception as single:  # noqa: BLE001 - handed to that request's caller.
                    request.error = single
                request.done = True
    except BaseException as exc:
        for request in requests:
            if not request.done:
                request.error, request.done = exc, True
        raise


def _index_committed(requests: list[_IndexRequest], keys: _KeyCache | None) -> None:
    if keys is None:
        _index_rows(requests, None)
        return
    try:
        if _index_known_rows(requests, keys):
            return
        studies, series = _index_rows(requests, keys)
    except _StaleKey:
        keys.clear()
        studies, series = _index_rows(requests, None)
    keys.remember(studies, series)


@contextmanager
def _write_lock() -> Iterator[None]:
    """On SQLite, hold a lock file beside the database while writing index rows.

    SQLite lets one writer in at a time, and a writer that finds the database busy sleeps
    (1, 2, 5, 10 ms and longer) before trying again, which idles receiver processes that take
    turns many times a second. Waiting on a lock file instead wakes the next one at once.
    PostgreSQL lets writers in together and queues them itself, row by row.
    """
    connection = transaction.get_connection()
    name = str(connection.settings_dict["NAME"] or "")
    # Inside a transaction the database may be locked already: waiting for the lock file then
    # could wait for a writer that waits for this one.
    if (
        connection.vendor != "sqlite"
        or connection.in_atomic_block
        or not name
        or name == ":memory:"
        or name.startswith("file:")
    ):
        yield
        return
    with open(f"{name}.write-lock", "ab") as fp:
        fcntl.flock(fp, fcntl.LOCK_EX)
        yield


_PLAIN_COLUMN_TYPES = frozenset(
    (
        "CharField",
        "TextField",
        "ForeignKey",
        "IntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
    )
)


class _IndexSql:
    """The statements run for every instance, written once, as the ORM would write them.

    Building them through the ORM costs ten times as long as running them, for every C-STORE.
    Only table and column names from the models go into the text; values are parameters.
    """

    def __init__(self) -> None:
        quote = connection.ops.quote_name
        instance, series, study = Instance._meta, Series._meta, Study._meta
        self.instance_fields = [f for f in instance.concrete_fields if not f.primary_key]
        # Columns whose values ingest already gives as the database takes them (str, int or
        # None); the others (dates, JSON) go through their field's conversion.
        self._instance_columns = [
            (f, f.get_internal_type() in _PLAIN_COLUMN_TYPES) for f in self.instance_fields
        ]
        self._insert_head = "INSERT INTO {} ({}) VALUES ".format(  # noqa: S608
            quote(instance.db_table), ", ".join(quote(f.column) for f in self.instance_fields)
        )
        self._row = "({})".format(", ".join(["%s"] * len(self.instance_fields)))
        self.stored_size_and_crc = "SELECT {}, {} FROM {} WHERE {} = %s".format(  # noqa: S608
            quote(instance.get_field("size").column),
            quote(instance.get_field("crc32").column),
            quote(instance.db_table),
            quote(instance.get_field("sop_uid").column),
        )

        def column(meta: Options, name: str) -> str:
            return quote(meta.get_field(name).column)

        self.count_series = "UPDATE {0} SET {1} = {1} + %s WHERE {2} = %s AND {3} = %s".format(  # noqa: S608
            quote(series.db_table),
            column(series, "num_instances"),
            column(series, "id"),
            column(series, "series_uid"),
        )
        self.count_study = (  # noqa: S608
            "UPDATE {0} SET {1} = {1} + %s, {2} = {2} + %s, {3} = {3} + %s "
            "WHERE {4} = %s AND {5} = %s"
        ).format(
            quote(study.db_table),
            column(study, "num_instances"),
            column(study, "num_series"),
            column(study, "size"),
            column(study, "id"),
            column(study, "study_uid"),
        )

    def insert_instances(self, count: int) -> str:
        return self._insert_head + ", ".join([self._row] * count)

    def instance_values(self, series_pk: int, fields: dict, now: datetime.datetime) -> list:
        values = {**fields, "series_id": series_pk, "received_at": now}
        row = []
        for f, plain in self._instance_columns:
            value = values[f.attname] if f.attname in values else f.get_default()
            row.append(value if plain else f.get_db_prep_save(value, connection))
        return row


@functools.cache
def _sql() -> _IndexSql:
    return _IndexSql()


def _pk_of(model: type[Model], lookup: dict, defaults: dict) -> tuple[int, bool]:
    """The primary key of the row matching ``lookup``, creating it if needed, and whether it was.

    Only the key is read for a row that exists; creating goes through get_or_create, which
    handles a concurrent sender creating the same row (unique constraint, savepoint, read).
    """
    found = list(model.objects.filter(**lookup).values_list("pk", flat=True)[:1])
    if found:
        return found[0], False
    row, created = model.objects.get_or_create(**lookup, defaults=defaults)
    return row.pk, created


@transaction.atomic
def _index_rows(
    requests: list[_IndexRequest], keys: _KeyCache | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Write the rows of ``requests``; return the keys of their studies and series by UID."""
    studies: dict[str, int] = {}
    series_pks: dict[str, int] = {}
    patients: dict[str, int] = {}
    new_series: dict[int, int] = {}  # study pk -> series created
    new_series_studies: set[int] = set()
    for request in requests:
        study_fields = request.fields["study"]
        series_fields = request.fields["series"]
        study_uid = study_fields["study_uid"]
        if study_uid not in studies:
            study_pk = keys.studies.get(study_uid) if keys else None
            if study_pk is None:
                patient_fields = request.fields["patient"]
                key = patient_fields["key"]
                if key not in patients:
                    patients[key] = _pk_of(Patient, {"key": key}, patient_fields)[0]
                study_pk, study_created = _pk_of(
                    Study, {"study_uid": study_uid}, {**study_fields, "patient_id": patients[key]}
                )
                if study_created and study_fields["study_date"]:
                    Patient.objects.filter(pk=patients[key]).filter(
                        Q(latest_study_date__lt=study_fields["study_date"])
                        | Q(latest_study_date__isnull=True)
                    ).update(latest_study_date=study_fields["study_date"])
            studies[study_uid] = study_pk
        study_pk = studies[study_uid]
        series_uid = series_fields["series_uid"]
        if series_uid not in series_pks:
            series_pk = keys.series.get(series_uid) if keys else None
            if series_pk is None:
                series_pk, series_created = _pk_of(
                    Series, {"series_uid": series_uid}, {**series_fields, "study_id": study_pk}
                )
                if series_created:
                    new_series[study_pk] = new_series.get(study_pk, 0) + 1
                    if series_fields["modality"]:
                        new_series_studies.add(study_pk)
            series_pks[series_uid] = series_pk
    insert, counts = _batch_writes(requests, studies, series_pks, new_series)
    rowcounts = _execute_all([insert, *((text, params) for text, params, _ in counts)])
    for (_, _, uid), rowcount in zip(counts, rowcounts[1:], strict=True):
        if rowcount != 1:
            raise _StaleKey(uid)
    for study_pk in new_series_studies:
        # The update above holds the study's row lock, so concurrent new series of one study
        # recompute the modalities one after the other.
        _study_modalities_update(study_pk)
    return studies, series_pks


def _batch_writes(
    requests: list[_IndexRequest],
    studies: dict[str, int],
    series_pks: dict[str, int],
    new_series: dict[int, int],
) -> tuple[tuple[str, list], list[tuple[str, list, str]]]:
    """The INSERT of the batch's instances, and the count updates of their series and studies.

    Each update matches the UID as well as the key, so that a stale remembered key updates
    nothing (see _KeyCache); it comes with that UID, to check.
    """
    sql = _sql()
    now = timezone.now()
    series_added: dict[int, list] = {}  # series pk -> [series UID, instances added]
    study_added: dict[int, list] = {}  # study pk -> [study UID, instances, series, bytes] added
    instances = []
    for request in requests:
        study_uid = request.fields["study"]["study_uid"]
        series_uid = request.fields["series"]["series_uid"]
        study_pk, series_pk = studies[study_uid], series_pks[series_uid]
        added = study_added.setdefault(study_pk, [study_uid, 0, new_series.get(study_pk, 0), 0])
        added[1] += 1
        added[3] += request.instance_fields["size"]
        series_added.setdefault(series_pk, [series_uid, 0])[1] += 1
        instances.append(sql.instance_values(series_pk, request.instance_fields, now))
    counts = [(sql.count_series, [n, pk, uid], uid) for pk, (uid, n) in series_added.items()]
    counts += [
        (sql.count_study, [added, added_series, added_bytes, pk, uid], uid)
        for pk, (uid, added, added_series, added_bytes) in study_added.items()
    ]
    insert = (sql.insert_instances(len(instances)), [v for row in instances for v in row])
    return insert, counts


# The files are on disk (fsynced) before their rows are written, and a commit on PostgreSQL waits
# for the database's log to reach the disk as well: a third disk flush for every instance, and
# the receiver's slowest step. Without that wait a commit is visible and safe from a crash of the
# database server, but a power cut may lose the last second of rows, as with SQLite's
# synchronous=NORMAL that pacsweb's settings use; their files stay, and
# ``manage.py check_storage --fix`` indexes them again.
_NO_COMMIT_WAIT = "SET LOCAL synchronous_commit TO OFF"


def _index_known_rows(requests: list[_IndexRequest], keys: _KeyCache) -> bool:
    """Write a batch of remembered studies and series straight to the database driver.

    Return False, having done nothing, when that does not apply. The usual batch adds
    instances to series this process has indexed before: it needs no lookup, and its few
    statements run without Django's transaction and cursor machinery, which costs more than
    they do. On PostgreSQL they go in one round trip, commit included: round trips are what a
    receiver waits for there, and the batch holds its study's row lock for all but the first.
    """
    vendor = connection.vendor
    if (
        vendor not in ("postgresql", "sqlite")
        or connection.in_atomic_block
        or not connection.get_autocommit()
    ):
        return False
    studies, series_pks = {}, {}
    for request in requests:
        study_uid = request.fields["study"]["study_uid"]
        series_uid = request.fields["series"]["series_uid"]
        study_pk, series_pk = keys.studies.get(study_uid), keys.series.get(series_uid)
        if study_pk is None or series_pk is None:
            return False
        studies[study_uid], series_pks[series_uid] = study_pk, series_pk
    insert, counts = _batch_writes(requests, studies, series_pks, {})
    connection.ensure_connection()
    # Driver errors become Django's (IntegrityError for a duplicate), as through its cursor.
    with connection.wrap_database_errors, closing(connection.connection.cursor()) as cursor:
        if vendor == "sqlite":
            _write_sqlite(cursor, insert, counts)
        else:
            _write_postgresql(cursor, insert, counts)
    return True


def _write_sqlite(
    cursor: sqlite3.Cursor, insert: tuple[str, list], counts: list[tuple[str, list, str]]
) -> None:
    # The statements are written for Django's cursor, which takes %s for the placeholder.
    cursor.execute("BEGIN IMMEDIATE")
    try:
        cursor.execute(insert[0].replace("%s", "?"), insert[1])
        for text, params, uid in counts:
            cursor.execute(text.replace("%s", "?"), params)
            if cursor.rowcount != 1:
                raise _StaleKey(uid)
        cursor.execute("COMMIT")
    except BaseException:
        if cursor.connection.in_transaction:
            cursor.execute("ROLLBACK")
        raise


def _write_postgresql(
    cursor: psycopg.Cursor, insert: tuple[str, list], counts: list[tuple[str, list, str]]
) -> None:
    # A stale key updates no row, and then divides by zero: the transaction fails, and the
    # division_by_zero error tells it from any other.
    checked = [
        (f"WITH u AS ({text} RETURNING 1) SELECT 1 / count(*) FROM u", params)  # noqa: S608
        for text, params, _ in counts
    ]
    statements = [("BEGIN", []), (_NO_COMMIT_WAIT, []), insert, *checked, ("COMMIT", [])]
    text = ";".join(text for text, _ in statements)
    params = [value for _, params in statements for value in params]
    try:
        if isinstance(cursor, psycopg.ClientCursor):
            # Client-side binding allows several statements in one execute.
            cursor.execute(text, params)
        else:
            # Server-side binding (an OPTIONS choice) takes them one by one.
            for one_text, one_params in statements:
                cursor.execute(one_text, one_params)
    except BaseException as exc:
        _end_failed_transaction(cursor)
        if isinstance(exc, psycopg.errors.DivisionByZero):
            raise _StaleKey("a remembered study or series") from exc
        raise


def _end_failed_transaction(cursor: psycopg.Cursor) -> None:
    # The statements opened their own transaction, which the server holds open, failed,
    # until told to end it.
    try:
        if cursor.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            cursor.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - a broken connection is Django's to close.
        log.warning("could not roll back a failed index write", exc_info=True)


def _execute_all(statements: list[tuple[str, list]]) -> list[int]:
    """Run ``statements`` (SQL, parameters) in order; return the rows each one wrote."""
    counts = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_NO_COMMIT_WAIT)
        for text, params in statements:
            cursor.execute(text, params)
            counts.append(cursor.rowcount)
    return counts


def instance_unindex(*, instance_id: int) -> bool:
    """Remove the index row of an instance whose file is gone; return whether there was one.

    For ``check_storage --fix``: the counts of its series and study drop with it, and a series
    left without instances goes too (the study's modalities are worked out again). The study and
    patient stay, even when empty, since reports and patient links hang on them.
    """
    with _write_lock(), transaction.atomic():
        row = (
            Instance.objects.filter(pk=instance_id)
            .values("series_id", "series__study_id", "size")
            .first()
        )
        if row is None:
            return False
        series_pk, study_pk = row["series_id"], row["series__study_id"]
        Instance.objects.filter(pk=instance_id).delete()
        Series.objects.filter(pk=series_pk).update(num_instances=F("num_instances") - 1)
        series_gone = not Instance.objects.filter(series_id=series_pk).exists()
        if series_gone:
            Series.objects.filter(pk=series_pk).delete()
        Study.objects.filter(pk=study_pk).update(
            num_instances=F("num_instances") - 1,
            num_series=F("num_series") - int(series_gone),
            size=F("size") - row["size"],
        )
        if series_gone:
            _study_modalities_update(study_pk)
    return True


def _study_modalities_update(study_pk: int) -> None:
    modalities = Series.objects.filter(study_id=study_pk).values_list("modality", flat=True)
    joined = "\\".join(sorted({m for m in modalities if m}))[:128]
    Study.objects.filter(pk=study_pk).update(modalities=joined)


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
