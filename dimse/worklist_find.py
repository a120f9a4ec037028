"""The Modality Worklist C-FIND SCP (PS3.4 Annex K): scanners ask what to do next.

``handle_worklist_find`` is bound to ``evt.EVT_C_FIND`` for the Modality Worklist Information
Model - FIND SOP class. It reads the matching keys from the identifier (top level and the
Scheduled Procedure Step Sequence item), asks ``worklist.selectors.orders_for_worklist`` for the
open orders that match, and answers one Pending response per order carrying exactly the
attributes the identifier asked for (PS3.4 C.2.2.1.2; unknown ones come back empty), then
Success. A C-CANCEL stops the responses with status Cancel.
"""

import logging
from collections.abc import Callable, Iterator

from django.db import close_old_connections
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pynetdicom.events import Event

from worklist.models import Order
from worklist.selectors import SPS_STATUS, InvalidQuery, WorklistQuery, orders_for_worklist

log = logging.getLogger(__name__)

PENDING = 0xFF00
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
UNABLE_TO_PROCESS = 0xC000
# More matches than this are refused rather than cut short silently: the modality is told to
# narrow its query (by date or AE title, as they normally do).
MAX_MATCHES = 2000
ERROR_COMMENT_MAX = 64
UTF8 = "ISO_IR 192"


def _date(value: object) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _time(value: object) -> str:
    if not value:
        return ""
    return value.strftime("%H%M%S") + (f".{value.microsecond:06d}" if value.microsecond else "")


def _codes(items: list[dict[str, str]]) -> list[Dataset]:
    out = []
    for item in items:
        ds = Dataset()
        ds.CodeValue = item["value"]
        ds.CodingSchemeDesignator = item["scheme"]
        ds.CodeMeaning = item["meaning"]
        out.append(ds)
    return out


Getter = Callable[[Order], object]

# Attributes of the worklist item: the requested procedure, imaging service request, patient
# and visit (PS3.4 K.6.1.2.2), each as the order holds it.
ITEM_VALUES: dict[str, Getter] = {
    "PatientName": lambda o: o.patient_name,
    "PatientID": lambda o: o.patient_id,
    "IssuerOfPatientID": lambda o: o.issuer_of_patient_id,
    "PatientBirthDate": lambda o: _date(o.patient_birth_date),
    "PatientSex": lambda o: o.patient_sex,
    "AccessionNumber": lambda o: o.accession_number,
    "ReferringPhysicianName": lambda o: o.referring_physician,
    "RequestingPhysician": lambda o: o.requesting_physician,
    "PlacerOrderNumberImagingServiceRequest": lambda o: o.placer_order_number,
    "FillerOrderNumberImagingServiceRequest": lambda o: o.filler_order_number,
    "AdmissionID": lambda o: o.admission_id,
    "StudyInstanceUID": lambda o: o.study_uid,
    "RequestedProcedureID": lambda o: o.requested_procedure_id,
    "RequestedProcedureDescription": lambda o: o.requested_procedure_description,
    "RequestedProcedurePriority": lambda o: o.requested_procedure_priority,
    "RequestedProcedureCodeSequence": lambda o: _codes(o.requested_procedure_codes),
}
# Attributes of the Scheduled Procedure Step Sequence item (PS3.3 C.4.10).
STEP_VALUES: dict[str, Getter] = {
    "ScheduledStationAETitle": lambda o: o.station_ae_title,
    "ScheduledStationName": lambda o: o.station_name,
    "ScheduledProcedureStepLocation": lambda o: o.sps_location,
    "ScheduledProcedureStepStartDate": lambda o: _date(o.scheduled_date),
    "ScheduledProcedureStepStartTime": lambda o: _time(o.scheduled_time),
    "Modality": lambda o: o.modality,
    "ScheduledPerformingPhysicianName": lambda o: o.performing_physician,
    "ScheduledProcedureStepDescription": lambda o: o.sps_description,
    "ScheduledProcedureStepID": lambda o: o.sps_id,
    "ScheduledProcedureStepStatus": lambda o: SPS_STATUS.get(o.state, ""),
    "ScheduledProtocolCodeSequence": lambda o: _codes(o.protocol_codes),
}
STEP_SEQUENCE = "ScheduledProcedureStepSequence"

# Matching keys: the identifier keyword and the WorklistQuery field it fills.
ITEM_KEYS = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "AccessionNumber": "accession_number",
    "RequestedProcedureID": "requested_procedure_id",
}
STEP_KEYS = {
    "ScheduledStationAETitle": "station_ae_title",
    "Modality": "modality",
    "ScheduledProcedureStepStartDate": "start_date",
    "ScheduledProcedureStepStartTime": "start_time",
    "ScheduledPerformingPhysicianName": "performing_physician",
    "ScheduledProcedureStepID": "sps_id",
    "ScheduledProcedureStepStatus": "sps_status",
}


