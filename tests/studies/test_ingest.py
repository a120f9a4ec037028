"""studies.services.instance_ingest: the one ingestion path."""

import io
import zlib
from pathlib import Path

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from studies import dicom_header, storage
from studies.models import Instance, Patient, Series, Study
from studies.services import DUPLICATE_SAME_CONTENT, Status, _index_fields, instance_ingest
from tests.conftest import make_dataset, to_bytes

pytestmark = pytest.mark.django_db

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# pydicom's test files that are not complete, archivable instances, and the reason we expect.
BROKEN = {
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "meta_missing_tsyntax.dcm": None,  # Readable: the transfer syntax is worked out.
}
SOURCE = Instance.Source.IMPORT


def stored_files() -> list[str]:
    return sorted(storage.iter_files())


def dicom_test_files() -> list[Path]:
    return sorted(p for p in TEST_FILES.glob("*.dcm"))


@pytest.mark.parametrize("path", dicom_test_files(), ids=lambda p: p.name)
def test_every_pydicom_test_file_is_stored_or_rejected_with_a_reason(path: Path) -> None:
    outcome = instance_ingest(file=path, source=SOURCE, source_detail=str(path))
    original = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    has_uids = all(
        original.get(k)
        for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID")
    )
    if BROKEN.get(path.name) or not has_uids:
        assert outcome.status == Status.REJECTED, outcome
        assert outcome.reason
        assert stored_files() == []
        assert not Instance.objects.exists() and not Study.objects.exists()
        return
    assert outcome.status == Status.STORED, outcome
    instance = Instance.objects.select_related("series__study__patient").get()
    assert instance.sop_uid == original.SOPInstanceUID
    assert instance.series.series_uid == original.SeriesInstanceUID
    assert instance.series.study.study_uid == original.StudyInstanceUID
    assert instance.series.study.patient.patient_id == str(original.get("PatientID", ""))
    stored = storage.absolute(instance.path).read_bytes()
    assert stored[:128] == b"\x00" * 128 and stored[128:132] == b"DICM"
    assert (instance.size, instance.crc32) == (len(stored), zlib.crc32(stored))
    reread = pydicom.dcmread(io.BytesIO(stored))
    assert reread.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert reread.file_meta.TransferSyntaxUID == instance.transfer_syntax_uid
    assert stored_files() == [instance.path]


@pytest.mark.parametrize("path", dicom_test_files(), ids=lambda p: p.name)
def test_index_fields_are_the_same_remembered_or_not(path: Path, monkeypatch) -> None:
    def fields() -> object:
        try:
            parsed = dicom_header.read(io.BytesIO(path.read_bytes()))
        except dicom_header.InvalidDicom:
            return None
        try:
            return _index_fields(parsed.ds, has_pixel_data=parsed.pixel_data is not None)
        except Exception as exc:  # noqa: BLE001 - ingest rejects on this; it must be the same.
            return repr(exc)

    first, remembered = fields(), fields()
    # Every value converted by pydicom, as without header_value's memo.
    monkeypatch.setattr(dicom_header, "_is_plain", lambda raw: False)
    assert first == remembered == fields()


def test_a_duplicate_not_looked_up_first_is_found_by_the_index(dicom_bytes) -> None:
    data = dicom_bytes(sop_uid="1.2.3.4.5")
    assert instance_ingest(file=data, source=SOURCE).status == Status.STORED
    kept = stored_files()

    again = instance_ingest(file=data, source=SOURCE, duplicates_likely=False)
    assert (again.status, again.reason) == (Status.DUPLICATE, DUPLICATE_SAME_CONTENT)
    other = dicom_bytes(sop_uid="1.2.3.4.5", patient_name="OTHER^ONE")
    differs = instance_ingest(file=other, source=SOURCE, duplicates_likely=False)
    assert differs.status == Status.DUPLICATE and "different content" in differs.reason
    # The files written before the index said no are gone; the first copy stays.
    assert stored_files() == kept
    assert Instance.objects.count() == 1 and Series.objects.get().num_instances == 1


def test_dataset_bytes_are_kept_exactly(dicom_bytes) -> None:
    data = dicom_bytes()
    outcome = instance_ingest(file=data, source=SOURCE)
    assert outcome.status == Status.STORED
    stored = storage.absolute(Instance.objects.get().path).read_bytes()
    # Everything after the file meta group is byte-identical to what was sent.
    original_ds_start = len(data) - len(pydicom.dcmread(io.BytesIO(data)).PixelData)
    assert stored.endswith(data[original_ds_start:])
    sent = pydicom.dcmread(io.BytesIO(data))
    kept = pydicom.dcmread(io.BytesIO(stored))
    assert kept == sent


