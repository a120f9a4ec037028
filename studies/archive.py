"""Zip downloads of a patient, a study or a series: deterministic, resumable, streamed.

Reusable entry point (the physicians' download views and the patients' token pages both use it)::

    response = archive.zip_response(
        request,
        instances=Instance.objects.filter(series__study=study),  # or plan=archive.plan_zip(...)
        filename="DOE, JOHN 2024-01-15 CT HEAD.zip",  # made safe here; ".zip" is added if missing
        dicomdir=False,  # True: a PS3.10 file-set (DICOMDIR + DICOM/PA000001/...) instead
        on_start=lambda served: ...,  # once, when a body is about to stream (see Served)
        on_progress=lambda bytes_sent: ...,  # after each chunk (cheap callers only)
        on_finish=lambda bytes_sent, completed: ...,  # exactly once, when the body ends or stops
    )

It answers ``GET`` and ``HEAD`` with ``200`` (the whole zip), ``206`` (one byte range, for
``Range`` and a matching ``If-Range``), ``416`` (an unsatisfiable range), ``304``/``412``
(``If-None-Match``/``If-Match``), always with ``Accept-Ranges: bytes``, a strong ``ETag``, an
exact ``Content-Length`` and a ``Content-Disposition`` that carries the name both as an ASCII
fallback and as RFC 6266/8187 ``filename*``. ``bytes_sent`` counts the bytes the server took
from the stream and came back for more, so a client that drops the download gives
``completed=False`` and the bytes it got. Callers check access first; this module does not.

Why our own small ZIP writer rather than zipstream-ng: zipstream-ng (and Python's zipfile in
streaming mode) computes each CRC while sending and so writes every entry with a data
descriptor, and it produces the archive front to back only. A ``Range`` request that resumes a
2 GB download at byte 1,500,000,000 would then have to regenerate (read, checksum) everything
before that byte, and the central directory at the end needs every CRC. Ingest has already
recorded each file's size and CRC-32 (``Instance.size``/``Instance.crc32``), so here every local
header is final before a byte is sent, every entry's offset is a sum, and any byte range maps
straight to (entry, offset within it) by bisection: a resumed download reads only what it sends.
The writer is deliberately small: stored entries only (DICOM does not compress well), no data
descriptors, no directory entries, UTF-8 names, fixed timestamps, and ZIP64 exactly where the
format requires it (APPNOTE 6.3.10 section 4.5.3: sizes or offsets of 0xFFFFFFFF or more, or
0xFFFF entries or more), so archives under 4 GB stay plain zips that every tool opens.

Integrity: a stored file that is missing, has another size than recorded, or whose CRC-32 differs
from the recorded one aborts the stream (``ArchiveReadError`` raised inside the iterator), so the
server closes the connection before ``Content-Length`` is reached and the client is left with a
broken download, never a valid-looking zip with files missing. The CRC is checked while each
whole file is sent; a range that covers a file only in part checks its size, and the zip's
central directory carries the recorded CRC, so extraction still catches a changed byte.
Checking the CRC is most of the server's work per byte, so it uses ISA-L's CRC-32 (the ``isal``
package, the same checksum as ``zlib.crc32``, several times faster).
"""

import bisect
import datetime
import hashlib
import logging
import os
import re
import struct
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from isal.isal_zlib import crc32
from pydicom.dataset import Dataset

from pacsweb.lib.person_names import display_person_name
from studies import dicomdir, storage
from studies.models import Instance, Series

log = logging.getLogger(__name__)

# Bump when the bytes produced for the same entries change, so that old ETags stop matching.
WRITER_VERSION = 1
READ_CHUNK = 1024 * 1024
# The central directory is sent in pieces of about this size rather than record by record.
DIRECTORY_CHUNK = 64 * 1024

ZIP64_LIMIT = 0xFFFFFFFF
ZIP_ENTRIES_LIMIT = 0xFFFF
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_END_RECORD = struct.Struct("<IHHHHIIH")
_ZIP64_END_RECORD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_FLAG_UTF8 = 1 << 11
_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45
# "Made by" UNIX, so that extracted files get ordinary permissions (rw-r--r--).
_MADE_BY_UNIX = 3 << 8
_UNIX_FILE_ATTRIBUTES = 0o100644 << 16

