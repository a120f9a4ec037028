"""What an HL7 order or patient message asks for, mapped to worklist values.

The mapping follows IHE Radiology RAD-4/RAD-13 (ORM^O01 in v2.3.1, OMI^O23 in v2.5.1) as order
fillers send it, with the fallbacks that other RIS dialects use:

- accession number: IPC-1, OBR-18, else the filler order number (ORC-3/OBR-3);
- requested procedure ID: IPC-2, OBR-19, else the accession number;
- scheduled procedure step ID: IPC-4, OBR-20, else the requested procedure ID;
- Study Instance UID: IPC-3, ZDS-1 (the IHE Z-segment), else generated when the order is created;
- modality: IPC-5, OBR-24; scheduled station AE title: IPC-9, ORC-18 (entering device);
- start date/time: TQ1-7, ORC-7.4, OBR-27.4, OBR-36, OBR-7;
- requested procedure code and description: OBR-44, else OBR-4; scheduled protocol code: IPC-6,
  else the alternate code of OBR-4 (components 4-6), else OBR-4;
- requesting physician: OBR-16, ORC-12; referring physician: PV1-8; performing: OBR-34.

Nothing here touches the database: ``read`` returns plain data or raises ``HL7Error`` naming
the segment and field at fault.
"""

import datetime
import re
from dataclasses import dataclass, field

from pacsweb.lib.person_names import fold_person_name
from worklist.hl7_reader import (
    ERR_REQUIRED_FIELD_MISSING,
    ERR_SEGMENT_SEQUENCE,
    ERR_TABLE_VALUE,
    ERR_UNSUPPORTED_EVENT,
    ERR_UNSUPPORTED_MESSAGE_TYPE,
    ERR_UNSUPPORTED_VERSION,
    HL7Error,
    Message,
    Repetition,
    Segment,
)

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
ORDER_MESSAGES = {("ORM", "O01"), ("OMI", "O23")}
PATIENT_UPDATE_MESSAGES = {("ADT", "A08"), ("ADT", "A31")}

# ORC-1 order control codes (HL7 table 0119) and what they do to a worklist order. OC and OD
# are the filler-initiated forms of CA and DC, which is how an order filler (the RIS) sends them.
NEW, CHANGE, CANCEL, STATUS = "new", "change", "cancel", "status"
ORDER_CONTROLS = {
    "NW": NEW,
    "XO": CHANGE,
    "CA": CANCEL,
    "OC": CANCEL,
    "DC": CANCEL,
    "OD": CANCEL,
    "SC": STATUS,
}
# ORC-5 order status (HL7 table 0038) for SC messages, as Order.State values.
ORDER_STATUSES = {
    "SC": "scheduled",
    "IP": "in_progress",
    "CM": "done",
    "CA": "cancelled",
    "DC": "cancelled",
}
# HL7 administrative sex (table 0001) to DICOM Patient's Sex (PS3.3 C.7.1.1): M, F, O or empty.
SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "U": "", "N": ""}
# TQ priority (ORC-7.6 / TQ1-9) to Requested Procedure Priority, as IHE RAD TF-2 maps it.
PRIORITIES = {
    "S": "STAT",
    "A": "HIGH",
    "P": "HIGH",
    "C": "HIGH",
    "R": "ROUTINE",
    "T": "MEDIUM",
}
# HL7 table 0396: "L" is the designator for a local coding system, used when none is sent.
LOCAL_CODING_SCHEME = "L"

TS_PATTERN = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?(?:[+-]\d{4})?$"
)
UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
CS_PATTERN = re.compile(r"^[A-Z0-9_ ]+$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")
PN_DELIMITERS = re.compile(r"[\^=\\\x00-\x1f\x7f]+")
PN_GROUP_MAX = 64


@dataclass
class Patient:
    patient_id: str
    issuer: str
    name: str
    birth_date: datetime.date | None
    sex: str

    def order_fields(self) -> dict[str, object]:
        return {
            "patient_id": self.patient_id,
            "issuer_of_patient_id": self.issuer,
            "patient_name": self.name,
            "patient_name_norm": fold_person_name(self.name),
            "patient_birth_date": self.birth_date,
            "patient_sex": self.sex,
        }


