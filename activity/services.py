"""``record`` is the one way anything writes to the activity log.

Recording must never make a request fail: errors are logged and swallowed.
"""

import logging

from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from activity.models import Connection, Event
from pacsweb.lib.client_address import client_address

log = logging.getLogger(__name__)

SESSION_KEY = "activity_connection_id"


def connection_for(request: HttpRequest, *, study_uid: str = "") -> Connection:
    """The connection of this request's session, started on first use."""
    session = request.session
    connection_id = session.get(SESSION_KEY)
    if connection_id:
        connection = Connection.objects.filter(pk=connection_id, ended_at__isnull=True).first()
        if connection is not None:
            return connection
    user = (
        request.user if getattr(request, "user", None) and request.user.is_authenticated else None
    )
    if user is not None:
        kind = Connection.Kind.USER
    elif study_uid:
        kind = Connection.Kind.TOKEN
    else:
        kind = Connection.Kind.ANONYMOUS
    if session.session_key is None:
        session.save()
    now = timezone.now()
    connection = Connection.objects.create(
        kind=kind,
        user=user,
        study_uid=study_uid,
        session_key=session.session_key or "",
        client_address=client_address(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
        started_at=now,
        last_seen_at=now,
    )
    session[SESSION_KEY] = connection.pk
    return connection


def record(
    request: HttpRequest,
    kind: str,
    *,
    study_uid: str = "",
    patient_name: str = "",
    detail: dict | None = None,
    bytes_sent: int = 0,
    completed: bool | None = None,
) -> Event | None:
    """Record one action of the request's connection; returns the event (None if it failed)."""
    try:
        connection = connection_for(request, study_uid=study_uid)
        now = timezone.now()
        Connection.objects.filter(pk=connection.pk).update(last_seen_at=now)
        return Event.objects.create(
            connection=connection,
            at=now,
            kind=kind,
            study_uid=study_uid,
            patient_name=patient_name[:324],
            detail=detail or {},
            bytes_sent=bytes_sent,
            completed=completed,
        )
    except Exception:  # noqa: BLE001 - the activity log must never break the page it records.
        log.exception("could not record activity %s", kind)
        return None


def event_finish(event: Event | None, *, bytes_sent: int, completed: bool) -> None:
    """Close a long action (a download) with the bytes that actually reached the client."""
    if event is None:
        return
    try:
        Event.objects.filter(pk=event.pk).update(bytes_sent=bytes_sent, completed=completed)
        Connection.objects.filter(pk=event.connection_id).update(
            bytes_sent=F("bytes_sent") + bytes_sent, last_seen_at=timezone.now()
        )
    except Exception:  # noqa: BLE001 - the activity log must never break the page it records.
        log.exception("could not finish activity event %s", event.pk)
