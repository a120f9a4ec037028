"""``manage.py dicom_receiver`` as a subprocess (two worker processes), pynetdicom as the SCU."""

import os
import re
import signal
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.sop_class import Verification

from studies import storage
from studies.models import Instance
from tests.conftest import make_dataset
from tests.dimse.receiver import (
    CT_IMAGE_STORAGE,
    associate,
    receiver_process,
    sending_files_as_they_are,
    use_storage_of,
)
from tests.dimse.test_store import dataset_bytes, sample_file

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS = 0x0000
# Files of distinct instances (several of pydicom's files are one instance in other encodings).
STUDY_FILES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG-lossy.dcm",
    "JPEG-LS near-lossless",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
]


def test_studies_in_several_transfer_syntaxes_are_stored_as_sent(
    receiver_subprocess, tmp_path
) -> None:
    paths = [sample_file(name, tmp_path) for name in STUDY_FILES]
    sent = {}
    contexts = []
    for path in paths:
        transfer_syntax, data = dataset_bytes(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sent[str(ds.SOPInstanceUID)] = (transfer_syntax, data)
        contexts.append((ds.SOPClassUID, [transfer_syntax]))
    # One association per file, as the same SOP class comes in several transfer syntaxes.
    for path, context in zip(paths, contexts, strict=True):
        assoc = associate(receiver_subprocess.port, context)
        try:
            with sending_files_as_they_are():
                assert assoc.send_c_store(path).Status == SUCCESS, path.name
        finally:
            assoc.release()
    assert Instance.objects.count() == len(paths)
    for instance in Instance.objects.all():
        transfer_syntax, data = sent[instance.sop_uid]
        assert instance.transfer_syntax_uid == transfer_syntax
        stored = storage.absolute(instance.path).read_bytes()
        assert stored.endswith(data) and len(stored) == instance.size


def test_sigterm_lets_the_association_in_flight_finish(tmp_path) -> None:
    with receiver_process(tmp_path, "--processes", "2") as running:
        use_storage_of(running)
        assoc = associate(running.port, (CT_IMAGE_STORAGE, [ImplicitVRLittleEndian]))
        first, second = make_dataset(), make_dataset()
        assert assoc.send_c_store(first).Status == SUCCESS
        running.process.send_signal(signal.SIGTERM)
        # Stopping: the association already open is still served to its end.
        assert assoc.send_c_store(second).Status == SUCCESS
        assoc.release()
        out, _ = running.process.communicate(timeout=60)
        assert running.process.returncode == 0, out
    assert re.search(
        r"association from TESTSCU at 127\.0\.0\.1:\d+ released: 2 stored, 0 duplicates, 0 failed",
        out,
    ), out
    assert "Traceback" not in out
    assert Instance.objects.count() == 2
    # Stopped: nobody answers any more.
    with pytest.raises(AssertionError, match="refused"):
        associate(running.port, (Verification, [ImplicitVRLittleEndian]))


def worker_pids(parent: int) -> list[int]:
    # Children are listed per thread of the parent: whichever thread started them.
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return sorted(pids)


def wait_for_workers(parent: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(pids := worker_pids(parent)) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def test_a_worker_that_dies_is_replaced(tmp_path) -> None:
    with receiver_process(tmp_path, "--processes", "2") as running:
        first = wait_for_workers(running.process.pid, 2)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = worker_pids(running.process.pid)
            if len(now) == 2 and first[0] not in now:
                break
            time.sleep(0.05)
        assert len(now) == 2 and first[0] not in now and first[1] in now
        # The receiver answers, from whichever worker takes each connection.
        for _ in range(6):
            assoc = associate(running.port, (Verification, [ImplicitVRLittleEndian]))
            assert assoc.send_c_echo().Status == SUCCESS
            assoc.release()
        out = running.stop()
    assert f"receiver process {first[0]} ended unexpectedly (signal 9): starting another" in out