@dataclass
class OrderRequest:
    """One ORC group: what to do (``action``) to which order, with the order's values."""

    action: str
    control: str
    label: str  # How error messages name this group: "ORC" or "ORC[2]" for the second.
    placer: str
    filler: str
    status: str = ""  # The new Order.State for STATUS requests.
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class ParsedMessage:
    kind: str  # "order" or "patient"
    patient: Patient
    orders: list[OrderRequest] = field(default_factory=list)


def read(message: Message) -> ParsedMessage:
    """Map a parsed message to worklist data, or raise HL7Error for the first fault found."""
    msh = message.segments[0]
    kind = _message_kind(msh)
    pid = message.first("PID")
    if pid is None:
        raise HL7Error("PID", "segment is missing", ERR_SEGMENT_SEQUENCE)
    patient = _patient(pid)
    if kind == "patient":
        return ParsedMessage(kind=kind, patient=patient)
    pv1 = message.first("PV1")
    groups = _order_groups(message)
    if not groups:
        raise HL7Error(
            "ORC", "segment is missing: an order message needs ORC", ERR_SEGMENT_SEQUENCE
        )
    orders = [_order(group, number, pv1) for number, group in enumerate(groups, start=1)]
    return ParsedMessage(kind=kind, patient=patient, orders=orders)


def _message_kind(msh: Segment) -> str:
    code, event = msh.get(9, 1).upper(), msh.get(9, 2).upper()
    if not code:
        raise HL7Error("MSH-9", "message type is missing", ERR_REQUIRED_FIELD_MISSING, reject=True)
    version = msh.get(12)
    if version not in SUPPORTED_VERSIONS:
        raise HL7Error(
            "MSH-12",
            f"version '{version}' is not supported (2.3 to 2.5.1)",
            ERR_UNSUPPORTED_VERSION,
            reject=True,
        )
    if (code, event) in ORDER_MESSAGES:
        return "order"
    if (code, event) in PATIENT_UPDATE_MESSAGES:
        return "patient"
    supported = sorted(f"{c}^{e}" for c, e in ORDER_MESSAGES | PATIENT_UPDATE_MESSAGES)
    known_code = code in {c for c, _ in ORDER_MESSAGES | PATIENT_UPDATE_MESSAGES}
    raise HL7Error(
        "MSH-9",
        f"message type '{code}^{event}' is not supported (only {', '.join(supported)})",
        ERR_UNSUPPORTED_EVENT if known_code else ERR_UNSUPPORTED_MESSAGE_TYPE,
        reject=True,
    )


def _patient(pid: Segment) -> Patient:
    ids = pid.repetitions(3)
    chosen = next((r for r in ids if r.get(5).upper() in ("MR", "PI") and r.get(1).strip()), None)
    chosen = chosen or next((r for r in ids if r.get(1).strip()), None)
    if chosen is None:
        raise HL7Error("PID-3", "patient ID is missing", ERR_REQUIRED_FIELD_MISSING)
    patient_id = _identifier(chosen.get(1), "PID-3", "patient ID", 64)
    issuer = _identifier(chosen.get(4), "PID-3.4", "assigning authority", 64)
    name = _patient_name(pid.repetitions(5))
    if not name:
        raise HL7Error("PID-5", "patient name is missing", ERR_REQUIRED_FIELD_MISSING)
    birth_date = None
    if pid.get(7):
        birth_date, _ = _timestamp(pid.get(7), "PID-7", "birth date", need_day=True)
    sex_code = pid.get(8).upper()
    if sex_code not in SEXES and sex_code:
        raise HL7Error(
            "PID-8",
            f"sex '{sex_code}' is not in HL7 table 0001 (M, F, O, U, A, N)",
            ERR_TABLE_VALUE,
        )
    return Patient(patient_id, issuer, name, birth_date, SEXES.get(sex_code, ""))


def _order_groups(message: Message) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append([segment])
        elif groups:
            groups[-1].append(segment)
    return groups