# Folder names are cut to this many characters, so a whole path stays well within Windows'
# 260-character MAX_PATH even when extracted a few folders deep.
FOLDER_NAME_LIMIT = 48
FILE_NAME_LIMIT = 120
_FORBIDDEN = set('<>:"/\\|?*')
# Windows refuses these device names as file or folder names, with any extension.
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"),
}


class ArchiveReadError(Exception):
    """A stored file could not be sent as recorded: the download is aborted (left broken)."""


# -- Names ----------------------------------------------------------------------------------------


def safe_name(text: str, *, limit: int = FOLDER_NAME_LIMIT, fallback: str = "unnamed") -> str:
    """One path component that Windows, macOS and Linux all accept, readable, at most ``limit``.

    Control and format characters (bidirectional overrides that could fake an extension among
    them) are dropped, characters reserved by any of the three systems become ``_``, blanks are
    collapsed, leading and trailing dots and blanks go (Windows drops trailing ones; a leading dot
    hides a file), and Windows device names (``CON``, ``com1.txt``) get a ``_`` prefix.
    """
    kept = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if char in _FORBIDDEN:
            kept.append("_")
        elif category[0] == "Z" or char in "\t\n\r":
            kept.append(" ")
        elif category[0] != "C":
            kept.append(char)
    name = " ".join("".join(kept).split()).strip(" .")
    name = name[:limit].rstrip(" .") or fallback
    if name.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        name = f"_{name}"[:limit].rstrip(" .")
    return name


class _UniqueNames:
    """Hands out names unique within each folder, ignoring case (Windows and macOS do)."""

    def __init__(self) -> None:
        self._taken: dict[str, set[str]] = {}

    def take(self, folder: str, stem: str, extension: str = "", *, limit: int) -> str:
        taken = self._taken.setdefault(folder.casefold(), set())
        candidate, number = f"{stem}{extension}", 1
        while candidate.casefold() in taken:
            number += 1
            suffix = f" ({number}){extension}"
            candidate = f"{stem[: limit - len(suffix)].rstrip(' .')}{suffix}"
        taken.add(candidate.casefold())
        return candidate


def patient_label(name: str, patient_id: str) -> str:
    """``DOE, JOHN (PAT001)``: how a patient's folder and zip are named (not yet made safe)."""
    readable = display_person_name(name) or "Unknown patient"
    return f"{readable} ({patient_id})" if patient_id else readable


def study_label(study_date: datetime.date | None, description: str) -> str:
    date = study_date.isoformat() if study_date else "No date"
    return f"{date} {description or 'Study'}"


def series_label(number: int | None, modality: str, description: str) -> str:
    parts = [f"{number:03d}" if number is not None else "", modality, description]
    return " ".join(p for p in parts if p) or "Series"


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name as ``filename*`` (RFC 6266 4.3)."""
    decomposed = unicodedata.normalize("NFKD", filename)
    ascii_name = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_name = re.sub(r"[^A-Za-z0-9 ._,()\-]", "_", ascii_name).strip() or "download.zip"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- The ZIP layout -------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One file of the zip: its name, recorded size and CRC-32, and where its bytes come from.

    A named tuple rather than a dataclass: a patient's zip may list a hundred thousand of them.
    """

    name: str
    size: int
    crc32: int
    dos_date: int
    dos_time: int
    # A path relative to the archive's storage, or the bytes themselves (the DICOMDIR).
    path: str = ""
    data: bytes | None = None


def dos_datetime(moment: datetime.datetime) -> tuple[int, int]:
    """The MS-DOS date and time fields of a zip entry, clamped to what they can hold."""
    year = min(max(moment.year, 1980), 2107)
    if year != moment.year:
        moment = datetime.datetime(year, 1, 1)  # noqa: DTZ001 - zip times carry no zone.
    date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return date, time


# 1980-01-01, the earliest date a zip entry can carry.
EMPTY_DOS_DATE = (0 << 9) | (1 << 5) | 1

ReadEntry = Callable[[Entry, int, int], Iterator[bytes]]


