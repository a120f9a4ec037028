"""studies/archive.py (names, the ZIP/ZIP64 layout, byte ranges) and studies/dicomdir.py."""

import datetime
import io
import random
import re
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from studies import archive, dicomdir, storage
from studies.archive import Entry, ZipLayout
from studies.models import Instance
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.tools import require_tool

GiB = 1024**3
# Zip entry times carry no time zone.
DATE, TIME = archive.dos_datetime(datetime.datetime(2024, 1, 15, 10, 15, 30))  # noqa: DTZ001


# -- Names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DOE, JOHN (PAT001)", "DOE, JOHN (PAT001)"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Lpt1 .dcm", "_Lpt1 .dcm"),
        ("COM\u00b9", "_COM\u00b9"),
        ("CONSOLE", "CONSOLE"),
        ('a<b>c:d"e/f\\g|h?i*j', "a_b_c_d_e_f_g_h_i_j"),
        ("tab\there\nnewline", "tab here newline"),
        ("nul\x00bell\x07del\x7f", "nulbelldel"),
        ("\u202egpj.exe", "gpj.exe"),
        ("  ..hidden.. ", "hidden"),
        ("trailing dots...", "trailing dots"),
        ("..", "unnamed"),
        ("", "unnamed"),
        ("MU\u0308LLER", "MÜLLER"),
        ("李^小龙", "李^小龙"),
        ("many     blanks\u00a0here", "many blanks here"),
    ],
)
def test_safe_name(text: str, expected: str) -> None:
    assert archive.safe_name(text) == expected


def test_safe_name_is_bounded_and_never_ends_in_a_dot_or_blank() -> None:
    name = archive.safe_name("x" * 40 + " . " + "y" * 40, limit=42)
    assert name == "x" * 40
    assert len(archive.safe_name("é" * 500)) == archive.FOLDER_NAME_LIMIT
    # The prefix that defuses a device name must not push a blank to the end.
    assert archive.safe_name("con.abcde f", limit=11) == "_con.abcde"


def test_unique_names_ignore_case_and_keep_the_extension() -> None:
    names = archive._UniqueNames()
    taken = [names.take("a/", stem, ".dcm", limit=12) for stem in ["IM", "im", "Im", "long-name-x"]]
    assert taken == ["IM.dcm", "im (2).dcm", "Im (3).dcm", "long-name-x.dcm"]
    assert names.take("a/", "long-name-x", ".dcm", limit=15) == "long-na (2).dcm"
    assert names.take("b/", "IM", ".dcm", limit=12) == "IM.dcm"


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name() -> None:
    header = archive.content_disposition('MÜLLER "x";.zip')
    assert header == (
        "attachment; filename=\"MULLER _x__.zip\"; filename*=UTF-8''M%C3%9CLLER%20%22x%22%3B.zip"
    )


# -- The layout -----------------------------------------------------------------------------------


def memory_entry(name: str, data: bytes) -> Entry:
    return Entry(name, len(data), zlib.crc32(data), DATE, TIME, data=data)


def whole(layout: ZipLayout) -> bytes:
    return b"".join(layout.iter_range(0, layout.size, archive.read_stored))


def test_layout_writes_a_plain_zip_that_zipfile_reads() -> None:
    files = {"a/one.dcm": b"1" * 1000, "a/b/two": b"", "ü/three.bin": bytes(range(256)) * 3}
    layout = ZipLayout([memory_entry(n, d) for n, d in files.items()])
    data = whole(layout)
    assert len(data) == layout.size
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert {i.filename: zf.read(i) for i in zf.infolist()} == files
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.date_time == (2024, 1, 15, 10, 15, 30)
            assert info.flag_bits & 0x08 == 0  # No data descriptors.
            assert info.extract_version == 20
    # Archives under 4 GB carry no ZIP64 record.
    assert b"PK\x06\x06" not in data and data[-22:-18] == b"PK\x05\x06"