def _order(group: list[Segment], number: int, pv1: Segment | None) -> OrderRequest:
    orc = group[0]
    label = "ORC" if number == 1 else f"ORC[{number}]"
    code = orc.get(1).upper()
    if not code:
        raise HL7Error(f"{label}-1", "order control is missing", ERR_REQUIRED_FIELD_MISSING)
    if code not in ORDER_CONTROLS:
        raise HL7Error(
            f"{label}-1",
            f"order control '{code}' is not supported ({', '.join(ORDER_CONTROLS)})",
            ERR_TABLE_VALUE,
        )
    action = ORDER_CONTROLS[code]
    obr = next((s for s in group if s.name == "OBR"), None)
    obr_label = "OBR" if number == 1 else f"OBR[{number}]"
    placer = orc.get(2) or (obr.get(2) if obr else "")
    filler = orc.get(3) or (obr.get(3) if obr else "")
    placer = _identifier(placer, f"{label}-2", "placer order number", 64)
    filler = _identifier(filler, f"{label}-3", "filler order number", 64)
    if not placer and not filler:
        raise HL7Error(
            f"{label}-2",
            "placer order number is missing (and there is no filler order number in ORC-3)",
            ERR_REQUIRED_FIELD_MISSING,
        )
    request = OrderRequest(action=action, control=code, label=label, placer=placer, filler=filler)
    if action == STATUS:
        status = orc.get(5).upper()
        if status not in ORDER_STATUSES:
            raise HL7Error(
                f"{label}-5",
                f"order status '{status}' is not supported with SC ({', '.join(ORDER_STATUSES)})",
                ERR_TABLE_VALUE,
            )
        request.status = ORDER_STATUSES[status]
    if action in (NEW, CHANGE):
        if obr is None:
            raise HL7Error(
                obr_label, f"segment is missing: ORC-1 {code} needs OBR", ERR_SEGMENT_SEQUENCE
            )
        request.fields = _order_fields(group, orc, obr, obr_label, pv1, filler)
    return request


