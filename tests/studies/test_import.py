"""``manage.py import_dicom`` and ``studies.file_sources``: folders, zips, CD copies, zip bombs."""

import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.core.management import CommandError, call_command
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from studies import file_sources, storage
from studies.file_sources import FileSources, FileType, Kind, sniff
from studies.models import Instance, Patient, Series, Study
from tests.conftest import make_dataset, to_bytes
from tests.subprocesses import database_url

BASE_DIR = Path(__file__).resolve().parents[2]
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def dcm(**kwargs: object) -> bytes:
    return to_bytes(make_dataset(**kwargs))


def write_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def lie_about_size(data: bytes, member: str, declared: int) -> bytes:
    """Rewrite a member's uncompressed size in its local and central headers (PS: APPNOTE 4.3)."""
    patched = bytearray(data)
    name = member.encode()
    for signature, name_len_at, name_at, size_at in (
        (b"PK\x03\x04", 26, 30, 22),
        (b"PK\x01\x02", 28, 46, 24),
    ):
        position = patched.find(signature)
        while position >= 0:
            name_len = struct.unpack_from("<H", patched, position + name_len_at)[0]
            if patched[position + name_at : position + name_at + name_len] == name:
                struct.pack_into("<I", patched, position + size_at, declared)
            position = patched.find(signature, position + 4)
    return bytes(patched)


def run_import(*paths: Path) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_dicom", *[str(p) for p in paths], stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def names_in_archive() -> set[str]:
    return set(Patient.objects.values_list("name", flat=True))


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    """A folder as operators get them: loose files, subfolders, zips, junk and three zip bombs.

    Exactly 3 + 1 + 4 + 2 = 10 valid instances lie outside the bombs. Every bomb also holds one
    valid instance, under a patient name that must never reach the archive.
    """
    root = tmp_path / "delivery"
    (root / "nested" / "deeper").mkdir(parents=True)
    study = generate_uid()
    for number in range(3):
        (root / f"img{number}.dcm").write_bytes(dcm(study_uid=study, InstanceNumber=number))
    (root / "nested" / "deeper" / "IM000001").write_bytes(
        dcm(patient_name="MÜLLER^JÖRG", patient_id="M1")
    )
    write_zip(
        root / "study.zip",
        {f"DICOM/IM{n}": dcm(study_uid=study) for n in range(4)} | {"README.TXT": b"CD"},
    )
    write_zip(root / "nested" / "more.ZIP", {"a.dcm": dcm(), "b.dcm": dcm()})
    (root / "notes.txt").write_text("not an image")
    (root / "empty.dcm").write_bytes(b"")
    (root / "nested" / "random.bin").write_bytes(os.urandom(4096))
    bait = dcm(patient_name="BOMB^PARTIAL", patient_id="BOMB")
    # Highly compressible members: far more than ZIP_MAX_RATIO (100) times the zip's size.
    write_zip(
        root / "ratio-bomb.zip",
        {"first.dcm": bait} | {f"zeros{n}.dcm": b"\0" * 5_000_000 for n in range(3)},
    )
    # A member whose headers claim 1,000 bytes but that inflates to 8 MB.
    liar = zip_bytes({"first.dcm": bait, "liar.dcm": b"\0" * 8_000_000})
    (root / "nested" / "liar.zip").write_bytes(lie_about_size(liar, "liar.dcm", 1000))
    # Zips in a zip, each within the ratio on its own, over it together (as 42.zip does).
    inner = zip_bytes({f"z{n}": b"\0" * 2_000_000 for n in range(5)})
    write_zip(
        root / "nested-bomb.zip",
        {"first.dcm": bait} | {f"inner{n}.zip": inner for n in range(4)},
        zipfile.ZIP_STORED,
    )
    return root