def handle_worklist_find(event: Event) -> Iterator[tuple[int, Dataset | None]]:
    """Answer one MWL C-FIND request: Pending per matching order, then Success (or Cancel)."""
    # pynetdicom runs each association on its own thread, whose connection may have gone stale
    # between two requests (healthchecks' guard for its SMTP listener).
    close_old_connections()
    try:
        identifier = event.identifier
        query = worklist_query(identifier)
        orders = list(orders_for_worklist(query)[: MAX_MATCHES + 1])
    except InvalidQuery as exc:
        yield _status(UNABLE_TO_PROCESS, str(exc)), None
        return
    except Exception:
        log.exception("worklist C-FIND from %s failed", event.assoc.requestor.ae_title)
        yield _status(UNABLE_TO_PROCESS, "internal error in the worklist"), None
        return
    if len(orders) > MAX_MATCHES:
        yield _status(OUT_OF_RESOURCES, f"more than {MAX_MATCHES} items; narrow the query"), None
        return
    for order in orders:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, worklist_item(identifier, order)


def worklist_query(identifier: Dataset) -> WorklistQuery:
    """The matching keys of an MWL identifier. Raises InvalidQuery."""
    query = WorklistQuery()
    for keyword, name in ITEM_KEYS.items():
        setattr(query, name, _single(identifier, keyword))
    if "StudyInstanceUID" in identifier:
        value = identifier.StudyInstanceUID
        query.study_uids = (
            [str(v) for v in value] if isinstance(value, MultiValue) else [str(value or "")]
        )
    steps = identifier.get(STEP_SEQUENCE)
    if steps:
        for keyword, name in STEP_KEYS.items():
            setattr(query, name, _single(steps[0], keyword))
    return query


def _single(ds: Dataset, keyword: str) -> str:
    if keyword not in ds:
        return ""
    value = ds[keyword].value
    if isinstance(value, MultiValue):
        raise InvalidQuery(f"{keyword} has {len(value)} values; one is allowed")
    return "" if value is None else str(value)


def worklist_item(identifier: Dataset, order: Order) -> Dataset:
    """The response identifier for ``order``: each requested attribute, with its value."""
    ds = _fill(identifier, order, ITEM_VALUES)
    if any(not v.isascii() for v in _strings(ds)):
        ds.SpecificCharacterSet = UTF8
    return ds


def _fill(query: Dataset, order: Order, values: dict[str, Getter]) -> Dataset:
    ds = Dataset()
    for elem in query:
        keyword = elem.keyword
        if keyword == "SpecificCharacterSet":
            continue
        if keyword == STEP_SEQUENCE:
            ds.add(DataElement(elem.tag, "SQ", Sequence([_step(elem.value, order)])))
        elif keyword in values:
            value = values[keyword](order)
            if elem.VR == "SQ":
                value = Sequence([_select(item, elem.value) for item in value])
            ds.add(DataElement(elem.tag, elem.VR, value if value != "" else None))
        else:
            # Asked for but not kept: returned empty, as a Type 2 attribute without a value.
            ds.add(DataElement(elem.tag, elem.VR, Sequence() if elem.VR == "SQ" else None))
    return ds


def _step(query_items: Sequence, order: Order) -> Dataset:
    if query_items:
        return _fill(query_items[0], order, STEP_VALUES)
    # An empty sequence is universal matching (PS3.4 C.2.2.2.6): the whole item comes back.
    ds = Dataset()
    for keyword, getter in STEP_VALUES.items():
        value = getter(order)
        setattr(ds, keyword, value if value != "" else None)
    return ds


def _select(item: Dataset, query_items: Sequence) -> Dataset:
    """A code item cut down to the attributes the query's item names (all if it names none)."""
    if not query_items or len(query_items[0]) == 0:
        return item
    wanted = {elem.keyword for elem in query_items[0]}
    out = Dataset()
    for elem in item:
        if elem.keyword in wanted:
            out.add(elem)
    return out


def _strings(ds: Dataset) -> Iterator[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _strings(item)
        elif elem.value is not None and not isinstance(elem.value, bytes):
            yield str(elem.value)


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    # The comment may quote what the peer sent: default repertoire only, no backslash.
    safe = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in comment)
    ds.ErrorComment = safe[:ERROR_COMMENT_MAX]
    return ds
