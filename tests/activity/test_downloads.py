"""event_progress and event_finish: a download's life in the log (pages: test_download_pages)."""

import pytest

from activity import selectors, services
from activity.models import Connection, Event

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


def _download(request, *, total: int) -> Event:
    return services.record(
        request,
        Event.Kind.DOWNLOAD,
        study_uid="1.2.840.5",
        patient_name="DOE^JOHN",
        detail={"level": "study", "bytes_total": total},
    )


def test_a_cut_off_download_is_incomplete_with_the_bytes_actually_sent(physician, session_request):
    request = session_request(user=physician)
    event = _download(request, total=10 * CHUNK)
    assert Event.objects.get(pk=event.pk).completed is None

    services.event_finish(event, bytes_sent=3 * CHUNK + 17, completed=False)

    stored = Event.objects.get(pk=event.pk)
    assert stored.completed is False
    assert stored.bytes_sent == 3 * CHUNK + 17
    assert Connection.objects.get().bytes_sent == 3 * CHUNK + 17
    assert not selectors.running_downloads([stored.connection_id])


def test_progress_is_written_at_most_every_two_seconds(physician, session_request, clock):
    request = session_request(user=physician)
    event = _download(request, total=10 * CHUNK)

    services.event_progress(event, bytes_sent=CHUNK)
    assert Event.objects.get(pk=event.pk).bytes_sent == CHUNK
    clock.advance(seconds=1)
    services.event_progress(event, bytes_sent=2 * CHUNK)
    assert Event.objects.get(pk=event.pk).bytes_sent == CHUNK
    clock.advance(seconds=1.5)
    services.event_progress(event, bytes_sent=3 * CHUNK)
    assert Event.objects.get(pk=event.pk).bytes_sent == 3 * CHUNK
    assert selectors.running_downloads([event.connection_id])[event.connection_id].pk == event.pk


def test_progress_after_the_end_does_not_reopen_the_download(physician, session_request):
    request = session_request(user=physician)
    event = _download(request, total=10 * CHUNK)
    services.event_finish(event, bytes_sent=10 * CHUNK, completed=True)
    services.event_progress(Event.objects.get(pk=event.pk), bytes_sent=CHUNK)

    stored = Event.objects.get(pk=event.pk)
    assert stored.completed is True and stored.bytes_sent == 10 * CHUNK


def test_calls_with_no_event_do_nothing(db):
    """record() returns None when it could not record; the streaming code passes that on."""
    services.event_progress(None, bytes_sent=1)
    services.event_finish(None, bytes_sent=1, completed=True)
    assert not Event.objects.exists()