def _order_fields(
    group: list[Segment],
    orc: Segment,
    obr: Segment,
    obr_label: str,
    pv1: Segment | None,
    filler: str,
) -> dict[str, object]:
    tq1 = next((s for s in group if s.name == "TQ1"), None)
    zds = next((s for s in group if s.name == "ZDS"), None)
    ipcs = [s for s in group if s.name == "IPC"]
    if len(ipcs) > 1:
        raise HL7Error(
            f"IPC[{len(ipcs)}]",
            "more than one IPC segment per order: one worklist item per order is supported",
            ERR_SEGMENT_SEQUENCE,
        )
    ipc = ipcs[0] if ipcs else None

    def pick(*sources: tuple[Segment | None, int, int, int]) -> tuple[str, str]:
        # The first non-empty value among (segment, field, component, subcomponent) sources,
        # with the location it came from, for error messages.
        for segment, number, component, sub in sources:
            if segment is not None and segment.get(number, component, sub):
                return segment.get(number, component, sub), _location(segment, obr_label, number)
        return "", ""

    accession, where = pick((ipc, 1, 1, 1), (obr, 18, 1, 1))
    if not accession and filler:
        accession, where = filler, "ORC-3"
    if not accession:
        raise HL7Error(
            f"{obr_label}-18",
            "accession number is missing (and there is no filler order number in ORC-3)",
            ERR_REQUIRED_FIELD_MISSING,
        )
    accession = _identifier(accession, where, "accession number", 16)
    procedure_id, where = pick((ipc, 2, 1, 1), (obr, 19, 1, 1))
    procedure_id = _identifier(procedure_id, where, "requested procedure ID", 16) or accession
    sps_id, where = pick((ipc, 4, 1, 1), (obr, 20, 1, 1))
    sps_id = _identifier(sps_id, where, "scheduled procedure step ID", 16) or procedure_id

    study_uid, where = pick((ipc, 3, 1, 1), (zds, 1, 1, 1))
    if study_uid and (len(study_uid) > 64 or not UID_PATTERN.match(study_uid)):
        raise HL7Error(where, f"Study Instance UID '{study_uid[:80]}' is not a valid DICOM UID")

    modality, where = pick((ipc, 5, 1, 1), (obr, 24, 1, 1))
    if not modality:
        raise HL7Error(f"{obr_label}-24", "modality is missing", ERR_REQUIRED_FIELD_MISSING)
    modality = modality.upper()
    if len(modality) > 16 or not CS_PATTERN.match(modality):
        raise HL7Error(where, f"modality '{modality[:40]}' is not a DICOM code string")

    station_ae, where = pick((ipc, 9, 1, 1), (orc, 18, 1, 1))
    if len(station_ae) > 16 or CONTROL_CHARS.search(station_ae) or "\\" in station_ae:
        raise HL7Error(where, f"station AE title '{station_ae[:40]}' is not a DICOM AE title")
    station_name, where = pick((ipc, 7, 1, 1))
    station_name = _identifier(station_name, where, "scheduled station name", 16)
    location, where = pick((ipc, 8, 1, 1))
    location = _identifier(location, where, "scheduled procedure step location", 16)

    start_text, where = pick(
        (tq1, 7, 1, 1), (orc, 7, 4, 1), (obr, 27, 4, 1), (obr, 36, 1, 1), (obr, 7, 1, 1)
    )
    if not start_text:
        raise HL7Error(
            "ORC-7",
            "scheduled start date/time is missing (looked in TQ1-7, ORC-7.4, OBR-27.4, OBR-36, OBR-7)",
            ERR_REQUIRED_FIELD_MISSING,
        )
    start_date, start_time = _timestamp(start_text, where, "scheduled start", need_day=True)

    service = obr.repetitions(4)
    if not service:
        raise HL7Error(
            f"{obr_label}-4", "universal service ID is missing", ERR_REQUIRED_FIELD_MISSING
        )
    procedure_codes = obr.repetitions(44)
    requested_reps = procedure_codes or service[:1]
    requested_label = f"{obr_label}-44" if procedure_codes else f"{obr_label}-4"
    requested_codes = [item for rep in requested_reps for item in _code(rep, requested_label)]
    first = requested_reps[0]
    description = first.get(2) or first.get(5) or first.get(1)
    if ipc is not None and ipc.repetitions(6):
        protocol_label = _location(ipc, obr_label, 6)
        protocol_codes = [i for rep in ipc.repetitions(6) for i in _code(rep, protocol_label)]
    else:
        # IHE puts the scheduled protocol in OBR-4's alternate code; without one, the
        # procedure's own code is the protocol.
        protocol_codes = _code(service[0], f"{obr_label}-4", first=4) or _code(
            service[0], f"{obr_label}-4"
        )
    sps_description = (
        service[0].get(5) or (protocol_codes[0]["meaning"] if protocol_codes else "") or description
    )

    priority_code, _ = pick((tq1, 9, 1, 1), (orc, 7, 6, 1), (obr, 27, 6, 1), (obr, 5, 1, 1))
    requesting = obr.repetitions(16) or orc.repetitions(12)
    referring = pv1.repetitions(8) if pv1 is not None else []
    performing = obr.repetitions(34)
    return {
        "accession_number": accession,
        "requested_procedure_id": procedure_id,
        "sps_id": sps_id,
        "study_uid": study_uid,
        "modality": modality,
        "station_ae_title": station_ae,
        "station_name": station_name,
        "sps_location": location,
        "scheduled_date": start_date,
        "scheduled_time": start_time,
        "requested_procedure_description": _text(description, 64),
        "requested_procedure_codes": requested_codes,
        "requested_procedure_priority": PRIORITIES.get(priority_code.upper()[:1], ""),
        "protocol_codes": protocol_codes,
        "sps_description": _text(sps_description, 64),
        "requesting_physician": _xcn_name(requesting[0]) if requesting else "",
        "referring_physician": _xcn_name(referring[0]) if referring else "",
        "performing_physician": _technician_name(performing[0]) if performing else "",
        "admission_id": _text(pv1.get(19), 64) if pv1 is not None else "",
    }


def _location(segment: Segment, obr_label: str, number: int) -> str:
    if segment.name == "OBR":
        return f"{obr_label}-{number}"
    return f"{segment.name}-{number}"


def _identifier(value: str, location: str, label: str, limit: int) -> str:
    value = value.strip()
    if CONTROL_CHARS.search(value) or "\\" in value:
        shown = CONTROL_CHARS.sub("?", value[:80])
        raise HL7Error(location, f"{label} '{shown}' contains a control character or '\\'")
    if len(value) > limit:
        raise HL7Error(
            location, f"{label} '{value[:80]}' is longer than {limit} characters (DICOM limit)"
        )
    return value


def _text(value: str, limit: int) -> str:
    """Free text made safe for a DICOM LO value: no backslash (the VM separator), no control
    characters; longer text is cut to the VR's length (the raw message keeps all of it)."""
    value = CONTROL_CHARS.sub(" ", value.replace("\\", "/"))
    return " ".join(value.split())[:limit]


