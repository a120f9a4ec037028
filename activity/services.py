"""The only code that writes the activity log: ``record`` for events, plus connection bookkeeping.

Views call ``record(request, kind, ...)``; long actions (downloads) also call ``event_progress`` while
they stream and ``event_finish`` when they end. The session hooks (``activity.signals``) and the
middleware call the connection functions here. Recording must never make a request fail: every
function that runs inside a request logs and swallows its own errors.

Cost per request: recording an event is one INSERT. A connection's ``last_seen_at`` (and the bytes
of the pages it was sent) are written at most once per ``LAST_SEEN_INTERVAL``; until then the time
waits in the session and the bytes in this process's memory.
"""

import contextlib
import datetime
import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import DateTimeField as DateTimeOutput
from django.db.models import ExpressionWrapper, F
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from activity.models import Connection, Event
from pacsweb.lib.client_address import client_address
from pacsweb.lib.person_names import fold_person_name

log = logging.getLogger(__name__)

SESSION_KEY = "activity_connection_id"
# When this session last wrote its connection's last_seen_at (seconds since the epoch).
SESSION_SEEN_KEY = "activity_seen_at"
LAST_SEEN_INTERVAL = datetime.timedelta(seconds=30)
# A running download writes its bytes so far at most this often.
PROGRESS_INTERVAL = datetime.timedelta(seconds=2)


def idle_cutoff(now: datetime.datetime) -> datetime.datetime:
    """Connections last seen before this moment have ended by idle timeout.

    The session expires ``SESSION_COOKIE_AGE`` seconds after its last request. ``last_seen_at`` may
    lag that request by up to ``LAST_SEEN_INTERVAL`` (it is throttled), so a connection counts as
    ended only once its session has certainly expired; otherwise a request could still arrive in a
    connection already marked as closed.
    """
    return now - datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE) - LAST_SEEN_INTERVAL


