"""prune_activity: deletes what is older than the retention period, in batches, with progress."""

import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.utils import timezone

from activity import services
from activity.models import Connection, Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(clock, physician, session_request) -> dict[str, int]:
    """A connection 400 days ago (ended by logout), one 100 days ago, one today."""
    ids = {}
    for name, days_ago in (("old", 400), ("middle", 100), ("today", 0)):
        clock.now = clock.now - datetime.timedelta(days=days_ago)
        request = session_request(user=physician)
        for _ in range(3):
            services.record(request, Event.Kind.SEARCH)
        ids[name] = request.session[services.SESSION_KEY]
        if days_ago:
            services.connection_end(request, reason=Connection.EndReason.LOGOUT)
        clock.now = clock.now + datetime.timedelta(days=days_ago)
    return ids


def _run(*args: str) -> str:
    out = StringIO()
    call_command("prune_activity", *args, stdout=out)
    return out.getvalue()


def test_default_retention_keeps_a_year(history, settings):
    settings.ACTIVITY_RETENTION_DAYS = 365
    output = _run()
    assert set(Connection.objects.values_list("pk", flat=True)) == {
        history["middle"],
        history["today"],
    }
    assert Event.objects.count() == 6
    assert "Deleted 3 events and 1 connections." in output


def test_days_override_and_batches_report_progress(history):
    output = _run("--days", "30", "--batch-size", "2")
    assert set(Connection.objects.values_list("pk", flat=True)) == {history["today"]}
    assert Event.objects.count() == 3
    assert "events: 2 deleted so far" in output and "events: 6 deleted so far" in output
    assert "connections: 2 deleted so far" in output


def test_idle_connections_are_closed_first_and_then_pruned(clock, physician, session_request):
    clock.now = clock.now - datetime.timedelta(days=50)
    services.record(session_request(user=physician), Event.Kind.SEARCH)
    clock.now = clock.now + datetime.timedelta(days=50)
    _run("--days", "30")
    assert not Connection.objects.exists()


def test_an_open_connection_keeps_its_row_while_old_events_go(clock, physician, session_request):
    request = session_request(user=physician)
    services.record(request, Event.Kind.SEARCH)
    clock.advance(days=40)
    # The session stayed in use (as SESSION_SAVE_EVERY_REQUEST allows) until now.
    services.connection_touch(request, HttpResponse(b"a page"))
    services.record(request, Event.Kind.STUDY_VIEWED)
    _run("--days", "30")
    conn = Connection.objects.get()
    assert conn.ended_at is None
    assert list(conn.events.values_list("kind", flat=True)) == ["study_viewed"]
    assert conn.last_seen_at == timezone.now()


def test_bad_arguments_are_refused(db):
    with pytest.raises(CommandError, match="at least 1"):
        _run("--days", "0")
    with pytest.raises(CommandError, match="batch-size"):
        _run("--batch-size", "0")