class ZipLayout:
    """Where every byte of a stored-entries zip lies, computed from names, sizes and CRCs alone.

    The archive is: for each entry a local header and its data, then the central directory (one
    record per entry), then (when needed) the ZIP64 end record and locator, then the end record.
    """

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        self._names = [e.name.encode("utf-8") for e in self.entries]
        self.offsets: list[int] = []
        position = 0
        for entry, name in zip(self.entries, self._names, strict=True):
            self.offsets.append(position)
            position += _LOCAL_HEADER.size + len(name) + self._local_extra_size(entry) + entry.size
        self.directory_offset = position
        # Offsets of each central directory record, relative to the directory's start.
        self._directory_offsets: list[int] = []
        size = 0
        for entry, name, offset in zip(self.entries, self._names, self.offsets, strict=True):
            self._directory_offsets.append(size)
            # The ZIP64 extra field holds both sizes and/or the offset when they need it.
            wide = 2 * (entry.size >= ZIP64_LIMIT) + (offset >= ZIP64_LIMIT)
            size += _CENTRAL_HEADER.size + len(name) + (4 + 8 * wide if wide else 0)
        self.directory_size = size
        self._end = self._end_records()
        self.size = self.directory_offset + self.directory_size + len(self._end)

    @staticmethod
    def _local_extra_size(entry: Entry) -> int:
        return 20 if entry.size >= ZIP64_LIMIT else 0

    def _uses_zip64(self, index: int) -> bool:
        return self.entries[index].size >= ZIP64_LIMIT or self.offsets[index] >= ZIP64_LIMIT

    def _version(self, index: int) -> int:
        return _VERSION_ZIP64 if self._uses_zip64(index) else _VERSION_DEFAULT

    def _flags(self, index: int) -> int:
        return 0 if self.entries[index].name.isascii() else _FLAG_UTF8

    def local_header(self, index: int) -> bytes:
        entry, name = self.entries[index], self._names[index]
        size, extra = entry.size, b""
        if size >= ZIP64_LIMIT:
            # APPNOTE 4.5.3: in a local header the ZIP64 field holds both sizes.
            extra = struct.pack("<HHQQ", 0x0001, 16, size, size)
            size = ZIP64_LIMIT
        return (
            _LOCAL_HEADER.pack(
                0x04034B50,
                self._version(index),
                self._flags(index),
                0,  # Stored.
                entry.dos_time,
                entry.dos_date,
                entry.crc32,
                size,
                size,
                len(name),
                len(extra),
            )
            + name
            + extra
        )

    def _central_extra(self, index: int) -> tuple[bytes, int, int]:
        """The ZIP64 extra field of a central record, with the 32-bit size and offset to write."""
        entry, offset = self.entries[index], self.offsets[index]
        values = []
        size = entry.size
        if size >= ZIP64_LIMIT:
            values += [size, size]
            size = ZIP64_LIMIT
        if offset >= ZIP64_LIMIT:
            values.append(offset)
            offset = ZIP64_LIMIT
        if not values:
            return b"", size, offset
        return struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values), size, offset

    def central_record(self, index: int) -> bytes:
        entry, name = self.entries[index], self._names[index]
        extra, size, offset = self._central_extra(index)
        version = self._version(index)
        return (
            _CENTRAL_HEADER.pack(
                0x02014B50,
                _MADE_BY_UNIX | version,
                version,
                self._flags(index),
                0,
                entry.dos_time,
                entry.dos_date,
                entry.crc32,
                size,
                size,
                len(name),
                len(extra),
                0,  # No comment.
                0,  # Disk number.
                0,  # Internal attributes: binary.
                _UNIX_FILE_ATTRIBUTES,
                offset,
            )
            + name
            + extra
        )

    def _end_records(self) -> bytes:
        count, size, offset = len(self.entries), self.directory_size, self.directory_offset
        records = b""
        if count >= ZIP_ENTRIES_LIMIT or size >= ZIP64_LIMIT or offset >= ZIP64_LIMIT:
            end64_offset = offset + size
            records += _ZIP64_END_RECORD.pack(
                0x06064B50,
                _ZIP64_END_RECORD.size - 12,
                _MADE_BY_UNIX | _VERSION_ZIP64,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                size,
                offset,
            )
            records += _ZIP64_LOCATOR.pack(0x07064B50, 0, end64_offset, 1)
        records += _END_RECORD.pack(
            0x06054B50,
            0,
            0,
            min(count, ZIP_ENTRIES_LIMIT),
            min(count, ZIP_ENTRIES_LIMIT),
            min(size, ZIP64_LIMIT),
            min(offset, ZIP64_LIMIT),
            0,
        )
        return records

    def iter_range(self, start: int, stop: int, read: ReadEntry) -> Iterator[bytes]:
        """Yield the archive's bytes ``[start, stop)``; ``read(entry, skip, length)`` gives data."""
        position = start
        if position < self.directory_offset:
            index = bisect.bisect_right(self.offsets, position) - 1
            while index < len(self.entries) and position < stop:
                header = self.local_header(index)
                header_start = self.offsets[index]
                data_start = header_start + len(header)
                if position < data_start:
                    end = min(data_start, stop)
                    yield header[position - header_start : end - header_start]
                    position = end
                data_end = data_start + self.entries[index].size
                if position < stop and position < data_end:
                    length = min(data_end, stop) - position
                    yield from read(self.entries[index], position - data_start, length)
                    position += length
                index += 1
        directory_end = self.directory_offset + self.directory_size
        if position < stop and position < directory_end:
            relative = position - self.directory_offset
            index = bisect.bisect_right(self._directory_offsets, relative) - 1
            skip = relative - self._directory_offsets[index]
            pending: list[bytes] = []
            pending_size = 0
            while index < len(self.entries) and position < stop:
                record = self.central_record(index)[skip:]
                skip = 0
                record = record[: stop - position]
                pending.append(record)
                pending_size += len(record)
                position += len(record)
                index += 1
                if pending_size >= DIRECTORY_CHUNK:
                    yield b"".join(pending)
                    pending, pending_size = [], 0
            if pending:
                yield b"".join(pending)
        if position < stop:
            yield self._end[position - directory_end : stop - directory_end]