@pytest.mark.django_db
def test_folder_import_stores_exact_counts_and_refuses_bombs_whole(delivery: Path) -> None:
    out, err = run_import(delivery)

    assert Instance.objects.count() == 10
    assert Instance.objects.filter(source=Instance.Source.IMPORT).count() == 10
    assert "BOMB^PARTIAL" not in names_in_archive()
    assert "MÜLLER^JÖRG" in names_in_archive()
    assert sorted(storage.iter_files()) == sorted(Instance.objects.values_list("path", flat=True))
    assert "stored:              10" in out
    assert "refused zips:         3" in out
    # notes.txt, empty.dcm, nested/random.bin and study.zip's README.TXT.
    assert "skipped:              4" in out
    for bomb in ("ratio-bomb.zip", "liar.zip", "nested-bomb.zip"):
        line = next(
            line for line in err.splitlines() if line.startswith(str(delivery)) and bomb in line
        )
        assert "zip refused" in line and "nothing in it was imported" in line
    assert "times its own size, as zip bombs do" in err
    assert "liar.dcm holds more than its header says (1,000 bytes)" in err
    assert f"skipped: {delivery / 'notes.txt'}: not a DICOM file" in err
    assert f"skipped: {delivery / 'empty.dcm'}: an empty file" in err
    imported = Instance.objects.get(series__study__patient__name="MÜLLER^JÖRG")
    assert imported.source_detail == str(delivery / "nested" / "deeper" / "IM000001")
    zipped = Instance.objects.filter(
        source_detail__startswith=str(delivery / "study.zip") + "/DICOM/"
    )
    assert zipped.count() == 4
    study = Study.objects.get(num_instances=7)
    assert study.num_series == 7 and Series.objects.filter(study=study).count() == 7


@pytest.mark.django_db
def test_importing_again_reports_duplicates_and_stores_nothing_new(delivery: Path) -> None:
    run_import(delivery)
    paths = sorted(storage.iter_files())
    out, _err = run_import(delivery)
    assert "stored:               0" in out
    assert "duplicates:          10" in out
    assert sorted(storage.iter_files()) == paths


@pytest.mark.django_db
def test_zip_over_the_total_size_bound_is_refused_before_unpacking(tmp_path, settings) -> None:
    settings.ZIP_MAX_TOTAL_BYTES = 2_000_000
    big = write_zip(
        tmp_path / "big.zip",
        {"ok.dcm": dcm(patient_name="BIG^ZIP"), "noise": os.urandom(2_500_000)},
    )
    with pytest.raises(CommandError) as raised:
        run_import(big)
    assert raised.value.returncode == 1
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_total_size_bound_counts_real_bytes_not_headers(tmp_path, settings, capsys) -> None:
    settings.ZIP_MAX_TOTAL_BYTES = 3_000_000
    data = zip_bytes({"ok.dcm": dcm(), "noise": os.urandom(4_000_000)})
    (tmp_path / "lies.zip").write_bytes(lie_about_size(data, "noise", 100))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_dicom", str(tmp_path), stdout=io.StringIO(), stderr=err)
    assert "noise holds more than its header says (100 bytes)" in err.getvalue()
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_member_count_bound(tmp_path, settings) -> None:
    settings.ZIP_MAX_MEMBERS = 5
    many = write_zip(tmp_path / "many.zip", {f"IM{n}": dcm() for n in range(6)})
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_dicom", str(many), stdout=io.StringIO(), stderr=err)
    assert "zip refused: it holds more than 5 files" in err.getvalue()
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_nested_zips_are_imported_and_a_damaged_member_rejects_only_itself(tmp_path) -> None:
    inner = zip_bytes({"x/IM1": dcm(), "x/IM2": dcm(), "DICOMDIR": b"index"})
    bz2 = zip_bytes({"packed.dcm": dcm()}, zipfile.ZIP_BZIP2)
    outer = write_zip(
        tmp_path / "outer.zip",
        {"inner.zip": inner, "bad.zip": b"PK\x03\x04 not really", "IM3": dcm(), "bz.zip": bz2},
    )
    out, err = run_import(outer)
    assert Instance.objects.count() == 3
    assert f"skipped: {outer}/inner.zip/DICOMDIR: the CD's index (DICOMDIR)" in err
    assert f"rejected: {outer}/bad.zip: not a readable zip" in err
    assert (
        f"rejected: {outer}/bz.zip/packed.dcm: damaged in the zip (compressed with a method" in err
    )
    assert "stored:               3" in out