def _timestamp(
    value: str, location: str, label: str, *, need_day: bool
) -> tuple[datetime.date, datetime.time | None]:
    """Parse an HL7 TS/DTM value (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]).

    The time is kept as written, in the sender's local time, as DICOM DA/TM values are; an
    offset is dropped. Precision below a day is refused where a date is needed.
    """
    match = TS_PATTERN.match(value.strip())
    if not match:
        raise HL7Error(location, f"{label} '{value[:40]}' is not an HL7 date/time")
    year, month, day, hour, minute, second, fraction = match.groups()
    if need_day and not (month and day):
        raise HL7Error(location, f"{label} '{value[:40]}' has no day (YYYYMMDD needed)")
    try:
        date = datetime.date(int(year), int(month), int(day))
        time = None
        if hour:
            micro = int((fraction or "0").ljust(6, "0")[:6])
            time = datetime.time(int(hour), int(minute or 0), int(second or 0), micro)
    except ValueError as exc:
        raise HL7Error(location, f"{label} '{value[:40]}' is not a valid date/time") from exc
    return date, time


def _code(rep: Repetition, location: str, first: int = 1) -> list[dict[str, str]]:
    """The code item of a CE/CWE triplet (identifier, text, coding system) starting at
    component ``first`` (4 for the alternate code), as a list of none or one item."""
    value, meaning, scheme = rep.get(first), rep.get(first + 1), rep.get(first + 2)
    if not value:
        return []
    return [
        {
            "value": _identifier(value, location, "code value", 16),
            "scheme": _identifier(scheme, location, "coding system", 16) or LOCAL_CODING_SCHEME,
            "meaning": _text(meaning or value, 64),
        }
    ]


def _pn_component(value: str) -> str:
    return " ".join(PN_DELIMITERS.sub(" ", value).split())


def _pn(family: str, given: str, middle: str, prefix: str, suffix: str) -> str:
    """A DICOM PN component group (family^given^middle^prefix^suffix), trailing empties dropped."""
    parts = [_pn_component(p) for p in (family, given, middle, prefix, suffix)]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)[:PN_GROUP_MAX]


def _family(rep: Repetition, component: int) -> str:
    # FN: surname & own surname prefix & ...; "van" & "Berg" become "van Berg".
    surname, prefix = rep.get(component, 1), rep.get(component, 2)
    return f"{prefix} {surname}" if prefix and surname else surname


def _xpn_group(rep: Repetition) -> str:
    # XPN: family ^ given ^ middle ^ suffix ^ prefix ^ degree ^ type ^ representation.
    suffix = " ".join(p for p in (rep.get(4), rep.get(6)) if p)
    return _pn(_family(rep, 1), rep.get(2), rep.get(3), rep.get(5), suffix)


def _patient_name(reps: list[Repetition]) -> str:
    """PID-5 to a PN with alphabetic, ideographic and phonetic groups (XPN-8: A, I, P)."""
    by_kind: dict[str, list[Repetition]] = {"A": [], "I": [], "P": []}
    for rep in reps:
        by_kind.setdefault(rep.get(8).upper() or "A", []).append(rep)

    def best(kind: str) -> str:
        candidates = by_kind[kind]
        legal = next((r for r in candidates if r.get(7).upper() == "L"), None)
        chosen = legal or (candidates[0] if candidates else None)
        return _xpn_group(chosen) if chosen is not None else ""

    groups = [best("A"), best("I"), best("P")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _xcn_name(rep: Repetition) -> str:
    # XCN: ID ^ family ^ given ^ middle ^ suffix ^ prefix ^ degree ^ ...
    suffix = " ".join(p for p in (rep.get(5), rep.get(7)) if p)
    return _pn(_family(rep, 2), rep.get(3), rep.get(4), rep.get(6), suffix)


def _technician_name(rep: Repetition) -> str:
    """OBR-34: in v2.5 NDL the name is the subcomponents of component 1 (ID&family&given&...);
    in v2.3 CN it is components 1-7 (ID^family^given^...)."""
    subs = rep.subcomponents(1)
    if len(subs) > 1:
        parts = subs + [""] * 7
        suffix = " ".join(p for p in (parts[4], parts[6]) if p)
        return _pn(parts[1], parts[2], parts[3], parts[5], suffix)
    return _xcn_name(rep)
