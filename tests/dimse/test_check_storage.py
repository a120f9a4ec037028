"""``manage.py check_storage``: a crash between file and index, lost files, left-over temp files."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from studies import storage
from studies.models import Instance, Series, Study
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.dimse.receiver import BASE_DIR, database_url

pytestmark = pytest.mark.django_db(transaction=True)

STUDY, CT, MR = "1.2.826.0.1.3680043.2.4", "1.2.826.0.1.3680043.2.4.1", "1.2.826.0.1.3680043.2.4.2"
# Ingest in another process that dies (as on a power cut or kill -9) once its file is in place
# and before its index row is written.
CRASH_AFTER_FILE = """
import os
from pathlib import Path
from studies import services
services._index = lambda *args: os._exit(9)
services.instance_ingest(file=Path(os.environ["CRASHING_FILE"]), source="import")
"""


def ingest(**attributes: object) -> Instance:
    outcome = instance_ingest(file=to_bytes(make_dataset(**attributes)), source="import")
    assert outcome.status == Status.STORED
    return Instance.objects.get(sop_uid=outcome.sop_uid)


def crash_between_file_and_index(data_dir: Path, dicom_file: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PACSWEB_TEST_DATA_DIR": str(data_dir),
        "PACSWEB_DATA_DIR": str(data_dir),
        "CRASHING_FILE": str(dicom_file),
    }
    crashed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CRASH_AFTER_FILE],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert crashed.returncode == 9, crashed.stderr


def age(relative: str, seconds: float = 120) -> None:
    then = time.time() - seconds
    os.utime(storage.absolute(relative), (then, then))


def check_storage(*args: str) -> tuple[str, str | None]:
    """The command's output, and its error message if it ended with one."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check_storage", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), str(exc)
    return out.getvalue(), None


def test_crash_between_file_and_index_is_reported_then_healed(settings, tmp_path) -> None:
    settings.STORAGE_DIR = tmp_path / "storage"
    kept = ingest(study_uid=STUDY, series_uid=CT, InstanceNumber=1)
    lost = ingest(study_uid=STUDY, series_uid=MR, modality="MR", InstanceNumber=2)
    crashed_file = tmp_path / "crashed.dcm"
    crashed_file.write_bytes(to_bytes(make_dataset(study_uid=STUDY, series_uid=CT)))
    crash_between_file_and_index(tmp_path, crashed_file)
    (orphan,) = set(storage.iter_files()) - {kept.path, lost.path}
    age(orphan)
    storage.absolute(lost.path).unlink()
    stale = f"{kept.path.rsplit('/', 1)[0]}/{storage.TEMP_PREFIX}left-by-a-crash.dcm"
    fresh = f"{kept.path.rsplit('/', 1)[0]}/{storage.TEMP_PREFIX}being-written.dcm"
    storage.absolute(stale).write_bytes(b"partial")
    storage.absolute(fresh).write_bytes(b"partial")
    age(stale)

    out, error = check_storage()
    assert error == "3 problem(s) remain in the archive's storage."
    assert f"files without an index row: 1\n    {orphan}\n" in out
    assert f"index rows without a file: 1\n    {lost.path}\n" in out
    assert f"temporary files left by interrupted writes: 1\n    {stale}\n" in out
    assert "Run again with --fix" in out

    out, error = check_storage("--fix")
    assert error is None, out
    assert "1 temporary files deleted, 1 index rows without a file removed, 1 files" in out
    indexed = set(Instance.objects.values_list("path", flat=True))
    assert len(indexed) == 2 and kept.path in indexed
    # The crashed instance is in the index (under a new file) and its orphan is gone; the
    # temporary file that may still be being written is left alone.
    assert set(storage.iter_files()) == indexed | {fresh}
    study = Study.objects.get()
    assert (study.num_instances, study.num_series, study.modalities) == (2, 1, "CT")
    assert study.size == sum(Instance.objects.values_list("size", flat=True))
    assert Series.objects.get().num_instances == 2
    assert check_storage()[1] is None


def test_verify_finds_a_file_whose_content_changed(settings, tmp_path) -> None:
    settings.STORAGE_DIR = tmp_path / "storage"
    instance = ingest()
    path = storage.absolute(instance.path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    assert check_storage()[1] is None
    out, error = check_storage("--verify", "--fix")
    assert error == "1 problem(s) remain in the archive's storage."
    assert f"files that differ from their index row: 1\n    {instance.path}: CRC-32" in out
    # Nothing that cannot be told right from wrong is touched.
    assert path.read_bytes() == bytes(data) and Instance.objects.count() == 1