def test_every_byte_range_is_a_slice_of_the_whole_zip() -> None:
    layout = ZipLayout([memory_entry(f"f{i}", bytes([i]) * (i * 7)) for i in range(6)])
    data = whole(layout)
    for start in range(layout.size):
        assert b"".join(layout.iter_range(start, layout.size, archive.read_stored)) == data[start:]
    for stop in range(layout.size + 1):
        assert b"".join(layout.iter_range(0, stop, archive.read_stored)) == data[:stop]
    rng = random.Random(4)
    for _ in range(300):
        start = rng.randrange(layout.size)
        stop = rng.randrange(start, layout.size + 1)
        assert b"".join(layout.iter_range(start, stop, archive.read_stored)) == data[start:stop]


class VirtualZip(io.RawIOBase):
    """A read-only, seekable view of a layout whose huge entries are zeros made on demand."""

    def __init__(self, layout: ZipLayout) -> None:
        self.layout = layout
        self.position = 0

    @staticmethod
    def read_entry(entry: Entry, skip: int, length: int) -> Iterator[bytes]:
        if entry.data is not None:
            yield entry.data[skip : skip + length]
            return
        while length:
            step = min(length, 1 << 20)
            yield bytes(step)
            length -= step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.layout.size}[whence]
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        stop = min(self.layout.size, self.position + len(buffer))
        data = b"".join(self.layout.iter_range(self.position, stop, self.read_entry))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def test_zip64_sizes_and_offsets_beyond_4_gib() -> None:
    big = Entry("big.bin", 5 * GiB, 0x1234ABCD, DATE, TIME, path="virtual")
    entries = [memory_entry("first.txt", b"hello"), big, memory_entry("after.txt", b"world")]
    layout = ZipLayout(entries)
    assert layout.offsets[2] > 0xFFFFFFFF and layout.directory_offset > 0xFFFFFFFF
    with zipfile.ZipFile(VirtualZip(layout)) as zf:
        infos = {info.filename: info for info in zf.infolist()}
        assert infos["big.bin"].file_size == infos["big.bin"].compress_size == 5 * GiB
        assert infos["big.bin"].CRC == 0x1234ABCD
        assert infos["after.txt"].header_offset == layout.offsets[2]
        # Reading checks the local header's signature and name at the ZIP64 offset, and the CRC.
        assert zf.read("after.txt") == b"world"
        assert zf.read("first.txt") == b"hello"
        with zf.open("big.bin") as fp:
            assert fp.read(1000) == bytes(1000)
    header = layout.local_header(1)
    fields = struct.unpack("<IHHHHHIIIHH", header[:30])
    assert fields[1] == 45 and fields[7] == fields[8] == 0xFFFFFFFF
    assert header[30 + len(b"big.bin") :] == struct.pack("<HHQQ", 1, 16, 5 * GiB, 5 * GiB)
    # The small entry after 4 GiB needs ZIP64 only for its offset, in the central directory.
    record = layout.central_record(2)
    assert struct.unpack("<I", record[42:46])[0] == 0xFFFFFFFF
    assert record.endswith(struct.pack("<HHQ", 1, 8, layout.offsets[2]))
    tail = b"".join(layout.iter_range(layout.size - 98, layout.size, VirtualZip.read_entry))
    assert (
        tail[:4] == b"PK\x06\x06" and tail[56:60] == b"PK\x06\x07" and tail[76:80] == b"PK\x05\x06"
    )
    assert struct.unpack("<Q", tail[48:56])[0] == layout.directory_offset


def test_zip64_starts_exactly_at_the_32_bit_limits() -> None:
    below = Entry("a", 0xFFFFFFFE, 0, DATE, TIME, path="virtual")
    at = Entry("a", 0xFFFFFFFF, 0, DATE, TIME, path="virtual")
    assert len(ZipLayout([below]).local_header(0)) == 31
    assert len(ZipLayout([at]).local_header(0)) == 31 + 20
    assert b"PK\x06\x06" not in ZipLayout([memory_entry("x", b"")] * 0xFFFE)._end
    assert ZipLayout([memory_entry("x", b"")] * 0xFFFF)._end[:4] == b"PK\x06\x06"


