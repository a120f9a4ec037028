"""The report's CSV export: one row per event, with its connection's who, where and when."""

import csv
import json
from collections.abc import Iterable, Iterator

from django.utils import timezone

from activity.models import Event

HEADER = [
    "connection",
    "connection kind",
    "user",
    "patient link study",
    "client address",
    "browser",
    "connection started",
    "connection ended",
    "end reason",
    "time",
    "action",
    "study instance uid",
    "patient name",
    "detail",
    "bytes sent",
    "outcome",
]

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """Make a text cell inert in spreadsheets by prefixing a quote; numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _time(value) -> str:
    return timezone.localtime(value).isoformat(timespec="seconds") if value else ""


def _outcome(event: Event) -> str:
    if event.kind != Event.Kind.DOWNLOAD:
        return ""
    if event.completed is None:
        return "running"
    return "completed" if event.completed else "cut off"


def _row(event: Event) -> list[object]:
    connection = event.connection
    return [
        connection.pk,
        connection.get_kind_display(),
        connection.username,
        connection.study_uid,
        connection.client_address,
        connection.user_agent,
        _time(connection.started_at),
        _time(connection.ended_at),
        connection.get_end_reason_display(),
        _time(event.at),
        event.get_kind_display(),
        event.study_uid,
        event.patient_name,
        json.dumps(event.detail, ensure_ascii=False, sort_keys=True) if event.detail else "",
        event.bytes_sent,
        _outcome(event),
    ]


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(events: Iterable[Event]) -> Iterator[str]:
    """The CSV text, a line at a time, every text cell neutralised."""
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    for event in events:
        yield writer.writerow([neutralise(cell) for cell in _row(event)])
