"""``manage.py dicom_receiver`` (a subprocess, two worker processes) under dcmtk's own tools."""

import os
import re
import subprocess
import time

import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from studies import storage
from studies.models import Instance, Patient, Series, Study
from tests.conftest import make_dataset
from tests.dimse.receiver import Receiver
from tests.dimse.test_receiver_process import STUDY_FILES
from tests.dimse.test_store import dataset_bytes, sample_file
from tests.tools import require_tool

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]


def dcmtk(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # Debian's dcmtk leaves Nagle's algorithm on unless told: every C-STORE would then wait
    # for a delayed ACK.
    env = {**os.environ, "TCP_NODELAY": "1"}
    done = subprocess.run(
        [require_tool(tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_echoscu(receiver_subprocess: Receiver) -> None:
    done = dcmtk("echoscu", "-v", "-aec", "PACSWEB", "127.0.0.1", str(receiver_subprocess.port))
    assert "Received Echo Response (Success)" in done.stdout + done.stderr


# storescu proposes uncompressed syntaxes only unless told which one to propose.
PROPOSE = {
    ExplicitVRLittleEndian: [],
    ExplicitVRBigEndian: ["--propose-big"],
    DeflatedExplicitVRLittleEndian: ["--propose-deflated"],
    JPEGBaseline8Bit: ["--propose-jpeg8"],
    JPEGExtended12Bit: ["--propose-jpeg12"],
    JPEGLSNearLossless: ["--propose-jls-lossy"],
    JPEG2000: ["--propose-j2k-lossy"],
    RLELossless: ["--propose-rle"],
}


def same_elements(stored: pydicom.Dataset, original: pydicom.Dataset) -> bool:
    """Equal but for group lengths and trailing padding, which a sender may drop or add."""

    def elements(ds: pydicom.Dataset) -> dict:
        return {e.tag: e for e in ds if e.tag.element != 0 and e.tag != 0xFFFCFFFC}

    return elements(stored) == elements(original)


def test_storescu_sends_a_study_in_several_transfer_syntaxes(
    receiver_subprocess: Receiver, tmp_path
) -> None:
    paths = [sample_file(name, tmp_path) for name in STUDY_FILES]
    for path in paths:
        transfer_syntax, _ = dataset_bytes(path)
        dcmtk(
            "storescu",
            *PROPOSE[transfer_syntax],
            "--required",
            "-aec",
            "PACSWEB",
            "-aet",
            "MODALITY",
            "127.0.0.1",
            str(receiver_subprocess.port),
            str(path),
        )
    assert Instance.objects.count() == len(paths)
    for path in paths:
        transfer_syntax, _ = dataset_bytes(path)
        original = pydicom.dcmread(path)
        instance = Instance.objects.get(sop_uid=original.SOPInstanceUID)
        assert (instance.transfer_syntax_uid, instance.source_detail) == (
            transfer_syntax,
            "MODALITY",
        )
        # dcmtk encodes the dataset again as it sends it (group lengths, padding), so the bytes
        # on the wire are not the file's: every element must have come through.
        assert same_elements(pydicom.dcmread(storage.absolute(instance.path)), original), path.name


def test_storescu_abort_keeps_every_acknowledged_instance(
    receiver_subprocess: Receiver, tmp_path
) -> None:
    paths = []
    for n in range(5):
        paths.append(tmp_path / f"{n}.dcm")
        make_dataset(InstanceNumber=n, rows=64, columns=64).save_as(
            paths[-1], enforce_file_format=True
        )
    dcmtk(
        "storescu",
        "--abort",
        "-aec",
        "PACSWEB",
        "127.0.0.1",
        str(receiver_subprocess.port),
        *map(str, paths),
    )
    assert Instance.objects.count() == 5
    indexed = set(Instance.objects.values_list("path", flat=True))
    assert {p for p in storage.iter_files() if p in indexed or storage.TEMP_PREFIX in p} == indexed


def test_twenty_senders_of_the_same_study_make_one_study(
    receiver_subprocess: Receiver, tmp_path
) -> None:
    """20 storescu at once, each sending the same 50-instance study 5 times."""
    study, series = "1.2.826.0.1.3680043.2.5", "1.2.826.0.1.3680043.2.5.1"
    paths = []
    for n in range(50):
        paths.append(tmp_path / f"{n}.dcm")
        make_dataset(
            study_uid=study, series_uid=series, sop_uid=f"{series}.{n + 1}", InstanceNumber=n + 1
        ).save_as(paths[-1], enforce_file_format=True)
    env = {**os.environ, "TCP_NODELAY": "1"}
    storescu = require_tool("storescu")
    senders = [
        subprocess.Popen(
            [storescu, "--repeat", "5", "-aet", f"SENDER{n}", "-aec", "PACSWEB"]
            + ["127.0.0.1", str(receiver_subprocess.port), *map(str, paths)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(20)
    ]
    started = time.monotonic()
    outputs = [sender.communicate(timeout=120)[0] for sender in senders]
    elapsed = time.monotonic() - started
    assert [s.returncode for s in senders] == [0] * 20, outputs
    assert not any(re.search(r"^[EF]:", out, re.MULTILINE) for out in outputs), outputs
    assert (Patient.objects.count(), Study.objects.count(), Series.objects.count()) == (1, 1, 1)
    assert Instance.objects.count() == 50
    row = Study.objects.get()
    assert (row.num_series, row.num_instances) == (1, 50)
    assert row.size == sum(Instance.objects.values_list("size", flat=True))
    assert Series.objects.get().num_instances == 50
    indexed = set(Instance.objects.values_list("path", flat=True))
    assert {p for p in storage.iter_files() if p in indexed or storage.TEMP_PREFIX in p} == indexed
    # 5,000 C-STOREs; recorded so that a slow-down shows in the test's output.
    print(f"5000 C-STOREs from 20 senders in {elapsed:.1f} s")
