"""worklist.services.hl7_file_intake: three RIS dialects, every order control, every rejection."""

import datetime
import random

import pytest

from tests.worklist import hl7_samples as s
from worklist.models import HL7Message, Order
from worklist.services import Status, hl7_file_intake

pytestmark = pytest.mark.django_db


def intake(data: bytes, source: str = "import"):
    return hl7_file_intake(data=data, source=source, source_detail="test")


def radis(**kwargs) -> bytes:
    return s.text(s.radis_orm(**kwargs)).encode("latin-1")


def only(outcomes):
    assert len(outcomes) == 1, [o.reason for o in outcomes]
    return outcomes[0]


def test_radis_orm_v231_maps_every_field():
    outcome = only(intake(radis()))
    assert outcome.status == Status.STORED, outcome.reason
    assert outcome.position == 1
    assert outcome.control_id == "RADIS000101"
    order = Order.objects.get()
    assert order.state == Order.State.SCHEDULED
    assert order.patient_name == "Müller^Hans^Peter^Dr."
    assert order.patient_name_norm == "muller^hans^peter^dr."
    assert (order.patient_id, order.issuer_of_patient_id) == ("PAT1001", "HOSP")
    assert order.patient_birth_date == datetime.date(1965, 4, 12)
    assert order.patient_sex == "M"
    assert (order.placer_order_number, order.filler_order_number) == ("PLC1001", "FIL1001")
    assert order.accession_number == "ACC1001"
    assert order.requested_procedure_id == "RP1001"
    assert order.sps_id == "SPS1001"
    assert order.study_uid == "1.2.840.113619.2.55.3.1001"
    assert order.modality == "CT"
    assert (order.station_ae_title, order.station_name) == ("CT01", "")
    assert order.scheduled_date == datetime.date(2024, 3, 20)
    assert order.scheduled_time == datetime.time(9, 30)
    # OBR-44 is the requested procedure; OBR-4's alternate code (\T\ is "&") the protocol.
    assert order.requested_procedure_codes == [
        {"value": "CTHDN", "scheme": "LOCAL", "meaning": "CT Head and Neck"}
    ]
    assert order.requested_procedure_description == "CT Head and Neck"
    assert order.protocol_codes == [
        {"value": "P-CTHN", "scheme": "LOCAL", "meaning": "CT head & neck plain"}
    ]
    assert order.sps_description == "CT head & neck plain"
    assert order.requested_procedure_priority == "ROUTINE"
    assert order.requesting_physician == "WELBY^MARCUS^^DR"
    assert order.referring_physician == "HOUSE^GREGORY^^DR"
    assert order.performing_physician == "SMITH^ANNA"
    assert order.admission_id == "V0001"
    message = order.message
    assert message.outcome == HL7Message.Outcome.STORED
    assert (message.control_id, message.message_type, message.version) == (
        "RADIS000101",
        "ORM^O01",
        "2.3.1",
    )
    assert message.raw.startswith("MSH|^~\\&|RADIS|RADIOLOGY|")
    assert "Müller" in message.raw
    assert message.source == "import"


def test_medris_orm_v23_with_bom_lf_endings_and_z_segment():
    data = b"\xef\xbb\xbf" + s.text(s.medris_orm(), ending="\n").encode("utf-8")
    outcome = only(intake(data))
    assert outcome.status == Status.STORED, outcome.reason
    order = Order.objects.get()
    # The first PID-5 repetition is the name; the maiden-name alias (type M) is not.
    assert order.patient_name == "O'NEIL^ZOË^ANN"
    assert order.patient_name_norm == "o'neil^zoe^ann"
    assert order.patient_birth_date == datetime.date(1980, 2, 29)
    assert order.patient_sex == "F"
    # This RIS's filler order number is the accession number, and all IDs follow it.
    assert order.accession_number == "RAD55001"
    assert order.requested_procedure_id == "RAD55001"
    assert order.sps_id == "RAD55001"
    # \S\ is the component separator "^", kept as text within the description.
    assert order.requested_procedure_description == "XR Chest PA^LAT"
    assert order.requested_procedure_codes == [
        {"value": "XR-CHEST", "scheme": "L", "meaning": "XR Chest PA^LAT"}
    ]
    assert order.sps_description == "XR Chest PA^LAT"
    assert order.requested_procedure_priority == "STAT"
    assert order.modality == "CR"
    assert order.station_ae_title == ""
    assert order.scheduled_date == datetime.date(2024, 3, 16)
    assert order.scheduled_time == datetime.time(11, 0)
    assert order.referring_physician == "DOE^JANE"
    assert order.requesting_physician == "DOE^JANE"
    # No UID in the message: one is generated and kept.
    assert order.study_uid.startswith("1.2.826.0.1.3680043.8.498.")


