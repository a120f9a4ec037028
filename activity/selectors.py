"""Reads of the activity log for the admin's lists, the detail page, the chart and the CSV export.

Every list is ordered on an indexed column and paginated by the caller, and every per-row value
(last action, running download, number of events) is fetched for the page's rows in one query, so
a page costs the same few queries whether the log holds a hundred connections or a million.
"""

import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from activity.models import Connection, Event
from activity.services import idle_cutoff
from pacsweb.lib.person_names import fold_person_name


@dataclass(frozen=True)
class ReportFilters:
    """What the HTTP Server Report (and its CSV export) is narrowed to; empty values mean any."""

    user: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    kind: str = ""
    action: str = ""
    address: str = ""
    patient: str = ""
    study: str = ""


def _with_last_action(queryset: QuerySet[Connection]) -> QuerySet[Connection]:
    latest = Event.objects.filter(connection=OuterRef("pk")).order_by("-at", "-pk")
    return queryset.annotate(
        last_action=Subquery(latest.values("kind")[:1]),
        last_action_at=Subquery(latest.values("at")[:1]),
    )


def connections_active(*, now: datetime.datetime | None = None) -> QuerySet[Connection]:
    """Open connections whose session has not expired, most recently seen first."""
    now = now or timezone.now()
    queryset = Connection.objects.filter(
        ended_at__isnull=True, last_seen_at__gte=idle_cutoff(now)
    ).select_related("user")
    return _with_last_action(queryset).order_by("-last_seen_at", "-pk")


def connections_recent(*, now: datetime.datetime | None = None) -> QuerySet[Connection]:
    """Connections that closed today (in the server's time zone), most recently closed first."""
    now = now or timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    queryset = Connection.objects.filter(
        ended_at__gte=start_of_day, ended_at__lte=now
    ).select_related("user")
    return _with_last_action(queryset).order_by("-ended_at", "-pk")


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def connections_report(filters: ReportFilters) -> QuerySet[Connection]:
    """All connections matching the report's filters, newest first."""
    queryset = Connection.objects.select_related("user")
    if filters.user:
        queryset = queryset.filter(
            Q(username__icontains=filters.user) | Q(user__real_name__icontains=filters.user)
        )
    if filters.date_from:
        queryset = queryset.filter(started_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        next_day = filters.date_to + datetime.timedelta(days=1)
        queryset = queryset.filter(started_at__lt=_day_start(next_day))
    if filters.kind:
        queryset = queryset.filter(kind=filters.kind)
    if filters.address:
        queryset = queryset.filter(client_address__startswith=filters.address)
    events = Event.objects.filter(connection=OuterRef("pk"))
    if filters.action:
        queryset = queryset.filter(Exists(events.filter(kind=filters.action)))
    if filters.patient:
        folded = fold_person_name(filters.patient)
        queryset = queryset.filter(Exists(events.filter(patient_search__contains=folded)))
    if filters.study:
        study = filters.study.strip()
        queryset = queryset.filter(Q(study_uid=study) | Exists(events.filter(study_uid=study)))
    return queryset.order_by("-started_at", "-pk")


def event_counts(connection_ids: Iterable[int]) -> dict[int, int]:
    """How many events each of these connections has (one query for a page of rows)."""
    rows = (
        Event.objects.filter(connection_id__in=list(connection_ids))
        .values("connection_id")
        .annotate(n=Count("pk"))
        .values_list("connection_id", "n")
    )
    return dict(rows)


def running_downloads(connection_ids: Iterable[int]) -> dict[int, Event]:
    """The latest download still streaming in each of these connections (one query)."""
    events = Event.objects.filter(
        connection_id__in=list(connection_ids),
        kind=Event.Kind.DOWNLOAD,
        completed__isnull=True,
    ).order_by("at", "pk")
    # Later downloads overwrite earlier ones: the one shown is the most recent.
    return {event.connection_id: event for event in events}


def connection_events(connection: Connection) -> QuerySet[Event]:
    """Every event of one connection, in the order they happened."""
    return Event.objects.filter(connection=connection).order_by("at", "pk")


@dataclass(frozen=True)
class HourBucket:
    start: datetime.datetime
    connections: int
    bytes_sent: int


def activity_per_hour(*, now: datetime.datetime | None = None, hours: int = 24) -> list[HourBucket]:
    """New connections and bytes served in each of the last ``hours`` hours (this one included).

    Bytes are those of the events (downloads and other recorded transfers), counted in the hour
    the transfer started. Two grouped queries, whatever the size of the log.
    """
    now = now or timezone.now()
    zone = timezone.get_current_timezone()
    current = timezone.localtime(now, zone).replace(minute=0, second=0, microsecond=0)
    first = current - datetime.timedelta(hours=hours - 1)
    starts = [first + datetime.timedelta(hours=i) for i in range(hours)]
    connections = dict(
        Connection.objects.filter(started_at__gte=first)
        .annotate(hour=TruncHour("started_at", tzinfo=zone))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
        .order_by()
    )
    sent = dict(
        Event.objects.filter(at__gte=first)
        .annotate(hour=TruncHour("at", tzinfo=zone))
        .values("hour")
        .annotate(total=Sum("bytes_sent"))
        .values_list("hour", "total")
        .order_by()
    )
    return [
        HourBucket(start=s, connections=connections.get(s, 0), bytes_sent=sent.get(s) or 0)
        for s in starts
    ]


def events_for_export(filters: ReportFilters) -> Iterator[Event]:
    """Every event of the report's connections, oldest first, streamed in chunks."""
    connections = connections_report(filters).order_by().values("pk")
    return (
        Event.objects.filter(connection__in=connections)
        .select_related("connection")
        .order_by("at", "pk")
        .iterator(chunk_size=2000)
    )
