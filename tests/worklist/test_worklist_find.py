"""The MWL C-FIND SCP (dimse.worklist_find) queried by a pynetdicom SCU over a real association."""

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from dimse import worklist_find
from tests.conftest import CT_IMAGE_STORAGE, make_dataset
from tests.worklist.worklist_data import load_worklist, no_delay, worklist_scp
from worklist.models import HL7Message, Order
from worklist.services import order_cancel, orders_mark_arrived

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def scp_port():
    with worklist_scp() as port:
        yield port


@pytest.fixture
def orders():
    return load_worklist()


def query(**keys) -> Dataset:
    """A modality's typical MWL identifier: patient and order keys, and an SPS item.

    Keyword arguments set matching keys; SPS keys go into the sequence item.
    """
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    ds.ReferringPhysicianName = ""
    step = Dataset()
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = ""
    step.ScheduledProcedureStepStartTime = ""
    step.Modality = ""
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProcedureStepID = ""
    for keyword, value in keys.items():
        target = step if keyword in worklist_find.STEP_VALUES else ds
        setattr(target, keyword, value)
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def find(port: int, identifier: Dataset) -> tuple[list[Dataset], Dataset]:
    """Send one C-FIND; return the pending identifiers and the final status dataset."""
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = no_delay(ae.associate("127.0.0.1", port, ae_title="PACSWEB"))
    assert assoc.is_established
    try:
        results, final = [], None
        for status, ds in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            if status.Status in (0xFF00, 0xFF01):
                results.append(ds)
            else:
                final = status
    finally:
        assoc.release()
    return results, final


def accessions(port: int, **keys) -> list[str]:
    results, final = find(port, query(**keys))
    assert final.Status == 0x0000
    return [r.AccessionNumber for r in results]


def test_universal_query_returns_open_orders_with_every_requested_attribute(scp_port, orders):
    results, final = find(scp_port, query())
    assert final.Status == 0x0000
    # By scheduled start; the cancelled ACC1003 is not offered.
    assert [r.AccessionNumber for r in results] == ["RAD55001", "ACC1001", "ACC1002", "ACC7001"]
    muller = results[1]
    assert muller.SpecificCharacterSet == "ISO_IR 192"
    assert str(muller.PatientName) == "Müller^Hans^Peter^Dr."
    assert muller.PatientID == "PAT1001"
    assert muller.PatientBirthDate == "19650412"
    assert muller.PatientSex == "M"
    assert muller.StudyInstanceUID == "1.2.840.113619.2.55.3.1001"
    assert muller.RequestedProcedureID == "RP1001"
    assert muller.RequestedProcedureDescription == "CT Head and Neck"
    assert str(muller.ReferringPhysicianName) == "HOUSE^GREGORY^^DR"
    step = muller.ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == "CT01"
    assert step.ScheduledProcedureStepStartDate == "20240320"
    assert step.ScheduledProcedureStepStartTime == "093000"
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepDescription == "CT head & neck plain"
    assert step.ScheduledProcedureStepID == "SPS1001"
    # Only what was asked for comes back.
    assert "ScheduledProtocolCodeSequence" not in step
    assert "RequestingPhysician" not in muller
    yamada = results[3]
    assert str(yamada.PatientName) == "YAMADA^TARO=山田^太郎=やまだ^たろう"


def test_scheduled_station_ae_title(scp_port, orders):
    assert accessions(scp_port, ScheduledStationAETitle="CT01") == ["ACC1001", "ACC1002"]
    assert accessions(scp_port, ScheduledStationAETitle="MR_AE_01") == ["ACC7001"]
    assert accessions(scp_port, ScheduledStationAETitle="CT*") == ["ACC1001", "ACC1002"]
    assert accessions(scp_port, ScheduledStationAETitle="CT02") == []


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ("20240320", ["ACC1001"]),
        ("20240320-20240321", ["ACC1001", "ACC1002", "ACC7001"]),
        ("20240321-", ["ACC1002", "ACC7001"]),
        ("-20240320", ["RAD55001", "ACC1001"]),
        ("20240101-20240315", []),
    ],
)
def test_scheduled_start_date_single_value_and_ranges(scp_port, orders, dates, expected):
    assert accessions(scp_port, ScheduledProcedureStepStartDate=dates) == expected


def test_scheduled_start_time_range_with_a_date(scp_port, orders):
    keys = {"ScheduledProcedureStepStartDate": "20240321"}
    assert accessions(scp_port, ScheduledProcedureStepStartTime="0700-1200", **keys) == ["ACC1002"]
    assert accessions(scp_port, ScheduledProcedureStepStartTime="1430", **keys) == ["ACC7001"]
    assert accessions(scp_port, ScheduledProcedureStepStartTime="-0800", **keys) == ["ACC1002"]
    assert accessions(scp_port, ScheduledProcedureStepStartTime="1500-", **keys) == []


def test_modality(scp_port, orders):
    assert accessions(scp_port, Modality="MR") == ["ACC7001"]
    assert accessions(scp_port, Modality="CR") == ["RAD55001"]
    assert accessions(scp_port, Modality="US") == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MULLER", ["ACC1001", "ACC1002"]),
        ("müller^hans", ["ACC1001", "ACC1002"]),
        ("mül*", ["ACC1001", "ACC1002"]),
        ("M?LLER^H*", ["ACC1001", "ACC1002"]),
        ("*NEIL*", ["RAD55001"]),
        ("yamada^taro", ["ACC7001"]),
        ("MULL", []),
        ("*", ["RAD55001", "ACC1001", "ACC1002", "ACC7001"]),
    ],
)
def test_patient_name_wildcards_case_and_accents(scp_port, orders, name, expected):
    assert accessions(scp_port, PatientName=name) == expected