def test_ofill_omi_v251_with_ipc_tq1_and_name_groups():
    data = s.text(s.ofill_omi(), ending="\r\n").encode("utf-8")
    outcome = only(intake(data))
    assert outcome.status == Status.STORED, outcome.reason
    order = Order.objects.get()
    assert order.patient_name == "YAMADA^TARO=山田^太郎=やまだ^たろう"
    assert (order.patient_id, order.issuer_of_patient_id) == ("77001", "HOSP")
    assert order.patient_birth_date == datetime.date(1970, 3, 15)
    assert order.accession_number == "ACC7001"
    assert order.requested_procedure_id == "RP7001"
    assert order.sps_id == "SPS7001"
    assert order.study_uid == "1.2.392.200036.9116.2.6.1.48.1214833767.1206425789.123456"
    assert order.modality == "MR"
    assert order.station_ae_title == "MR_AE_01"
    assert order.station_name == "MRSTATION1"
    assert order.sps_location == "MR-ROOM-2"
    # TQ1-7 in the sender's local time; the offset is not applied (DICOM times are local).
    assert order.scheduled_date == datetime.date(2024, 3, 21)
    assert order.scheduled_time == datetime.time(14, 30)
    assert order.requested_procedure_priority == "HIGH"
    # \E\ is a backslash, which DICOM LO cannot hold (it separates values).
    assert order.requested_procedure_description == "MR Brain/Stem"
    assert order.protocol_codes == [
        {"value": "PROT-BR", "scheme": "99RAD", "meaning": "Brain routine"}
    ]
    assert order.sps_description == "Brain routine"
    # \XC39C\ is "Ü" in UTF-8, the message's character set.
    assert order.referring_physician == "MÜLLER^ANNA^^DR"
    assert order.admission_id == "ADM7001"


def test_one_file_holds_messages_of_every_dialect_and_line_ending():
    data = (
        radis().replace(b"\r", b"\r\n")
        + b"\x0b"
        + s.text(s.medris_orm(), ending="\n").encode("utf-8")
        + b"\x1c\r"
        + s.text(s.ofill_omi()).encode("utf-8")
    )
    outcomes = intake(data)
    assert [(o.position, o.status) for o in outcomes] == [
        (1, Status.STORED),
        (2, Status.STORED),
        (3, Status.STORED),
    ], [o.reason for o in outcomes]
    assert Order.objects.count() == 3


def test_batch_envelope_is_read_through():
    batch = (
        "FHS|^~\\&|RADIS\rBHS|^~\\&|RADIS\r"
        + s.text(s.radis_orm())
        + s.text(
            s.radis_orm("RADIS000102", placer="PLC1002", filler="FIL1002", accession="ACC1002")
        )
        + "BTS|2\rFTS|1\r"
    )
    outcomes = intake(batch.encode("latin-1"))
    assert [o.status for o in outcomes] == [Status.STORED, Status.STORED]
    assert set(Order.objects.values_list("accession_number", flat=True)) == {"ACC1001", "ACC1002"}