def test_malicious_preamble_is_zeroed(dicom_bytes) -> None:
    data = b"MZ\x90\x00" + b"\xcc" * 124 + dicom_bytes()[128:]
    assert instance_ingest(file=data, source=SOURCE).status == Status.STORED
    assert storage.absolute(Instance.objects.get().path).read_bytes()[:128] == b"\x00" * 128


def test_duplicate_with_same_bytes_is_noop(dicom_bytes) -> None:
    data = dicom_bytes(sop_uid="1.2.3.4.5")
    assert instance_ingest(file=data, source=SOURCE).status == Status.STORED
    again = instance_ingest(file=data, source=SOURCE)
    assert again.status == Status.DUPLICATE
    assert again.reason == "already in the archive"
    assert Instance.objects.count() == 1 and len(stored_files()) == 1
    assert Study.objects.get().num_instances == 1


def test_duplicate_with_different_bytes_keeps_the_first(dicom_bytes) -> None:
    first = dicom_bytes(sop_uid="1.2.3.4.5", StudyDescription="FIRST")
    second = dicom_bytes(sop_uid="1.2.3.4.5", StudyDescription="SECOND")
    instance_ingest(file=first, source=SOURCE)
    outcome = instance_ingest(file=second, source=SOURCE)
    assert outcome.status == Status.DUPLICATE
    assert "first copy was kept" in outcome.reason
    assert Study.objects.get().description == "FIRST"
    assert len(stored_files()) == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is not DICOM at all\n" * 10, "not"),
        (to_bytes(make_dataset(sop_uid="1.2.03")), "SOPInstanceUID is not a valid UID"),
        (to_bytes(make_dataset(sop_uid="1." + "2" * 70)), "SOPInstanceUID is not a valid UID"),
        (
            to_bytes(make_dataset(study_uid="../../etc/passwd")),
            "StudyInstanceUID is not a valid UID",
        ),
    ],
    ids=["empty", "text", "zero-padded-uid", "long-uid", "path-uid"],
)
def test_bad_files_are_rejected_and_leave_nothing(data: bytes, reason: str) -> None:
    outcome = instance_ingest(file=data, source=SOURCE)
    assert outcome.status == Status.REJECTED
    assert reason in outcome.reason
    assert stored_files() == [] and not Instance.objects.exists() and not Patient.objects.exists()


def test_missing_uid_is_rejected() -> None:
    ds = make_dataset()
    del ds.SeriesInstanceUID
    outcome = instance_ingest(file=to_bytes(ds), source=SOURCE)
    assert outcome.status == Status.REJECTED and outcome.reason == "SeriesInstanceUID is missing"


def test_truncated_pixel_data_is_rejected(dicom_bytes) -> None:
    data = dicom_bytes(rows=64, columns=64)
    outcome = instance_ingest(file=data[:-100], source=SOURCE)
    assert outcome.status == Status.REJECTED and "truncated" in outcome.reason
    assert stored_files() == []


def test_index_fields_and_counts(dicom_bytes) -> None:
    study_uid, ct, mr = "1.2.826.0.1.1", "1.2.826.0.1.1.1", "1.2.826.0.1.1.2"
    for i in range(3):
        instance_ingest(
            file=dicom_bytes(study_uid=study_uid, series_uid=ct, InstanceNumber=i), source=SOURCE
        )
    instance_ingest(
        file=dicom_bytes(
            study_uid=study_uid, series_uid=mr, modality="MR", patient_name="MÜLLER^Jörg"
        ),
        source=SOURCE,
    )
    study = Study.objects.get()
    assert (study.num_series, study.num_instances, study.modalities) == (2, 4, "CT\\MR")
    assert study.size == sum(i.size for i in Instance.objects.all())
    assert Series.objects.get(series_uid=ct).num_instances == 3
    patient = study.patient
    assert patient.name == "DOE^JOHN" and patient.name_norm == "doe^john"
    assert str(patient.latest_study_date) == "2024-01-15"
    assert study.referring_physician_norm == "house^gregory"


def test_patients_without_id_are_not_merged(dicom_bytes) -> None:
    instance_ingest(file=dicom_bytes(patient_id="", patient_name="A^B"), source=SOURCE)
    instance_ingest(file=dicom_bytes(patient_id="", patient_name="C^D"), source=SOURCE)
    assert Patient.objects.count() == 2