def test_patient_id_accession_number_and_study_uids(scp_port, orders):
    assert accessions(scp_port, PatientID="556677") == ["RAD55001"]
    assert accessions(scp_port, PatientID="PAT*") == ["ACC1001", "ACC1002"]
    assert accessions(scp_port, AccessionNumber="ACC7001") == ["ACC7001"]
    assert accessions(scp_port, AccessionNumber="acc7001") == []
    uids = ["1.2.840.113619.2.55.3.1002", orders["ACC7001"].study_uid]
    assert accessions(scp_port, StudyInstanceUID=uids) == ["ACC1002", "ACC7001"]


def test_done_and_cancelled_orders_are_not_offered(scp_port, orders):
    orders_mark_arrived(study_uid=orders["ACC1001"].study_uid, accession_number="")
    order_cancel(order_id=orders["ACC7001"].pk, reason="patient did not come")
    assert accessions(scp_port) == ["RAD55001", "ACC1002"]


def test_in_progress_orders_are_offered_as_started(scp_port, orders):
    Order.objects.filter(accession_number="ACC1002").update(state=Order.State.IN_PROGRESS)
    keys = {"ScheduledProcedureStepStatus": "STARTED"}
    results, _ = find(scp_port, query(**keys))
    assert [r.AccessionNumber for r in results] == ["ACC1002"]
    assert results[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"


def test_empty_sequence_and_code_sequences_return_whole_items(scp_port, orders):
    identifier = Dataset()
    identifier.AccessionNumber = "ACC7001"
    identifier.RequestedProcedureCodeSequence = []
    identifier.ScheduledProcedureStepSequence = []
    identifier.AdmissionID = ""
    identifier.PatientWeight = None
    results, _ = find(scp_port, identifier)
    (item,) = results
    assert item.AdmissionID == "ADM7001"
    # Nothing asked for here is outside ASCII, so no character set is named.
    assert "SpecificCharacterSet" not in item
    # Asked for but not kept: present without a value.
    assert "PatientWeight" in item and item.PatientWeight is None
    code = item.RequestedProcedureCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "MRBR",
        "99RAD",
        "MR Brain/Stem",
    )
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == "MR_AE_01"
    assert step.ScheduledStationName == "MRSTATION1"
    assert step.ScheduledProcedureStepLocation == "MR-ROOM-2"
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    assert str(step.ScheduledPerformingPhysicianName) == ""
    protocol = step.ScheduledProtocolCodeSequence[0]
    assert (protocol.CodeValue, protocol.CodeMeaning) == ("PROT-BR", "Brain routine")


def test_bad_date_range_fails_with_a_reason(scp_port, orders):
    results, final = find(scp_port, query(ScheduledProcedureStepStartDate="2024-03-20-21"))
    assert results == []
    assert final.Status == 0xC000
    assert final.ErrorComment.startswith("Scheduled Procedure Step Start Date: not a DICOM")


def test_too_many_matches_are_refused(scp_port, orders, monkeypatch):
    monkeypatch.setattr(worklist_find, "MAX_MATCHES", 3)
    results, final = find(scp_port, query())
    assert results == []
    assert final.Status == 0xA700
    assert final.ErrorComment == "more than 3 items; narrow the query"


def test_cancel_stops_the_responses(scp_port):
    message = HL7Message.objects.create(source="import", raw="MSH|", sha256="", outcome="stored")
    Order.objects.bulk_create(
        Order(
            message=message,
            patient_id=f"P{n}",
            patient_name=f"PATIENT^{n}",
            accession_number=f"A{n}",
            study_uid=f"1.2.3.{n}",
            modality="CT",
            scheduled_date="2024-03-20",
        )
        for n in range(300)
    )
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = no_delay(ae.associate("127.0.0.1", scp_port, ae_title="PACSWEB"))
    context_id = assoc.accepted_contexts[0].context_id
    statuses = []
    try:
        responses = assoc.send_c_find(query(), ModalityWorklistInformationFind, msg_id=7)
        statuses.append(next(responses)[0].Status)
        assoc.send_c_cancel(7, context_id)
        statuses += [status.Status for status, _ in responses]
    finally:
        assoc.release()
    assert statuses[-1] == 0xFE00
    assert 1 <= statuses.count(0xFF00) < 300


def test_orders_whose_study_arrives_by_c_store_leave_the_worklist(scp_port, orders):
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    by_uid = make_dataset(study_uid=orders["ACC1001"].study_uid, AccessionNumber="OTHER")
    by_accession = make_dataset(AccessionNumber="ACC1002")
    assoc = no_delay(ae.associate("127.0.0.1", scp_port, ae_title="PACSWEB"))
    try:
        for ds in (by_uid, by_accession):
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert accessions(scp_port) == ["RAD55001", "ACC7001"]
    arrived = Order.objects.get(accession_number="ACC1002")
    assert (arrived.state, arrived.state_reason) == (Order.State.DONE, "images arrived")
