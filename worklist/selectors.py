"""Reads of the worklist. ``orders_for_worklist`` is what the MWL C-FIND SCP serves.

Matching follows PS3.4 C.2.2.2 as Annex K.6.1.2 applies it to the worklist: an empty key
matches everything (universal matching), a value without wildcards must equal the stored value
(single value matching), ``*`` and ``?`` are wildcards, dates and times match ranges, and a UID
key may list several UIDs. Person names are matched case- and accent-insensitively, component by
component: ``DOE`` matches ``DOE^JOHN``. Only orders a modality may still perform (scheduled or
in progress) are ever offered; done and cancelled ones are not.
"""

import re
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from pacsweb.lib.dicom_dates import parse_da_range
from pacsweb.lib.dicom_times import parse_tm_range
from pacsweb.lib.person_names import fold_person_name
from worklist.models import Order

# ScheduledProcedureStepStatus (PS3.3 C.4.10) values for the open order states.
SPS_STATUS = {Order.State.SCHEDULED: "SCHEDULED", Order.State.IN_PROGRESS: "STARTED"}


class InvalidQuery(ValueError):
    """A matching key that cannot be understood (for example a malformed date range)."""


@dataclass
class WorklistQuery:
    """Matching keys as text in DICOM's query syntax; empty means "any"."""

    station_ae_title: str = ""
    modality: str = ""
    start_date: str = ""
    start_time: str = ""
    performing_physician: str = ""
    sps_id: str = ""
    sps_status: str = ""
    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    study_uids: list[str] = field(default_factory=list)


def orders_for_worklist(query: WorklistQuery) -> QuerySet[Order]:
    """Open orders matching ``query``, by scheduled start. Raises InvalidQuery."""
    q = Q(state__in=Order.OPEN_STATES)
    for column, value in (
        ("station_ae_title", query.station_ae_title),
        ("modality", query.modality),
        ("sps_id", query.sps_id),
        ("patient_id", query.patient_id),
        ("accession_number", query.accession_number),
        ("requested_procedure_id", query.requested_procedure_id),
    ):
        q &= _text_q(column, value)
    q &= _name_q("patient_name_norm", query.patient_name)
    q &= _name_q("performing_physician", query.performing_physician, folded=False)
    if query.start_date.strip():
        try:
            first, last = parse_da_range(query.start_date)
        except ValueError as exc:
            raise InvalidQuery(f"Scheduled Procedure Step Start Date: {exc}") from exc
        q &= _range_q("scheduled_date", first, last)
    if query.start_time.strip():
        try:
            first, last = parse_tm_range(query.start_time)
        except ValueError as exc:
            raise InvalidQuery(f"Scheduled Procedure Step Start Time: {exc}") from exc
        q &= _range_q("scheduled_time", first, last)
    if query.sps_status.strip():
        states = [s for s, label in SPS_STATUS.items() if label == query.sps_status.strip()]
        q &= Q(state__in=states)
    uids = [u.strip() for u in query.study_uids if u.strip()]
    if uids:
        q &= Q(study_uid__in=uids)
    return Order.objects.filter(q).order_by("scheduled_date", "scheduled_time", "id")


def _range_q(column: str, first: object, last: object) -> Q:
    q = Q()
    if first is not None:
        q &= Q(**{f"{column}__gte": first})
    if last is not None:
        q &= Q(**{f"{column}__lte": last})
    return q


def _wildcard_regex(pattern: str) -> str:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return "^" + "".join(parts) + "$"


def _text_q(column: str, value: str) -> Q:
    """Single value or wildcard matching, case-sensitive as for AE, CS, SH and LO values."""
    value = value.strip()
    if not value or value.strip("*") == "":
        return Q()
    if "*" in value or "?" in value:
        return Q(**{f"{column}__regex": _wildcard_regex(value)})
    return Q(**{column: value})


def _name_q(column: str, value: str, *, folded: bool = True) -> Q:
    """PN matching: wildcards over the whole name, else the given leading components.

    ``folded`` columns hold ``fold_person_name`` text; others are matched ignoring case only.
    """
    value = fold_person_name(value) if folded else value.strip()
    if not value or value.strip("*") == "":
        return Q()
    i = "" if folded else "i"
    if "*" in value or "?" in value:
        return Q(**{f"{column}__{i}regex": _wildcard_regex(value)})
    exact = f"{column}__iexact" if i else column
    return (
        Q(**{exact: value})
        | Q(**{f"{column}__{i}startswith": value + "^"})
        | Q(**{f"{column}__{i}startswith": value + "="})
    )