def _who(request: HttpRequest) -> AbstractBaseUser | None:
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def connection_start(
    request: HttpRequest,
    *,
    user: AbstractBaseUser | None = None,
    study_uid: str = "",
    patient_name: str = "",
) -> Connection:
    """Start a new connection for this request's session and remember it in the session.

    ``user`` defaults to the request's authenticated user; login passes it explicitly because
    ``login()`` only sets ``request.user`` on requests that already have one.
    """
    user = user if user is not None else _who(request)
    if user is not None:
        kind = Connection.Kind.USER
    elif study_uid:
        kind = Connection.Kind.TOKEN
    else:
        kind = Connection.Kind.ANONYMOUS
    session = request.session
    if session.session_key is None:
        session.save()
    now = timezone.now()
    connection = Connection.objects.create(
        kind=kind,
        user=user,
        username=user.get_username() if user is not None else "",
        study_uid=study_uid if user is None else "",
        patient_name=patient_name[:324] if user is None else "",
        session_key=session.session_key or "",
        client_address=client_address(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
        started_at=now,
        last_seen_at=now,
    )
    session[SESSION_KEY] = connection.pk
    session[SESSION_SEEN_KEY] = now.timestamp()
    return connection


def connection_id_for(request: HttpRequest, *, study_uid: str = "", patient_name: str = "") -> int:
    """The id of this request's connection, started on first use.

    The id kept in the session is trusted without a query: a connection ends only when its session
    does (logout flushes it, idle timeout expires it, a new login replaces the id).
    """
    connection_id = request.session.get(SESSION_KEY)
    if connection_id:
        return connection_id
    return connection_start(request, study_uid=study_uid, patient_name=patient_name).pk


def _touch(request: HttpRequest, connection_id: int, *, force: bool = False) -> None:
    """Write last_seen_at and the pages' pending bytes, at most once per LAST_SEEN_INTERVAL."""
    session = request.session
    now = timezone.now()
    seen = session.get(SESSION_SEEN_KEY, 0)
    if not force and now.timestamp() - seen < LAST_SEEN_INTERVAL.total_seconds():
        return
    with _pending_lock:
        pending = _pending_bytes.pop(connection_id, 0)
    Connection.objects.filter(pk=connection_id, ended_at__isnull=True).update(
        last_seen_at=now, bytes_sent=F("bytes_sent") + pending
    )
    session[SESSION_SEEN_KEY] = now.timestamp()


# Bytes of pages sent since a connection's last write, per connection, in this process. Kept in
# memory rather than in the session so that a page does not cost a session write; a process that
# stops loses at most LAST_SEEN_INTERVAL of page bytes (downloads are counted by event_finish).
_pending_bytes: dict[int, int] = {}
_pending_lock = threading.Lock()


def connection_touch(request: HttpRequest, response: HttpResponseBase) -> None:
    """After each response of a recorded session: count the page's bytes, keep last_seen_at fresh.

    Streamed responses (downloads, DICOMweb) are counted by ``event_finish`` instead, which knows
    how many bytes really reached the client.
    """
    try:
        session = getattr(request, "session", None)
        connection_id = session.get(SESSION_KEY) if session is not None else None
        if not connection_id:
            return
        if not response.streaming:
            size = len(response.content)
            with _pending_lock:
                _pending_bytes[connection_id] = _pending_bytes.get(connection_id, 0) + size
        _touch(request, connection_id)
    except Exception:  # noqa: BLE001 - the activity log must never break the page it records.
        log.exception("could not update the activity connection")


def connection_end(request: HttpRequest, *, reason: str) -> None:
    """End the session's connection now (logout, or a new login in the same browser)."""
    try:
        connection_id = request.session.get(SESSION_KEY)
        if not connection_id:
            return
        _touch(request, connection_id, force=True)
        now = timezone.now()
        Connection.objects.filter(pk=connection_id, ended_at__isnull=True).update(
            ended_at=now, end_reason=reason
        )
        for key in (SESSION_KEY, SESSION_SEEN_KEY):
            request.session.pop(key, None)
    except Exception:  # noqa: BLE001 - the activity log must never break the page it records.
        log.exception("could not end the activity connection")


def connection_login(request: HttpRequest, *, user: AbstractBaseUser) -> None:
    """A login: a new connection for the session, which has just been given a new key.

    A connection still open in this session (failed attempts, a patient link) ends here.
    """
    connection_end(request, reason=Connection.EndReason.NEW_LOGIN)
    try:
        with transaction.atomic():
            connection_start(request, user=user)
    except Exception:  # noqa: BLE001 - the activity log must never break a login.
        log.exception("could not start the activity connection of a login")
        return
    record(request, Event.Kind.LOGIN)


def connection_logout(request: HttpRequest) -> None:
    """A logout: its event, then the end of the connection (before the session is flushed)."""
    record(request, Event.Kind.LOGOUT)
    connection_end(request, reason=Connection.EndReason.LOGOUT)


def connections_close_idle(*, now: datetime.datetime | None = None) -> int:
    """Mark connections whose session has expired as ended by idle timeout; returns how many.

    Nothing runs in the background: the lists call this before they read, and so does
    ``prune_activity``. The connection ended when its session expired, which is its last request
    plus the session's age.
    """
    now = now or timezone.now()
    ended_at = ExpressionWrapper(
        F("last_seen_at") + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE),
        output_field=DateTimeOutput(),
    )
    return Connection.objects.filter(
        ended_at__isnull=True, last_seen_at__lt=idle_cutoff(now)
    ).update(ended_at=ended_at, end_reason=Connection.EndReason.IDLE)


