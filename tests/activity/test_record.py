"""activity.services: every kind of action becomes the right event in the right connection."""

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from activity import services
from activity.models import Connection, Event
from tests.activity.conftest import CHROME, FIREFOX, PASSWORD, log_in

pytestmark = pytest.mark.django_db


# Log in, failed log in, log out: through the real login page ------------------------------------


def test_login_starts_a_user_connection_with_address_browser_and_event(physician):
    client = log_in(physician, address="192.0.2.10", agent=FIREFOX)

    conn = Connection.objects.get()
    assert conn.kind == Connection.Kind.USER
    assert conn.user == physician and conn.username == "drhouse"
    assert conn.client_address == "192.0.2.10"
    assert conn.user_agent == FIREFOX
    assert conn.session_key == client.session.session_key
    assert conn.ended_at is None
    assert list(conn.events.values_list("kind", flat=True)) == [Event.Kind.LOGIN]


def test_failed_login_is_recorded_with_the_name_tried_and_never_the_password(physician):
    client = Client(REMOTE_ADDR="198.51.100.7")
    response = client.post("/login/", {"username": "drhouse", "password": "not-the-password"})
    assert response.status_code == 200

    event = Event.objects.get()
    assert event.kind == Event.Kind.LOGIN_FAILED
    assert event.detail == {"username": "drhouse"}
    assert "not-the-password" not in str(Event.objects.values_list("detail", flat=True)[0])
    assert event.connection.kind == Connection.Kind.ANONYMOUS
    assert event.connection.client_address == "198.51.100.7"


def test_login_after_failed_attempts_ends_the_anonymous_connection_and_starts_a_new_one(physician):
    client = Client(REMOTE_ADDR="10.0.0.5", HTTP_USER_AGENT=CHROME)
    client.post("/login/", {"username": "drhouse", "password": "wrong"})
    anonymous = Connection.objects.get()
    client.post("/login/", {"username": "drhouse", "password": PASSWORD})

    anonymous.refresh_from_db()
    assert anonymous.ended_at is not None
    assert anonymous.end_reason == Connection.EndReason.NEW_LOGIN
    user_conn = Connection.objects.get(kind=Connection.Kind.USER)
    assert user_conn.session_key == client.session.session_key != anonymous.session_key
    assert user_conn.ended_at is None


def test_logout_records_the_event_and_ends_the_connection(physician):
    client = log_in(physician)
    response = client.post("/logout/")
    assert response.status_code == 302

    conn = Connection.objects.get()
    assert conn.end_reason == Connection.EndReason.LOGOUT
    assert conn.ended_at is not None
    assert list(conn.events.values_list("kind", flat=True)) == ["login", "logout"]


def test_force_login_of_the_test_client_is_a_login_too(physician):
    client = Client()
    client.force_login(physician)
    conn = Connection.objects.get()
    assert conn.kind == Connection.Kind.USER and conn.username == "drhouse"
    assert conn.session_key == client.session.session_key


def test_a_second_login_in_the_same_browser_replaces_the_connection(physician):
    client = log_in(physician)
    first = Connection.objects.get()
    # The login page sends a logged-in user on; a login by other means (single sign-on, the test
    # client) can still happen in a session that has a connection.
    client.force_login(physician)

    first.refresh_from_db()
    assert first.end_reason == Connection.EndReason.NEW_LOGIN
    assert Connection.objects.filter(ended_at__isnull=True).count() == 1


# The actions other apps record from their views ---------------------------------------------------

ACTIONS = [
    (Event.Kind.SEARCH, {"patient_name": "DOE*", "study_date": "20240101-"}),
    (Event.Kind.PATIENT_VIEWED, {"patient_id": "PAT001"}),
    (Event.Kind.STUDY_VIEWED, {}),
    (Event.Kind.SERIES_VIEWED, {"series_uid": "1.2.3.4.5"}),
    (Event.Kind.UPLOAD, {"files": 3, "stored": 2, "duplicate": 1, "rejected": 0}),
    (Event.Kind.REPORT_ATTACHED, {"file": "report.pdf"}),
    (Event.Kind.VIEWER_OPENED, {"viewer": "ohif"}),
    (Event.Kind.DICOMWEB, {"service": "QIDO-RS", "path": "/dicomweb/studies"}),
]


@pytest.mark.parametrize(("kind", "detail"), ACTIONS, ids=[k for k, _ in ACTIONS])
def test_each_action_of_a_web_user_is_an_event_of_the_users_connection(
    kind, detail, physician, session_request
):
    request = session_request(user=physician)
    event = services.record(
        request, kind, study_uid="1.2.840.1", patient_name="MÜLLER^ANNA", detail=detail
    )

    assert event is not None
    stored = Event.objects.get()
    assert stored.kind == kind and stored.detail == detail
    assert stored.study_uid == "1.2.840.1" and stored.patient_name == "MÜLLER^ANNA"
    assert stored.patient_search == "muller^anna"
    assert stored.connection.kind == Connection.Kind.USER
    assert stored.connection.username == "drhouse"
    assert stored.connection.client_address == "10.9.8.7"


def test_download_records_level_study_and_running_state(physician, session_request):
    request = session_request(user=physician)
    event = services.record(
        request,
        Event.Kind.DOWNLOAD,
        study_uid="1.2.3",
        patient_name="DOE^JOHN",
        detail={"level": "study", "bytes_total": 1000},
    )
    stored = Event.objects.get(pk=event.pk)
    assert stored.kind == "download" and stored.completed is None and stored.is_running
    assert stored.detail["level"] == "study"


