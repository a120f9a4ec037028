"""The modality worklist served to dcmtk's ``findscu -W``, as a scanner's worklist client asks."""

import os
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.tools import require_tool
from tests.worklist.worklist_data import load_worklist, worklist_scp

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]

STEP = "ScheduledProcedureStepSequence[0]"
# What a modality typically asks for: every key it shows or copies into its images.
RETURN_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "ReferringPhysicianName",
    f"{STEP}.ScheduledStationAETitle",
    f"{STEP}.ScheduledProcedureStepStartDate",
    f"{STEP}.ScheduledProcedureStepStartTime",
    f"{STEP}.Modality",
    f"{STEP}.ScheduledProcedureStepDescription",
    f"{STEP}.ScheduledProcedureStepID",
]


@pytest.fixture(scope="module")
def scp_port():
    with worklist_scp() as port:
        yield port


def findscu(port: int, out: Path, **keys: str) -> list[pydicom.Dataset]:
    """Run ``findscu -W`` with the return keys plus ``keys`` (paths as findscu writes them)."""
    args = [require_tool("findscu"), "-W", "-X", "-od", str(out), "-aet", "CT01", "-aec", "PACSWEB"]
    for key in RETURN_KEYS:
        if key not in keys:
            args += ["-k", key]
    for key, value in keys.items():
        args += ["-k", f"{key}={value}"]
    args += ["127.0.0.1", str(port)]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_gets_the_station_worklist_for_a_date_range(scp_port, tmp_path):
    load_worklist()
    items = findscu(
        scp_port,
        tmp_path,
        **{
            f"{STEP}.ScheduledStationAETitle": "CT01",
            f"{STEP}.ScheduledProcedureStepStartDate": "20240320-20240321",
        },
    )
    assert [i.AccessionNumber for i in items] == ["ACC1001", "ACC1002"]
    first = items[0]
    assert first.SpecificCharacterSet == "ISO_IR 192"
    assert str(first.PatientName) == "Müller^Hans^Peter^Dr."
    assert (first.PatientID, first.PatientBirthDate, first.PatientSex) == (
        "PAT1001",
        "19650412",
        "M",
    )
    assert first.StudyInstanceUID == "1.2.840.113619.2.55.3.1001"
    assert first.RequestedProcedureDescription == "CT Head and Neck"
    step = first.ScheduledProcedureStepSequence[0]
    assert (step.ScheduledStationAETitle, step.Modality) == ("CT01", "CT")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20240320",
        "093000",
    )
    assert step.ScheduledProcedureStepDescription == "CT head & neck plain"


def test_findscu_patient_name_wildcard_and_modality(scp_port, tmp_path):
    load_worklist()
    (tmp_path / "a").mkdir()
    items = findscu(scp_port, tmp_path / "a", PatientName="yam*")
    assert [str(i.PatientName) for i in items] == ["YAMADA^TARO=山田^太郎=やまだ^たろう"]
    (tmp_path / "b").mkdir()
    items = findscu(scp_port, tmp_path / "b", **{f"{STEP}.Modality": "CR"})
    assert [(str(i.PatientName), i.AccessionNumber) for i in items] == [
        ("O'NEIL^ZOË^ANN", "RAD55001")
    ]


def test_findscu_never_sees_cancelled_orders(scp_port, tmp_path):
    orders = load_worklist()
    assert orders["ACC1003"].state == "cancelled"
    items = findscu(scp_port, tmp_path, **{f"{STEP}.ScheduledStationAETitle": "CT02"})
    assert items == []
    (tmp_path / "all").mkdir()
    everything = findscu(scp_port, tmp_path / "all")
    assert [i.AccessionNumber for i in everything] == ["RAD55001", "ACC1001", "ACC1002", "ACC7001"]