def _savepoint_in_transaction() -> contextlib.AbstractContextManager:
    """A savepoint inside a transaction the caller has open, so that a failure here cannot
    break it; outside one, nothing: each statement then commits on its own.

    A transaction of its own took SQLite's write lock at BEGIN IMMEDIATE and held it while
    Python built the INSERT, and other processes' pages waited for it: recording a page took
    3.9 ms (median) and 60 ms (p99) with eight clients at once (bench/load.py's warm-up),
    against 0.5-0.9 ms and 30-41 ms when each statement holds the lock only while SQLite runs it.
    """
    if transaction.get_connection().in_atomic_block:
        return transaction.atomic()
    return contextlib.nullcontext()


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
    """Record one action of the request's connection; returns the event (None if it failed).

    ``kind`` is one of ``Event.Kind``. A download records ``completed=None`` when it starts (with
    ``detail["level"]`` and, if known, ``detail["bytes_total"]``, which the live list turns into a
    progress bar), may report ``event_progress`` while it streams, and ends with ``event_finish``.
    """
    # A connection started here inside the caller's transaction goes with the savepoint if
    # this fails: the session must then forget its id, or every later event would fail too.
    forget_started = False
    try:
        forget_started = (
            transaction.get_connection().in_atomic_block and SESSION_KEY not in request.session
        )
        with _savepoint_in_transaction():
            connection_id = connection_id_for(
                request, study_uid=study_uid, patient_name=patient_name
            )
            event = Event.objects.create(
                connection_id=connection_id,
                at=timezone.now(),
                kind=kind,
                study_uid=study_uid,
                patient_name=patient_name[:324],
                patient_search=fold_person_name(patient_name)[:324],
                detail=detail or {},
                bytes_sent=bytes_sent,
                completed=completed,
            )
            _touch(request, connection_id)
        return event
    except Exception:  # noqa: BLE001 - the activity log must never break the page it records.
        log.exception("could not record activity %s", kind)
        if forget_started:
            for key in (SESSION_KEY, SESSION_SEEN_KEY):
                request.session.pop(key, None)
        return None


def event_progress(event: Event | None, *, bytes_sent: int) -> None:
    """Show a running download's bytes so far in the live view; cheap to call for every chunk.

    The row is written at most once per ``PROGRESS_INTERVAL``; the time of the last write is kept
    on the event object that the streaming code holds.
    """
    if event is None:
        return
    try:
        now = timezone.now()
        written = getattr(event, "_progress_written_at", None)
        if written is not None and now - written < PROGRESS_INTERVAL:
            return
        Event.objects.filter(pk=event.pk, completed__isnull=True).update(bytes_sent=bytes_sent)
        event._progress_written_at = now
        event.bytes_sent = bytes_sent
    except Exception:  # noqa: BLE001 - the activity log must never break the download it records.
        log.exception("could not record the progress of activity event %s", event.pk)


def event_finish(event: Event | None, *, bytes_sent: int, completed: bool) -> None:
    """Close a long action (a download) with the bytes that actually reached the client."""
    if event is None:
        return
    try:
        with transaction.atomic():
            Event.objects.filter(pk=event.pk).update(bytes_sent=bytes_sent, completed=completed)
            Connection.objects.filter(pk=event.connection_id).update(
                bytes_sent=F("bytes_sent") + bytes_sent, last_seen_at=timezone.now()
            )
        event.bytes_sent = bytes_sent
        event.completed = completed
    except Exception:  # noqa: BLE001 - the activity log must never break the download it records.
        log.exception("could not finish activity event %s", event.pk)


def activity_prune(
    *,
    before: datetime.datetime,
    batch_size: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[int, int]:
    """Delete events older than ``before``, then the connections with nothing left after it.

    Deletes in batches of ``batch_size`` rows, each its own transaction, so a large backlog never
    holds a long lock; ``progress(table, deleted_so_far)`` is called after every batch. Returns
    (events deleted, connections deleted).
    """
    connections_close_idle()
    totals = {"events": 0, "connections": 0}
    querysets = {
        "events": Event.objects.filter(at__lt=before),
        # A connection goes once it ended before the cut-off (idle ones were just closed above);
        # its events are older than its end, so none is left to go with it.
        "connections": Connection.objects.filter(ended_at__lt=before),
    }
    for table, queryset in querysets.items():
        model = queryset.model
        while True:
            with transaction.atomic():
                ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                model.objects.filter(pk__in=ids).delete()
            totals[table] += len(ids)
            if progress is not None:
                progress(table, totals[table])
    return totals["events"], totals["connections"]