def test_change_order_xo_updates_the_order_and_keeps_its_study_uid():
    only(intake(s.text(s.medris_orm()).encode("utf-8")))
    original = Order.objects.get()
    change = s.changed(
        s.medris_orm(control_id="20240316101500002", order_control="XO", start="20240317080000"),
        "OBR",
        24,
        "DX",
    )
    outcome = only(intake(s.text(change).encode("utf-8")))
    assert outcome.status == Status.STORED, outcome.reason
    order = Order.objects.get()
    assert order.scheduled_date == datetime.date(2024, 3, 17)
    assert order.modality == "DX"
    assert order.study_uid == original.study_uid
    assert order.message_id == original.message_id
    assert order.last_message.control_id == "20240316101500002"


@pytest.mark.parametrize("code", ["CA", "OC", "DC", "OD"])
def test_cancel_and_discontinue_cancel_the_order(code):
    only(intake(radis()))
    outcome = only(intake(radis(control_id="RADIS000199", order_control=code)))
    assert outcome.status == Status.STORED, outcome.reason
    order = Order.objects.get()
    assert order.state == Order.State.CANCELLED
    assert order.state_reason == f"ORC-1 {code} in message RADIS000199"


def test_cancel_finds_the_order_by_placer_number_alone():
    only(intake(radis()))
    cancel = s.changed(s.radis_orm("RADIS000199", order_control="CA"), "ORC", 3, None)
    cancel = s.changed(cancel, "OBR", 3, None)
    assert only(intake(s.text(cancel).encode("latin-1"))).status == Status.STORED
    assert Order.objects.get().state == Order.State.CANCELLED


def test_cancel_of_a_cancelled_order_is_accepted_as_a_no_op():
    only(intake(radis()))
    only(intake(radis(control_id="RADIS000198", order_control="CA")))
    outcome = only(intake(radis(control_id="RADIS000199", order_control="CA")))
    assert outcome.status == Status.STORED
    assert "already cancelled" in outcome.reason


@pytest.mark.parametrize(
    ("status", "state"),
    [("IP", Order.State.IN_PROGRESS), ("CM", Order.State.DONE), ("CA", Order.State.CANCELLED)],
)
def test_status_change_sc_sets_the_state(status, state):
    only(intake(radis()))
    message = s.changed(s.radis_orm("RADIS000150", order_control="SC"), "ORC", 5, status)
    assert only(intake(s.text(message).encode("latin-1"))).status == Status.STORED
    assert Order.objects.get().state == state


def test_adt_a08_updates_demographics_of_open_orders_only():
    only(intake(radis()))
    only(
        intake(
            radis(control_id="RADIS000102", placer="PLC1002", filler="FIL1002", accession="ACC1002")
        )
    )
    only(intake(radis(control_id="RADIS000103", order_control="CA")))
    outcome = only(intake(s.text(s.adt_a08()).encode("latin-1")))
    assert outcome.status == Status.STORED, outcome.reason
    assert "updated on 1 open order(s)" in outcome.reason
    open_order = Order.objects.get(accession_number="ACC1002")
    assert open_order.patient_name == "Müller-Lüdenscheidt^Hans"
    assert open_order.patient_birth_date == datetime.date(1965, 4, 13)
    assert open_order.last_message.message_type == "ADT^A08"
    cancelled = Order.objects.get(accession_number="ACC1001")
    assert cancelled.patient_name == "Müller^Hans^Peter^Dr."


def test_adt_a31_for_an_unknown_patient_changes_nothing():
    only(intake(radis()))
    message = s.changed(s.adt_a08(patient_id="OTHER"), "MSH", 9, "ADT^A31")
    outcome = only(intake(s.text(message).encode("latin-1")))
    assert outcome.status == Status.STORED
    assert "updated on 0 open order(s)" in outcome.reason
    assert Order.objects.get().patient_name == "Müller^Hans^Peter^Dr."


def test_same_control_id_and_content_is_a_duplicate_no_op():
    only(intake(radis()))
    again = only(intake(radis()))
    assert again.status == Status.DUPLICATE
    assert again.reason.startswith("message 1 (MSH-10 'RADIS000101'): already received on ")
    assert Order.objects.count() == 1
    assert HL7Message.objects.count() == 1