def test_65535_entries_and_more_use_the_zip64_end_record() -> None:
    # 0xFFFF in the end record's count fields means "see the ZIP64 end record" (APPNOTE 4.4.1.4).
    count = 0xFFFF
    layout = ZipLayout([memory_entry(f"d/{i:05d}", bytes([i % 256])) for i in range(count)])
    data = whole(layout)
    assert len(data) == layout.size
    end = data[-22:]
    assert struct.unpack("<HH", end[8:12]) == (0xFFFF, 0xFFFF)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        assert len(infos) == count
        for i in (0, 1, 65533, count - 1):
            assert zf.read(infos[i]) == bytes([i % 256])


def test_dos_time_is_clamped_to_what_zip_can_hold() -> None:
    dt = datetime.datetime
    assert archive.dos_datetime(dt(1970, 5, 5)) == archive.dos_datetime(dt(1980, 1, 1))
    assert archive.dos_datetime(dt(2024, 2, 29, 23, 59, 59)) == (
        (44 << 9) | (2 << 5) | 29,
        (23 << 11) | (59 << 5) | 29,
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=90-1000", (90, 99)),
        ("bytes = 1 - 2", (1, 2)),
        ("bytes=100-", "unsatisfiable"),
        ("bytes=100-200", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=9-5", None),
        ("bytes=0-1,3-4", None),
        ("bytes=-", None),
        ("bits=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header: str, expected) -> None:
    assert archive.parse_range(header, 100) == expected


# -- Plans from the index -------------------------------------------------------------------------


def ingest_bytes(data: bytes) -> None:
    outcome = instance_ingest(file=data, source=Instance.Source.IMPORT)
    assert outcome.status == Status.STORED, outcome


@pytest.mark.django_db
def test_plan_is_deterministic_and_its_etag_follows_the_content() -> None:
    study, series = generate_uid(), generate_uid()
    for number in (3, 1, 2):
        ingest_bytes(
            to_bytes(make_dataset(study_uid=study, series_uid=series, InstanceNumber=number))
        )
    instances = Instance.objects.filter(series__study__study_uid=study)
    first = archive.plan_zip(instances)
    again = archive.plan_zip(instances.order_by("-pk"))
    assert whole(first.layout) == whole(again.layout)
    assert first.etag == again.etag
    assert [e.name.rsplit("/", 1)[1] for e in first.entries] == [
        "00001.dcm",
        "00002.dcm",
        "00003.dcm",
    ]
    ingest_bytes(to_bytes(make_dataset(study_uid=study, series_uid=series, InstanceNumber=4)))
    assert archive.plan_zip(instances).etag != first.etag
    assert archive.plan_zip(instances, dicomdir=True).etag != archive.plan_zip(instances).etag


# -- DICOMDIR -------------------------------------------------------------------------------------

# pydicom's own files: an ECG, CT and MR images, SRs (with an empty Study ID and Patient ID), an RT
# plan without an Instance Number, an RT dose and an RT structure set.
PYDICOM_FILES = [
    "waveform_ecg.dcm",
    "CT_small.dcm",
    "MR_small.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "rtstruct.dcm",
]


def extract_fileset(tmp_path: Path) -> tuple[Path, bytes]:
    plan = archive.plan_zip(Instance.objects.all(), dicomdir=True)
    data = whole(plan.layout)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert names[0] == "DICOMDIR"
    for name in names[1:]:
        parts = name.split("/")
        assert len(parts) <= 8
        assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", part) for part in parts), name
    return tmp_path / "DICOMDIR", data


@pytest.fixture
def pydicom_files() -> None:
    for name in PYDICOM_FILES:
        outcome = instance_ingest(file=Path(get_testdata_file(name)), source=Instance.Source.IMPORT)
        assert outcome.status == Status.STORED, outcome


@pytest.mark.django_db
def test_dicomdir_lists_every_instance_with_its_record_type(pydicom_files, tmp_path) -> None:
    path, _ = extract_fileset(tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    fs = FileSet(ds)
    stored = {i.sop_uid: storage.absolute(i.path).read_bytes() for i in Instance.objects.all()}
    assert {instance.SOPInstanceUID for instance in fs} == set(stored)
    for instance in fs:
        assert (tmp_path / instance.path).read_bytes() == stored[instance.SOPInstanceUID]
        assert instance.load().SOPInstanceUID == instance.SOPInstanceUID
    leaf_types = sorted(
        r.DirectoryRecordType for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r
    )
    assert leaf_types == [
        "IMAGE",
        "IMAGE",
        "RT DOSE",
        "RT PLAN",
        "RT STRUCTURE SET",
        "SR DOCUMENT",
        "SR DOCUMENT",
        "WAVEFORM",
    ]
    for record in ds.DirectoryRecordSequence:
        kind = record.DirectoryRecordType
        required = {
            "PATIENT": ["PatientID"],
            "STUDY": ["StudyDate", "StudyTime", "StudyID", "StudyInstanceUID"],
            "SERIES": ["Modality", "SeriesInstanceUID", "SeriesNumber"],
        }.get(kind, ["InstanceNumber", "ReferencedFileID", "ReferencedSOPInstanceUIDInFile"])
        for keyword in required:
            assert record.get(keyword) not in (None, ""), (kind, keyword)
    sr = next(r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "SR DOCUMENT")
    assert sr.CompletionFlag in ("COMPLETE", "PARTIAL")
    assert sr.ConceptNameCodeSequence[0].CodeValue


@pytest.mark.django_db
def test_dicomdir_defaults_for_missing_keys_and_non_ascii_names(tmp_path) -> None:
    ingest_bytes(
        to_bytes(
            make_dataset(
                patient_name="MÜLLER^ANNA",
                patient_id="",
                study_date="",
                StudyTime="",
                StudyID="",
                SeriesDate="20200202",
                SeriesNumber=None,
                InstanceNumber=None,
                modality="",
                SpecificCharacterSet="ISO_IR 192",
            )
        )
    )
    ds = pydicom.dcmread(extract_fileset(tmp_path)[0])
    patient, study, series, image = ds.DirectoryRecordSequence
    assert patient.PatientName == "MÜLLER^ANNA"
    assert patient.SpecificCharacterSet == "ISO_IR 192"
    assert patient.PatientID == "UNKNOWN-1"
    assert (study.StudyDate, study.StudyTime, study.StudyID) == ("20200202", "000000", "1")
    assert "SpecificCharacterSet" not in study
    assert (series.Modality, series.SeriesNumber) == ("OT", 1)
    assert image.InstanceNumber == 1
    assert len(FileSet(ds)) == 1


@pytest.mark.django_db
def test_an_sr_without_a_concept_name_still_gets_listed(tmp_path) -> None:
    sr = make_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11", modality="SR")
    del sr.PixelData
    ingest_bytes(to_bytes(sr))
    ds = pydicom.dcmread(extract_fileset(tmp_path)[0])
    leaf = ds.DirectoryRecordSequence[-1]
    assert leaf.DirectoryRecordType == "IMAGE"
    assert leaf.ReferencedSOPInstanceUIDInFile == sr.SOPInstanceUID


def pydicom_record(kind: str, **keys: object) -> bytes:
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = kind
    for keyword, value in keys.items():
        setattr(record, keyword, value)
    return dicomdir._encode_dataset(record)


@pytest.mark.parametrize("name", ["DOE^JOHN", "MÜLLER^ANNA", "山田^太郎=やまだ^たろう"])
def test_direct_record_encoding_matches_pydicom(name: str) -> None:
    moment = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    patient = dicomdir.PatientNode("PID-1", name)
    study = dicomdir.StudyNode("1.2.3", datetime.date(2024, 1, 15), "1015", name, "", "A1", moment)
    series = dicomdir.SeriesNode("1.2.3.4", "mr", None)
    image = dicomdir.ImageNode("1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2", -3)
    image.file_id = ("DICOM", "PA000001", "ST000001", "SE000001", "IM000001")
    assert dicomdir._patient_record(patient, 1) == pydicom_record(
        "PATIENT", PatientName=name, PatientID="PID-1"
    )
    assert dicomdir._study_record(study, 2) == pydicom_record(
        "STUDY",
        StudyDate="20240115",
        StudyTime="1015",
        AccessionNumber="A1",
        StudyDescription=name,
        StudyInstanceUID="1.2.3",
        StudyID="2",
    )
    assert dicomdir._series_record(series, 7) == pydicom_record(
        "SERIES", Modality="MR", SeriesInstanceUID="1.2.3.4", SeriesNumber=7
    )
    assert dicomdir._image_record(image, 1) == pydicom_record(
        "IMAGE",
        ReferencedFileID=list(image.file_id),
        ReferencedSOPClassUIDInFile=image.sop_class_uid,
        ReferencedSOPInstanceUIDInFile=image.sop_uid,
        ReferencedTransferSyntaxUIDInFile=image.transfer_syntax_uid,
        InstanceNumber=-3,
    )


def test_dicomdir_offsets_link_the_tree() -> None:
    def image(uid: str) -> dicomdir.ImageNode:
        return dicomdir.ImageNode(uid, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", 1)

    moment = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    patients = []
    for p in range(2):
        patient = dicomdir.PatientNode(f"P{p}", f"NAME^{p}")
        for s in range(2):
            study = dicomdir.StudyNode(f"1.2.{p}.{s}", None, "", "", "", "", moment)
            series = dicomdir.SeriesNode(f"1.2.{p}.{s}.1", "CT", 1)
            series.images = [image(f"1.2.{p}.{s}.1.{i}") for i in range(3)]
            study.series.append(series)
            patient.studies.append(study)
        patients.append(patient)
    dicomdir.assign_file_ids(patients)
    data = dicomdir.dicomdir_bytes(patients)
    assert data == dicomdir.dicomdir_bytes(patients)
    ds = pydicom.dcmread(io.BytesIO(data))
    at = {record.seq_item_tell: record for record in ds.DirectoryRecordSequence}

    def chain(offset: int) -> list[Dataset]:
        found = []
        while offset:
            found.append(at[offset])
            offset = at[offset].OffsetOfTheNextDirectoryRecord
        return found

    roots = chain(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity)
    assert [r.PatientID for r in roots] == ["P0", "P1"]
    assert ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == roots[-1].seq_item_tell
    studies = chain(roots[1].OffsetOfReferencedLowerLevelDirectoryEntity)
    assert [r.StudyInstanceUID for r in studies] == ["1.2.1.0", "1.2.1.1"]
    images = chain(
        chain(studies[1].OffsetOfReferencedLowerLevelDirectoryEntity)[
            0
        ].OffsetOfReferencedLowerLevelDirectoryEntity
    )
    assert [list(r.ReferencedFileID) for r in images] == [
        ["DICOM", "PA000002", "ST000002", "SE000001", f"IM00000{i}"] for i in (1, 2, 3)
    ]
    assert all(r.OffsetOfReferencedLowerLevelDirectoryEntity == 0 for r in images)


@pytest.mark.django_db
def test_dcmtk_reads_the_dicomdir_and_finds_its_records(pydicom_files, tmp_path) -> None:
    dcmdump, dcmmkdir = require_tool("dcmdump"), require_tool("dcmmkdir")
    path, _ = extract_fileset(tmp_path)
    dump = subprocess.run(
        [dcmdump, str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    ds = pydicom.dcmread(path)
    # dcmtk reports where it found each record; every offset in the DICOMDIR must be one of them.
    found = {int(n) for n in re.findall(r"#  offset=\$(\d+)", dump)}
    assert len(found) == len(ds.DirectoryRecordSequence) == 32
    referenced = {ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity}
    for record in ds.DirectoryRecordSequence:
        referenced |= {
            record.OffsetOfTheNextDirectoryRecord,
            record.OffsetOfReferencedLowerLevelDirectoryEntity,
        }
    assert referenced - {0} <= found
    assert dump.count('refFileID="DICOM\\PA') == 8
    # dcmmkdir appending a file that is already listed must load our record tree and find it.
    ct = Instance.objects.get(sop_class_uid="1.2.840.10008.5.1.4.1.1.2")
    record = next(
        r
        for r in ds.DirectoryRecordSequence
        if r.get("ReferencedSOPInstanceUIDInFile") == ct.sop_uid
    )
    relative = "/".join(record.ReferencedFileID)
    assert (tmp_path / relative).exists()
    result = subprocess.run(
        [dcmmkdir, "+A", "-v", "-Nxc", "+D", str(path), relative],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Cannot resolve offset" not in output
    assert "directory record for this SOP instance already exists" in output
    assert len(pydicom.dcmread(path).DirectoryRecordSequence) == 32