def test_token_page_starts_a_patient_link_connection(session_request):
    request = session_request(address="203.0.113.4")
    services.record(request, Event.Kind.TOKEN_PAGE, study_uid="1.2.3.4", patient_name="DOE^JANE")
    services.record(request, Event.Kind.VIEWER_OPENED, study_uid="1.2.3.4")

    conn = Connection.objects.get()
    assert conn.kind == Connection.Kind.TOKEN
    assert conn.study_uid == "1.2.3.4" and conn.patient_name == "DOE^JANE"
    assert conn.user is None and conn.username == ""
    assert list(conn.events.values_list("kind", flat=True)) == ["token_page", "viewer_opened"]


def test_events_of_one_session_share_its_connection_and_other_sessions_get_their_own(
    physician, session_request
):
    first = session_request(user=physician)
    second = session_request(user=physician, address="10.0.0.2")
    services.record(first, Event.Kind.SEARCH)
    services.record(first, Event.Kind.STUDY_VIEWED)
    services.record(second, Event.Kind.SEARCH)

    assert Connection.objects.count() == 2
    counts = sorted(c.events.count() for c in Connection.objects.all())
    assert counts == [1, 2]


# Cost and safety -----------------------------------------------------------------------------------


def _statements(queries: list[dict]) -> list[str]:
    """The SQL that does work (savepoints are bookkeeping of the test's own transaction)."""
    return [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"].upper()]


def test_recording_in_an_existing_connection_is_one_insert(physician, session_request, clock):
    request = session_request(user=physician)
    services.record(request, Event.Kind.SEARCH)
    clock.advance(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        services.record(request, Event.Kind.STUDY_VIEWED, study_uid="1.2.3")
    statements = _statements(queries.captured_queries)
    assert len(statements) == 1
    assert statements[0].upper().startswith("INSERT")


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_opens_none(physician, session_request, clock):
    # A transaction of its own would hold SQLite's write lock while Python builds the INSERT,
    # keeping other processes' pages waiting; the single INSERT commits on its own.
    request = session_request(user=physician)
    services.record(request, Event.Kind.SEARCH)
    clock.advance(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        services.record(request, Event.Kind.STUDY_VIEWED, study_uid="1.2.3")
    statements = [q["sql"].upper() for q in queries.captured_queries]
    assert len(statements) == 1
    assert statements[0].startswith("INSERT")
    assert not connection.in_atomic_block
    assert Event.objects.filter(kind=Event.Kind.STUDY_VIEWED, study_uid="1.2.3").exists()


@pytest.mark.django_db(transaction=True)
def test_a_failure_to_record_the_first_event_keeps_the_sessions_connection(
    physician, session_request
):
    # The connection started for the failed event is committed on its own, so the id the
    # session now holds stays valid for the next event.
    request = session_request(user=physician)
    assert services.record(request, Event.Kind.SEARCH, detail={"bad": object()}) is None
    assert services.record(request, Event.Kind.SEARCH) is not None
    assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_event_in_a_views_transaction_leaves_no_stale_connection_id(
    physician, session_request
):
    # Inside the view's transaction the connection goes with the failed event's savepoint:
    # the session must not keep its id, or every later event of the session would fail.
    request = session_request(user=physician)
    with transaction.atomic():
        assert services.record(request, Event.Kind.SEARCH, detail={"bad": object()}) is None
    assert not Connection.objects.exists()
    assert services.record(request, Event.Kind.SEARCH) is not None
    assert Event.objects.get().connection_id == Connection.objects.get().pk


def test_last_seen_is_written_at_most_every_30_seconds(physician, clock):
    client = log_in(physician)
    conn = Connection.objects.get()
    started = conn.last_seen_at

    clock.advance(seconds=10)
    client.get("/studies/")
    conn.refresh_from_db()
    assert conn.last_seen_at == started

    seen = clock.advance(seconds=25)
    client.get("/studies/")
    conn.refresh_from_db()
    assert conn.last_seen_at == seen


def test_bytes_of_pages_are_added_to_the_connection(physician, clock):
    client = log_in(physician)
    sizes = []
    for _ in range(3):
        clock.advance(seconds=20)
        sizes.append(len(client.get("/studies/").content))
    conn = Connection.objects.get()
    # The third page came 40 s after the last write: the first two are written, the third waits.
    assert conn.bytes_sent == sum(sizes[:2])
    client.post("/logout/")
    conn.refresh_from_db()
    assert conn.bytes_sent == sum(sizes)


def test_anonymous_pages_create_no_connection(db):
    client = Client()
    client.get("/")
    client.get("/login/")
    assert not Connection.objects.exists()


def test_a_failure_to_record_returns_none_and_keeps_the_views_transaction_usable(
    physician, session_request, caplog
):
    request = session_request(user=physician)
    services.record(request, Event.Kind.SEARCH)
    with transaction.atomic():
        # A value JSON cannot hold: the insert fails inside record().
        assert services.record(request, Event.Kind.SEARCH, detail={"bad": object()}) is None
        # The surrounding transaction still works (on PostgreSQL a failed statement would
        # otherwise abort it).
        assert Event.objects.count() == 1
    assert "could not record activity search" in caplog.text