def test_same_control_id_from_another_sender_is_another_message():
    only(intake(radis()))
    other = s.changed(s.radis_orm(placer="X1", filler="X2", accession="ACC2"), "MSH", 3, "OTHERRIS")
    assert only(intake(s.text(other).encode("latin-1"))).status == Status.STORED
    assert Order.objects.count() == 2


def test_a_resent_rejected_message_is_read_again():
    only(intake(radis(order_control="CA")))
    assert only(intake(radis(order_control="CA"))).status == Status.REJECTED
    assert HL7Message.objects.filter(outcome="rejected").count() == 2


def test_fifty_good_messages_and_one_bad_store_fifty_and_report_one():
    messages = [
        s.radis_orm(f"RADIS{n:06}", placer=f"P{n}", filler=f"F{n}", accession=f"ACC{2000 + n}")
        for n in range(1, 51)
    ]
    messages.insert(30, s.changed(s.radis_orm("BAD0001", placer="PB", filler="FB"), "PID", 3, ""))
    data = "".join(s.text(m) for m in messages).encode("latin-1")
    outcomes = intake(data)
    assert len(outcomes) == 51
    rejected = [o for o in outcomes if o.status == Status.REJECTED]
    assert [o.reason for o in rejected] == [
        "message 31 (MSH-10 'BAD0001'): PID-3 patient ID is missing"
    ]
    assert sum(o.status == Status.STORED for o in outcomes) == 50
    assert Order.objects.count() == 50
    assert not Order.objects.filter(placer_order_number="PB").exists()
    bad = HL7Message.objects.get(control_id="BAD0001")
    assert (bad.outcome, bad.position, bad.reason) == (
        "rejected",
        31,
        "PID-3 patient ID is missing",
    )


def test_rejected_second_order_group_rolls_back_the_first():
    message = s.radis_orm()
    second = s.radis_orm(placer="PLC1002", filler="FIL1002", accession="ACC1002")
    second_groups = [seg for seg in second if seg[0] in ("ORC", "OBR")]
    second_groups = s.changed(second_groups, "OBR", 24, "")
    outcome = only(intake(s.text(message + second_groups).encode("latin-1")))
    assert outcome.reason == ("message 1 (MSH-10 'RADIS000101'): OBR[2]-24 modality is missing")
    assert not Order.objects.exists()
    assert not HL7Message.objects.filter(outcome="stored").exists()


def test_two_order_groups_make_two_orders():
    second = s.radis_orm(placer="PLC1002", filler="FIL1002", accession="ACC1002")
    groups = [seg for seg in second if seg[0] in ("ORC", "OBR", "ZDS")]
    outcome = only(intake(s.text(s.radis_orm() + groups).encode("latin-1")))
    assert outcome.status == Status.STORED, outcome.reason
    orders = Order.objects.order_by("accession_number")
    assert [o.accession_number for o in orders] == ["ACC1001", "ACC1002"]
    assert [o.study_uid for o in orders] == [
        "1.2.840.113619.2.55.3.1001",
        "1.2.840.113619.2.55.3.1002",
    ]


def test_rejected_change_leaves_the_order_as_it_was():
    only(intake(radis()))
    change = s.changed(s.radis_orm("RADIS000102", order_control="XO"), "PID", 7, "19651340")
    change = s.changed(change, "OBR", 24, "MR")
    outcome = only(intake(s.text(change).encode("latin-1")))
    assert outcome.status == Status.REJECTED
    order = Order.objects.get()
    assert order.modality == "CT"
    assert order.last_message.control_id == "RADIS000101"