@pytest.mark.django_db
def test_too_deeply_nested_zips_are_refused(tmp_path) -> None:
    data = zip_bytes({"IM": dcm()})
    for level in range(file_sources.MAX_NESTING + 1):
        data = zip_bytes({f"level{level}.zip": data})
    (tmp_path / "deep.zip").write_bytes(data)
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_dicom", str(tmp_path / "deep.zip"), stdout=io.StringIO(), stderr=err)
    assert f"zips nested more than {file_sources.MAX_NESTING} deep" in err.getvalue()


@pytest.mark.django_db
def test_large_zip_members_are_spooled_to_disk(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(file_sources, "SPOOL_IN_MEMORY", 1024)
    big = make_dataset(rows=256, columns=256)
    archive = write_zip(tmp_path / "big.zip", {"big.dcm": to_bytes(big)})
    run_import(archive)
    instance = Instance.objects.get()
    assert instance.sop_uid == big.SOPInstanceUID
    assert pydicom.dcmread(storage.absolute(instance.path)).PixelData == big.PixelData


def make_cd(folder: Path, count: int) -> list[str]:
    """A CD copy as modalities burn them: DICOMDIR plus files under generated 8-character names."""
    fs = FileSet()
    uids = []
    study = generate_uid()
    for number in range(count):
        ds = make_dataset(study_uid=study, patient_name="CD^PATIENT", InstanceNumber=number + 1)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fs.add(ds)
        uids.append(ds.SOPInstanceUID)
    fs.write(folder)
    return uids


@pytest.mark.django_db
def test_cd_copy_with_dicomdir(tmp_path: Path) -> None:
    cd = tmp_path / "cdrom"
    uids = make_cd(cd, 4)
    assert (cd / "DICOMDIR").is_file()
    out, err = run_import(cd)
    assert sorted(Instance.objects.values_list("sop_uid", flat=True)) == sorted(uids)
    assert f"skipped: {cd / 'DICOMDIR'}: the CD's index (DICOMDIR), not an image" in err
    assert "skipped:              1" in out


@pytest.mark.django_db
def test_pointing_at_the_dicomdir_reads_the_whole_cd(tmp_path: Path) -> None:
    cd = tmp_path / "cdrom"
    uids = make_cd(cd, 3)
    run_import(cd / "DICOMDIR")
    assert sorted(Instance.objects.values_list("sop_uid", flat=True)) == sorted(uids)


@pytest.mark.django_db
def test_hl7_files_are_skipped_with_a_pointer_to_import_hl7(tmp_path: Path) -> None:
    (tmp_path / "orders.hl7").write_bytes(
        b"\xef\xbb\xbf\r\nMSH|^~\\&|RIS|X|||20240101||ORM^O01|1|P|2.3\r"
    )
    (tmp_path / "IM").write_bytes(dcm())
    _out, err = run_import(tmp_path)
    assert "orders.hl7: HL7 messages, not DICOM (import them with import_hl7)" in err
    assert Instance.objects.count() == 1


@pytest.mark.django_db
def test_only_junk_means_nothing_read_exit_status_1(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(CommandError) as raised:
        run_import(tmp_path, tmp_path / "missing")
    assert raised.value.returncode == 1
    assert "nothing could be read" in str(raised.value)


@pytest.mark.django_db
def test_rejected_dicom_is_reported_with_its_reason_and_the_rest_goes_on(tmp_path: Path) -> None:
    broken = make_dataset()
    broken.file_meta.MediaStorageSOPClassUID = broken.SOPClassUID
    broken.file_meta.MediaStorageSOPInstanceUID = broken.SOPInstanceUID
    del broken.SOPInstanceUID
    (tmp_path / "broken.dcm").write_bytes(to_bytes(broken))
    (tmp_path / "truncated.dcm").write_bytes(dcm(rows=64, columns=64)[:3000])
    (tmp_path / "good.dcm").write_bytes(dcm())
    out, err = run_import(tmp_path)
    assert Instance.objects.count() == 1
    assert f"rejected: {tmp_path / 'broken.dcm'}: SOPInstanceUID is missing" in err
    assert "rejected:             2" in out
    assert "SOPInstanceUID is missing  (e.g. " in out


@pytest.mark.django_db
def test_full_disk_stops_the_import_with_exit_status_2(tmp_path: Path, monkeypatch) -> None:
    # A full disk is simulated at the storage module's write, the one place files are written.
    def full(relative: str, chunks) -> tuple[int, int]:
        raise storage.StorageFull("No space left on device")

    monkeypatch.setattr(storage, "write", full)
    for number in range(3):
        (tmp_path / f"{number}.dcm").write_bytes(dcm())
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_dicom", str(tmp_path), stdout=io.StringIO(), stderr=err)
    assert raised.value.returncode == 2
    assert "import stopped: the archive's disk is full" in err.getvalue()
    assert err.getvalue().count("NOT STORED") == 1
    assert not Instance.objects.exists()


@pytest.mark.django_db
def test_progress_without_a_terminal_writes_plain_lines(tmp_path: Path) -> None:
    for number in range(3):
        (tmp_path / f"{number}.dcm").write_bytes(dcm())
    _out, err = run_import(tmp_path)
    assert "\r" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("import: 100%") and "3 files" in last


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_pydicom_test_file_that_pydicom_reads_is_sniffed_as_dicom() -> None:
    for path in sorted(TEST_FILES.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - files pydicom itself refuses are not our question.
            continue
        if "SOPInstanceUID" in ds:
            assert sniff(path.read_bytes()[: file_sources.HEAD_BYTES]) == FileType.DICOM, path


def test_sniff_tells_zip_hl7_and_other_apart() -> None:
    assert sniff(zip_bytes({"a": b"b"})) == FileType.ZIP
    assert sniff(b"  \r\nMSH|^~\\&|") == FileType.HL7
    assert sniff(b"%PDF-1.7\n") == FileType.OTHER
    assert sniff(b"") == FileType.OTHER


def test_member_names_only_label_entries(tmp_path: Path, settings) -> None:
    """A hostile member name never becomes a path: nothing appears outside the temp folder."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    archive = write_zip(tmp_path / "evil.zip", {"../../escaped.txt": b"x", "/abs\nname": b"y"})
    entries = list(FileSources([archive]))
    assert [e.kind for e in entries] == [Kind.NOT_DICOM, Kind.NOT_DICOM]
    assert entries[1].label == f"{archive}//abs?name"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.zip", "spool"]


@pytest.mark.django_db(transaction=True)
def test_exit_status_of_the_real_process(tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    (tmp_path / "IM").write_bytes(dcm())
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    command = [sys.executable, "manage.py", "import_dicom"]
    junk = subprocess.run(
        [*command, str(tmp_path / "junk.txt")],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert junk.returncode == 1, junk.stderr
    assert "nothing could be read" in junk.stderr
    good = subprocess.run(
        [*command, str(tmp_path)], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert good.returncode == 0, good.stderr
    assert "stored:               1" in good.stdout
    assert Instance.objects.count() == 1


@pytest.mark.django_db
def test_ctrl_c_keeps_what_was_stored_and_exits_130(tmp_path: Path, monkeypatch) -> None:
    from studies.management.commands import import_dicom

    real_ingest = import_dicom.instance_ingest
    calls = []

    # Ctrl-C is simulated as arriving while the third file is being read.
    def ingest_then_interrupt(**kwargs):
        calls.append(kwargs["source_detail"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_ingest(**kwargs)

    monkeypatch.setattr(import_dicom, "instance_ingest", ingest_then_interrupt)
    for number in range(5):
        (tmp_path / f"{number}.dcm").write_bytes(dcm())
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_dicom", str(tmp_path), stdout=out, stderr=err)
    assert raised.value.returncode == 130
    assert "import interrupted" in err.getvalue()
    assert "stored:               2" in out.getvalue()
    assert Instance.objects.count() == 2