def test_metadata_json_has_bulk_uri_for_pixel_data(dicom_bytes) -> None:
    import json

    instance_ingest(file=dicom_bytes(rows=64, columns=64), source=SOURCE)
    meta = json.loads(Instance.objects.get().metadata)
    assert meta["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
    assert meta["00100010"]["Value"] == [{"Alphabetic": "DOE^JOHN"}]
    assert list(meta) == sorted(meta)


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_dcmtk.dcm"],
)
def test_frame_offsets_match_pydicom(name: str) -> None:
    path = get_testdata_file(name)
    instance_ingest(file=Path(path), source=SOURCE)
    instance = Instance.objects.get()
    ds = pydicom.dcmread(path)
    stored = storage.absolute(instance.path).read_bytes()
    got = [b"".join(stored[o : o + n] for o, n in frame) for frame in instance.frames]
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = list(
            generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1)))
        )
        assert [e.rstrip(b"\x00") for e in expected] == [g.rstrip(b"\x00") for g in got]
    else:
        size = len(ds.PixelData) // int(ds.get("NumberOfFrames", 1))
        assert got == [ds.PixelData[i * size : (i + 1) * size] for i in range(len(got))]


def test_frame_count_is_indexed(dicom_bytes) -> None:
    instance_ingest(file=dicom_bytes(frames=3), source=SOURCE)
    ds = make_dataset()
    del ds.PixelData
    instance_ingest(file=to_bytes(ds), source=SOURCE)
    assert sorted(Instance.objects.values_list("num_frames", flat=True)) == [0, 3]


@pytest.mark.django_db(transaction=True)
def test_keys_remembered_for_a_study_deleted_since_are_not_used(dicom_bytes) -> None:
    # Outside a transaction ingest commits in groups and remembers study and series keys.
    study_uid, series_uid = "1.2.826.0.1.3680043.2.1", "1.2.826.0.1.3680043.2.1.1"

    def store(sop_uid: str) -> None:
        data = dicom_bytes(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
        assert instance_ingest(file=data, source=SOURCE).status == Status.STORED

    store("1.2.826.0.1.3680043.2.1.1.1")
    store("1.2.826.0.1.3680043.2.1.1.2")
    Study.objects.filter(study_uid=study_uid).delete()
    store("1.2.826.0.1.3680043.2.1.1.3")
    store("1.2.826.0.1.3680043.2.1.1.4")

    study = Study.objects.get(study_uid=study_uid)
    series = Series.objects.get(series_uid=series_uid)
    assert (study.num_instances, study.num_series, series.num_instances) == (2, 1, 2)
    assert series.study_id == study.pk
    assert sorted(Instance.objects.values_list("sop_uid", flat=True)) == [
        "1.2.826.0.1.3680043.2.1.1.3",
        "1.2.826.0.1.3680043.2.1.1.4",
    ]


@pytest.mark.django_db(transaction=True)
def test_an_instance_of_a_known_series_is_indexed_in_one_round_trip(dicom_bytes, tmp_path) -> None:
    study_uid, series_uid = "1.2.826.0.1.3680043.2.2", "1.2.826.0.1.3680043.2.2.1"
    for number in (1, 2):
        data = dicom_bytes(
            study_uid=study_uid, series_uid=series_uid, sop_uid=f"{series_uid}.{number}"
        )
        connection.ensure_connection()
        trace = tmp_path / f"trace-{number}"
        with CaptureQueriesContext(connection) as queries, trace.open("w") as fp:
            if connection.vendor == "postgresql":
                # libpq's own record of the messages sent to the server.
                connection.connection.pgconn.trace(fp.fileno())
            try:
                assert instance_ingest(file=data, source=SOURCE, duplicates_likely=False).ok
            finally:
                if connection.vendor == "postgresql":
                    connection.connection.pgconn.untrace()
    # The series is remembered from the first instance: no lookup, and no query through
    # Django's cursor for the second.
    assert len(queries) == 0
    if connection.vendor == "postgresql":
        # Lines of timestamp, direction (F: to the server), length, message type, content.
        sent = [line.split("\t") for line in trace.read_text().splitlines()]
        sent = [fields for fields in sent if fields[1] == "F"]
        # One message with every statement, the commit included.
        assert len(sent) == 1 and sent[0][3] == "Query" and sent[0][4].endswith(';COMMIT"')
    assert Series.objects.get().num_instances == 2 and Study.objects.get().size > 0