ORM = s.radis_orm


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (s.changed(ORM(), "PID", 3, ""), "PID-3 patient ID is missing"),
        (s.changed(ORM(), "PID", 5, ""), "PID-5 patient name is missing"),
        (
            s.changed(ORM(), "PID", 7, "19651332"),
            "PID-7 birth date '19651332' is not a valid date/time",
        ),
        (
            s.changed(ORM(), "PID", 7, "1965"),
            "PID-7 birth date '1965' has no day (YYYYMMDD needed)",
        ),
        (
            s.changed(ORM(), "PID", 8, "Q"),
            "PID-8 sex 'Q' is not in HL7 table 0001 (M, F, O, U, A, N)",
        ),
        (
            s.changed(ORM(), "PID", 3, "X" * 65),
            f"PID-3 patient ID '{'X' * 65}' is longer than 64 characters (DICOM limit)",
        ),
        (
            s.changed(ORM(), "PID", 3, "AB\\X07\\C"),
            "PID-3 patient ID 'AB?C' contains a control character or '\\'",
        ),
        (s.without(ORM(), "PID"), "PID segment is missing"),
        (
            s.changed(ORM(), "MSH", 9, "ORU^R01"),
            "MSH-9 message type 'ORU^R01' is not supported (only ADT^A08, ADT^A31, OMI^O23, ORM^O01)",
        ),
        (
            s.changed(ORM(), "MSH", 9, "ADT^A01"),
            "MSH-9 message type 'ADT^A01' is not supported (only ADT^A08, ADT^A31, OMI^O23, ORM^O01)",
        ),
        (s.changed(ORM(), "MSH", 9, ""), "MSH-9 message type is missing"),
        (
            s.changed(ORM(), "MSH", 12, "2.7"),
            "MSH-12 version '2.7' is not supported (2.3 to 2.5.1)",
        ),
        (
            s.changed(ORM(), "MSH", 18, "ISO IR87"),
            "MSH-18 character set 'ISO IR87' is not supported",
        ),
        (
            s.without(s.without(s.without(ORM(), "ORC"), "OBR"), "ZDS"),
            "ORC segment is missing: an order message needs ORC",
        ),
        (
            s.changed(ORM(), "ORC", 1, "RE"),
            "ORC-1 order control 'RE' is not supported (NW, XO, CA, OC, DC, OD, SC)",
        ),
        (s.changed(ORM(), "ORC", 1, ""), "ORC-1 order control is missing"),
        (
            s.changed(
                s.changed(s.changed(s.changed(ORM(), "ORC", 2, ""), "ORC", 3, ""), "OBR", 2, ""),
                "OBR",
                3,
                "",
            ),
            "ORC-2 placer order number is missing (and there is no filler order number in ORC-3)",
        ),
        (s.without(ORM(), "OBR"), "OBR segment is missing: ORC-1 NW needs OBR"),
        (s.changed(ORM(), "OBR", 4, ""), "OBR-4 universal service ID is missing"),
        (s.changed(ORM(), "OBR", 24, ""), "OBR-24 modality is missing"),
        (
            s.changed(ORM(), "OBR", 24, "C-T"),
            "OBR-24 modality 'C-T' is not a DICOM code string",
        ),
        (
            s.changed(s.changed(ORM(), "ORC", 7, ""), "OBR", 27, ""),
            "ORC-7 scheduled start date/time is missing (looked in TQ1-7, ORC-7.4, OBR-27.4, OBR-36, OBR-7)",
        ),
        (
            ORM(start="2024-03-20"),
            "ORC-7 scheduled start '2024-03-20' is not an HL7 date/time",
        ),
        (
            ORM(start="202403201275"),
            "ORC-7 scheduled start '202403201275' is not a valid date/time",
        ),
        (
            ORM(accession="ACC1001-TOO-LONG-FOR-SH"),
            "OBR-18 accession number 'ACC1001-TOO-LONG-FOR-SH' is longer than 16 characters (DICOM limit)",
        ),
        (
            s.changed(s.changed(s.changed(ORM(), "OBR", 18, ""), "ORC", 3, ""), "OBR", 3, ""),
            "OBR-18 accession number is missing (and there is no filler order number in ORC-3)",
        ),
        (
            s.changed(ORM(), "ZDS", 1, "1.2.840.01^RADIS"),
            "ZDS-1 Study Instance UID '1.2.840.01' is not a valid DICOM UID",
        ),
        (
            ORM(station="CT-SCANNER-NUMBER-1"),
            "ORC-18 station AE title 'CT-SCANNER-NUMBER-1' is not a DICOM AE title",
        ),
        (
            s.changed(ORM(), "OBR", 44, "CT-HEAD-AND-NECK-WITHOUT^CT head^LOCAL"),
            "OBR-44 code value 'CT-HEAD-AND-NECK-WITHOUT' is longer than 16 characters (DICOM limit)",
        ),
        (
            ORM(order_control="XO"),
            "ORC-2 order 'FIL1001' is not known (ORC-1 XO needs an order created by NW)",
        ),
        (
            ORM(order_control="CA"),
            "ORC-2 order 'FIL1001' is not known (ORC-1 CA needs an order created by NW)",
        ),
        (
            s.changed(ORM(order_control="SC"), "ORC", 5, "HD"),
            "ORC-5 order status 'HD' is not supported with SC (SC, IP, CM, CA, DC)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_rejections_name_the_message_and_the_field(message, reason):
    outcome = only(intake(s.text(message).encode("latin-1")))
    assert outcome.status == Status.REJECTED
    assert outcome.reason == f"message 1 (MSH-10 'RADIS000101'): {reason}"
    assert not Order.objects.exists()
    record = HL7Message.objects.get()
    assert (record.outcome, record.reason) == ("rejected", reason)


def test_two_ipc_segments_are_rejected():
    message = s.ofill_omi()
    message.append(("IPC", {1: "ACC7002", 5: "MR"}))
    outcome = only(intake(s.text(message).encode("utf-8")))
    assert outcome.reason == (
        "message 1 (MSH-10 'OF-2024-0001'): IPC[2] more than one IPC segment per order: "
        "one worklist item per order is supported"
    )


def test_new_order_with_a_known_number_is_rejected():
    only(intake(radis()))
    outcome = only(intake(radis(control_id="RADIS000102")))
    assert outcome.reason == (
        "message 1 (MSH-10 'RADIS000102'): ORC-2 order 'FIL1001' already exists (scheduled); "
        "changes are sent with ORC-1 XO"
    )
    assert Order.objects.count() == 1


def test_change_of_a_cancelled_order_is_rejected():
    only(intake(radis()))
    only(intake(radis(control_id="RADIS000102", order_control="CA")))
    outcome = only(intake(radis(control_id="RADIS000103", order_control="XO")))
    assert outcome.reason == (
        "message 1 (MSH-10 'RADIS000103'): ORC-1 order 'FIL1001' is cancelled and can no longer "
        "be changed"
    )


def test_same_control_id_with_other_content_is_rejected():
    only(intake(radis()))
    outcome = only(intake(radis(start="20240321093000")))
    assert outcome.status == Status.REJECTED
    assert outcome.reason.startswith(
        "message 1 (MSH-10 'RADIS000101'): MSH-10 control ID 'RADIS000101' was already used on "
    )
    assert outcome.reason.endswith("by a different message from the same sender")
    assert Order.objects.get().scheduled_time == datetime.time(9, 30)


def test_missing_control_id_is_rejected():
    outcome = only(intake(radis(control_id="")))
    assert (
        outcome.reason == "message 1 (no MSH-10 control ID): MSH-10 message control ID is missing"
    )


def test_declared_utf8_with_latin1_bytes_is_rejected():
    message = s.changed(s.radis_orm(), "MSH", 18, "UNICODE UTF-8")
    outcome = only(intake(s.text(message).encode("latin-1")))
    assert outcome.status == Status.REJECTED
    assert outcome.reason.startswith(
        "message 1 (MSH-10 'RADIS000101'): MSH-18 says 'UNICODE UTF-8' but byte "
    )
    assert outcome.reason.endswith(" of the message is not valid UNICODE UTF-8")


def test_undeclared_windows_1252_text_is_read():
    message = s.changed(s.radis_orm(), "MSH", 18, None)
    message = s.changed(message, "PID", 5, "D’Arcy^Noël")
    outcome = only(intake(s.text(message).encode("cp1252")))
    assert outcome.status == Status.STORED, outcome.reason
    assert Order.objects.get().patient_name == "D’Arcy^Noël"


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (
            b"MSH|^~^&|",
            "MSH-2 encoding characters '^~^&' are not four distinct delimiters such as ^~\\&",
        ),
        (
            b"MSH|^~|",
            "MSH-2 encoding characters '^~' are not four distinct delimiters such as ^~\\&",
        ),
        (b"MSHA^~\\&A", "MSH-1 field separator 'A' is not a delimiter"),
    ],
)
def test_bad_delimiters_are_rejected(start, reason):
    data = radis().replace(b"MSH|^~\\&|", start, 1)
    outcome = only(intake(data))
    assert outcome.status == Status.REJECTED
    assert outcome.reason.endswith(f"): {reason}")