def read_stored(entry: Entry, skip: int, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes of the entry from ``skip``; raise ArchiveReadError if it differs."""
    if entry.data is not None:
        yield entry.data[skip : skip + length]
        return
    try:
        fp = storage.open_file(entry.path)
    except OSError as exc:
        raise ArchiveReadError(f"{entry.name}: cannot open the stored file ({exc})") from exc
    with fp:
        # Positional reads on the descriptor: no buffering layer copying the bytes once more.
        fd = fp.fileno()
        actual = os.fstat(fd).st_size
        if actual != entry.size:
            raise ArchiveReadError(
                f"{entry.name}: the stored file has {actual} bytes, {entry.size} were recorded"
            )
        whole = skip == 0 and length == entry.size
        crc = 0
        position, end = skip, skip + length
        while position < end:
            chunk = os.pread(fd, min(READ_CHUNK, end - position), position)
            if not chunk:
                raise ArchiveReadError(f"{entry.name}: the stored file ended early")
            position += len(chunk)
            if whole:
                crc = crc32(chunk, crc)
                # Checked before the last chunk goes out, so a changed file never arrives whole.
                if position == end and crc != entry.crc32:
                    raise ArchiveReadError(
                        f"{entry.name}: CRC-32 {crc:08x}, {entry.crc32:08x} was recorded"
                    )
            yield chunk


# -- Plans: which files, under which names --------------------------------------------------------


@dataclass(frozen=True)
class ZipPlan:
    """Everything a download needs before its first byte: entries, layout, ETag."""

    layout: ZipLayout
    etag: str
    dicomdir: bool

    @property
    def size(self) -> int:
        return self.layout.size

    @property
    def entries(self) -> list[Entry]:
        return self.layout.entries


def plan_from_entries(entries: Sequence[Entry], *, dicomdir: bool = False) -> ZipPlan:
    digest = hashlib.sha256(f"pacsweb-zip {WRITER_VERSION} {int(dicomdir)}\n".encode())
    for name, size, crc, date, time, *_ in entries:
        digest.update(f"{name}\0{size}\0{crc}\0{date}\0{time}\n".encode())
    return ZipPlan(ZipLayout(entries), f'"{digest.hexdigest()[:40]}"', dicomdir)


class _Row(NamedTuple):
    """One instance with what its zip entry and DICOMDIR records need."""

    pk: int
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    path: str
    size: int
    crc32: int
    series_pk: int
    series_uid: str
    series_number: int | None
    modality: str
    series_description: str
    series_date: datetime.date | None
    study_pk: int
    study_uid: str
    study_date: datetime.date | None
    study_time: str
    study_id: str
    accession_number: str
    study_description: str
    patient_pk: int
    patient_id: str
    patient_name: str


_INSTANCE_FIELDS = (
    "pk",
    "sop_uid",
    "sop_class_uid",
    "transfer_syntax_uid",
    "instance_number",
    "path",
    "size",
    "crc32",
    "series_id",
)
# What every instance of a series shares, fetched once per series rather than once per instance.
_SERIES_FIELDS = (
    "pk",
    "series_uid",
    "series_number",
    "modality",
    "description",
    "series_date",
    "study_id",
    "study__study_uid",
    "study__study_date",
    "study__study_time",
    "study__study_id",
    "study__accession_number",
    "study__description",
    "study__patient_id",
    "study__patient__patient_id",
    "study__patient__name",
    "study__received_at",
)
_BATCH = 1000


def _sort_key(row: _Row) -> tuple:
    # (is missing, value): missing dates and numbers sort last; two values are compared only
    # when both are present, so the placeholder 0 never meets a date.
    return (
        row.patient_name,
        row.patient_id,
        row.patient_pk,
        row.study_date is None,
        row.study_date or 0,
        row.study_time,
        row.study_uid,
        row.series_number is None,
        row.series_number or 0,
        row.series_uid,
        row.instance_number is None,
        row.instance_number or 0,
        row.sop_uid,
    )


def _ordered_rows(instances: QuerySet[Instance]) -> tuple[list[_Row], dict[int, datetime.datetime]]:
    """The instances in the zip's fixed order (patient, study, series, instance), and when each
    of their studies was received.

    Sorted here rather than in SQL so that the order (and so the bytes) is the same on every
    database, whatever its collation or its place for NULLs. Tuples, not dicts or models: a
    patient may have a hundred thousand instances, and this runs before the first byte.
    """
    listed = list(instances.order_by().values_list(*_INSTANCE_FIELDS))
    series_pks = sorted({values[-1] for values in listed})
    shared: dict[int, tuple] = {}
    received: dict[int, datetime.datetime] = {}
    for start in range(0, len(series_pks), _BATCH):
        batch = series_pks[start : start + _BATCH]
        for values in Series.objects.filter(pk__in=batch).values_list(*_SERIES_FIELDS):
            shared[values[0]] = values[:-1]
            received[values[6]] = values[-1]
    # An instance whose series was deleted between the two queries is left out.
    rows = [
        _Row._make(values[:-1] + shared[values[-1]]) for values in listed if values[-1] in shared
    ]
    rows.sort(key=_sort_key)
    return rows, received


def _received_dos_times(received: dict[int, datetime.datetime]) -> dict[int, tuple[int, int]]:
    """Every entry carries its study's arrival time (UTC): fixed, so every zip is the same."""
    return {
        pk: dos_datetime(moment.astimezone(datetime.UTC).replace(tzinfo=None))
        for pk, moment in received.items()
    }


def _readable_entries(rows: list[_Row], received: dict[int, datetime.datetime]) -> list[Entry]:
    """``patient/study date + description/series number + modality + description/00001.dcm``."""
    names = _UniqueNames()
    times = _received_dos_times(received)
    folders: dict[tuple[str, int], str] = {}
    entries = []
    for row in rows:
        patient = folders.get(("patient", row.patient_pk))
        if patient is None:
            label = patient_label(row.patient_name, row.patient_id)
            patient = f"{names.take('', safe_name(label), limit=FOLDER_NAME_LIMIT)}/"
            folders["patient", row.patient_pk] = patient
        study = folders.get(("study", row.study_pk))
        if study is None:
            label = study_label(row.study_date, row.study_description)
            study = f"{patient}{names.take(patient, safe_name(label), limit=FOLDER_NAME_LIMIT)}/"
            folders["study", row.study_pk] = study
        series = folders.get(("series", row.series_pk))
        if series is None:
            label = series_label(row.series_number, row.modality, row.series_description)
            series = f"{study}{names.take(study, safe_name(label), limit=FOLDER_NAME_LIMIT)}/"
            folders["series", row.series_pk] = series
        number = row.instance_number
        # Digits (and a minus sign) are safe everywhere; "instance" is the name without a number.
        stem = str(number).zfill(5) if number is not None else "instance"
        file_name = names.take(series, stem, ".dcm", limit=FILE_NAME_LIMIT)
        date, time = times[row.study_pk]
        entries.append(Entry(f"{series}{file_name}", row.size, row.crc32, date, time, row.path))
    return entries


def _fileset_entries(rows: list[_Row], received: dict[int, datetime.datetime]) -> list[Entry]:
    """A PS3.10 file-set: ``DICOMDIR`` first, then ``DICOM/PA000001/ST000001/SE000001/IM000001``."""
    patients: dict[int, dicomdir.PatientNode] = {}
    studies: dict[int, dicomdir.StudyNode] = {}
    series_nodes: dict[int, dicomdir.SeriesNode] = {}
    images: list[dicomdir.ImageNode] = []
    for row in rows:
        patient = patients.get(row.patient_pk)
        if patient is None:
            patient = dicomdir.PatientNode(patient_id=row.patient_id, name=row.patient_name)
            patients[row.patient_pk] = patient
        study = studies.get(row.study_pk)
        if study is None:
            study = dicomdir.StudyNode(
                study_uid=row.study_uid,
                date=row.study_date,
                time=row.study_time,
                description=row.study_description,
                study_id=row.study_id,
                accession_number=row.accession_number,
                received_at=received[row.study_pk],
            )
            studies[row.study_pk] = study
            patient.studies.append(study)
        study.series_date = study.series_date or row.series_date
        series = series_nodes.get(row.series_pk)
        if series is None:
            series = dicomdir.SeriesNode(
                series_uid=row.series_uid, modality=row.modality, number=row.series_number
            )
            series_nodes[row.series_pk] = series
            study.series.append(series)
        image = dicomdir.ImageNode(
            sop_uid=row.sop_uid,
            sop_class_uid=row.sop_class_uid,
            transfer_syntax_uid=row.transfer_syntax_uid,
            number=row.instance_number,
        )
        series.images.append(image)
        images.append(image)
    _load_headers(images, [row.pk for row in rows])
    tree = list(patients.values())
    dicomdir.assign_file_ids(tree)
    index = dicomdir.dicomdir_bytes(tree)
    times = _received_dos_times(received)
    # The DICOMDIR is as new as the newest study it lists.
    date, time = max(times.values(), default=(EMPTY_DOS_DATE, 0))
    entries = [Entry("DICOMDIR", len(index), crc32(index), date, time, data=index)]
    for image, row in zip(images, rows, strict=True):
        date, time = times[row.study_pk]
        entries.append(Entry("/".join(image.file_id), row.size, row.crc32, date, time, row.path))
    return entries


def _load_headers(images: list[dicomdir.ImageNode], pks: list[int]) -> None:
    """Give the instances whose records need more than the index their stored header.

    IMAGE records need only index columns; other record types (SR, presentation states, RT,
    encapsulated documents...) read their keys from the DICOM JSON header kept at ingest.
    """
    wanted = {pk: image for image, pk in zip(images, pks, strict=True) if image.needs_header}
    ids = list(wanted)
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        for pk, metadata in Instance.objects.filter(pk__in=batch).values_list("pk", "metadata"):
            wanted[pk].header = _header_from_json(metadata)


def _header_from_json(metadata: str) -> Dataset | None:
    if not metadata:
        return None
    try:
        return Dataset.from_json(metadata, bulk_data_uri_handler=lambda _uri: b"")
    except Exception:  # noqa: BLE001 - a header that cannot be rebuilt falls back to defaults.
        log.warning("could not rebuild a stored DICOM JSON header for a DICOMDIR record")
        return None


def plan_zip(instances: QuerySet[Instance], *, dicomdir: bool = False) -> ZipPlan:
    """The zip of these instances: readable folders, or a DICOMDIR file-set with ``dicomdir``."""
    rows, received = _ordered_rows(instances)
    if dicomdir:
        return plan_from_entries(_fileset_entries(rows, received), dicomdir=True)
    return plan_from_entries(_readable_entries(rows, received))


# -- The HTTP response ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What a response streams: bytes ``first``..``last`` (inclusive) of a zip of ``total``."""

    status: int
    first: int
    last: int
    total: int
    etag: str

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def range_text(self) -> str | None:
        """``bytes 100-199/1000`` for a partial response (the Content-Range value), else None."""
        if self.status != 206:
            return None
        return f"bytes {self.first}-{self.last}/{self.total}"


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSATISFIABLE = "unsatisfiable"


def parse_range(header: str, total: int) -> tuple[int, int] | str | None:
    """One ``Range`` (RFC 9110 14.1.2) as (first, last), ``"unsatisfiable"``, or None to ignore.

    Several ranges, or a header that does not parse, are ignored: the whole zip is sent, as the
    RFC allows, since download clients resume with a single range.
    """
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or match.groups() == ("", ""):
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0 or total == 0:
            return _UNSATISFIABLE
        return max(total - suffix, 0), total - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= total:
        return _UNSATISFIABLE
    last = int(last_text) if last_text else total - 1
    return first, min(last, total - 1)


class _Stream:
    """The response body: counts what the server took, and reports the end exactly once."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        served: Served,
        on_progress: Callable[[int], None] | None,
        on_finish: Callable[[int, bool], None] | None,
    ) -> None:
        self._chunks = chunks
        self._served = served
        self._on_progress = on_progress
        self._on_finish = on_finish
        self._handed = 0  # The size of the chunk the server has but has not yet come back from.
        self.bytes_sent = 0
        self._finished = False

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> bytes:
        # The server asks for the next chunk only once it has written the previous one.
        self.bytes_sent += self._handed
        self._handed = 0
        if self._finished:
            raise StopIteration
        if self._on_progress is not None and self.bytes_sent:
            self._on_progress(self.bytes_sent)
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._finish()
            raise
        except ArchiveReadError as exc:
            log.error(
                "zip download aborted after %d of %d bytes: %s",
                self.bytes_sent,
                self._served.length,
                exc,
            )
            self._finish()
            raise
        except BaseException:
            log.exception("zip download failed after %d bytes", self.bytes_sent)
            self._finish()
            raise
        self._handed = len(chunk)
        return chunk

    def close(self) -> None:
        """Called by the server when the response ends, also when the client went away."""
        if not self._finished and self.bytes_sent < self._served.length:
            log.info(
                "zip download stopped by the client after %d of %d bytes",
                self.bytes_sent,
                self._served.length,
            )
        self._chunks.close()
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._on_finish is not None:
            self._on_finish(self.bytes_sent, self.bytes_sent == self._served.length)


def _download_filename(filename: str) -> str:
    stem = filename[:-4] if filename.lower().endswith(".zip") else filename
    return f"{safe_name(stem, limit=FILE_NAME_LIMIT, fallback='download')}.zip"


def zip_response(
    request: HttpRequest,
    *,
    instances: QuerySet[Instance] | None = None,
    plan: ZipPlan | None = None,
    filename: str,
    dicomdir: bool = False,
    on_start: Callable[[Served], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_finish: Callable[[int, bool], None] | None = None,
) -> HttpResponseBase:
    """The zip of ``instances`` (or a ready ``plan``) as a streamed, resumable download.

    See the module docstring for the statuses and headers. ``on_start`` runs before this
    returns, only when a body will be streamed (``GET`` with 200 or 206); ``on_finish`` then runs
    exactly once with the bytes the client took and whether that was all of them.
    """
    if plan is None:
        if instances is None:
            raise TypeError("zip_response needs instances or a plan")
        plan = plan_zip(instances, dicomdir=dicomdir)
    total = plan.size
    headers = {
        "ETag": plan.etag,
        "Accept-Ranges": "bytes",
        # Private patient data: never kept by a shared cache; no-transform keeps proxies from
        # compressing the body, which would break Content-Length and byte ranges.
        "Cache-Control": "private, no-store, no-transform",
        # Tells nginx to pass the stream through rather than spool it to disk first.
        "X-Accel-Buffering": "no",
    }
    conditional = get_conditional_response(request, etag=plan.etag)
    if conditional is not None:
        for name, value in headers.items():
            conditional[name] = value
        return conditional

    first, last, status = 0, total - 1, 200
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if range_header and (if_range is None or if_range.strip() == plan.etag):
        parsed = parse_range(range_header, total)
        if parsed == _UNSATISFIABLE:
            response = HttpResponse(status=416, headers=headers)
            response["Content-Range"] = f"bytes */{total}"
            return response
        if parsed is not None:
            first, last = parsed  # type: ignore[misc]
            status = 206
    served = Served(status, first, last, total, plan.etag)

    if request.method == "HEAD":
        body: Iterator[bytes] = iter(())
    else:
        if on_start is not None:
            on_start(served)
        body = _Stream(
            plan.layout.iter_range(first, last + 1, read_stored), served, on_progress, on_finish
        )
    response = StreamingHttpResponse(body, status=status, content_type="application/zip")
    for name, value in headers.items():
        response[name] = value
    response["Content-Length"] = str(served.length)
    response["Content-Disposition"] = content_disposition(_download_filename(filename))
    if status == 206:
        response["Content-Range"] = f"bytes {first}-{last}/{total}"
    return response