def test_damaged_files_never_raise_and_every_message_gets_an_outcome():
    rng = random.Random(6)
    samples = [radis(), s.text(s.ofill_omi()).encode("utf-8"), s.text(s.medris_orm()).encode()]
    noise = b"|^~\\&\r\n\x0b\x1cMSHPIDORC0123456789 \xff\xc3"
    for _ in range(300):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data) + 1)
            if rng.random() < 0.5:
                del data[at : at + rng.randint(1, 5)]
            else:
                data[at:at] = bytes(rng.choice(noise) for _ in range(rng.randint(1, 4)))
        outcomes = intake(bytes(data))
        assert outcomes
        for outcome in outcomes:
            assert outcome.status in (Status.STORED, Status.DUPLICATE, Status.REJECTED)
            assert outcome.status != Status.REJECTED or outcome.reason


def test_bad_segment_name_is_rejected():
    data = radis().replace(b"\rNTE|", b"\rnte|")
    outcome = only(intake(data))
    assert outcome.reason == (
        "message 1 (MSH-10 'RADIS000101'): segment 6 'nte' is not an HL7 segment name"
    )


def test_too_many_segments_are_rejected(settings):
    settings.HL7_MAX_SEGMENTS = 7
    message = s.radis_orm() + [("NTE", {1: "2", 3: "one more"})]
    outcome = only(intake(s.text(message).encode("latin-1")))
    assert outcome.reason == (
        "message 1 (MSH-10 'RADIS000101'): has 8 segments, more than the limit of 7"
    )
    assert only(intake(radis())).status == Status.STORED


def test_too_large_message_is_rejected(settings):
    settings.HL7_MAX_MESSAGE_BYTES = 1000
    message = s.radis_orm() + [("NTE", {1: "2", 3: "x" * 1000})]
    outcome = only(intake(s.text(message).encode("latin-1")))
    assert outcome.status == Status.REJECTED
    assert "bytes, more than the limit of 1,000" in outcome.reason


def test_too_large_file_is_refused_whole(settings):
    settings.HL7_MAX_FILE_BYTES = 1000
    data = radis() + radis(control_id="RADIS000102", placer="P2", filler="F2", accession="ACC2")
    outcome = only(intake(data))
    assert (outcome.position, outcome.status) == (0, Status.REJECTED)
    assert outcome.reason == (
        f"the file is {len(data):,} bytes, more than the limit of 1,000; nothing in it was read"
    )
    assert not HL7Message.objects.exists()


def test_file_without_messages_is_reported():
    outcome = only(intake(b"hello\nworld\n"))
    assert (outcome.position, outcome.status) == (0, Status.REJECTED)
    assert outcome.reason == (
        "2 line(s) before the first MSH segment (starting 'hello') belong to no message and "
        "were ignored"
    )


def test_empty_file_is_reported():
    outcome = only(intake(b""))
    assert outcome.reason == "no HL7 message found (no MSH segment)"


def test_text_before_the_first_message_is_reported_and_the_message_read():
    outcomes = intake(b"garbage line\r" + radis())
    assert [(o.position, o.status) for o in outcomes] == [
        (0, Status.REJECTED),
        (1, Status.STORED),
    ]


def test_unknown_source_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown HL7 source 'web'"):
        hl7_file_intake(data=radis(), source="web", source_detail="")
