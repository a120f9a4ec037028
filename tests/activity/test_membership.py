"""Which list a connection is in (active, recent, report) as sessions start, idle out and log out.

Time is moved with the ``clock`` fixture; session expiry follows the same clock, so a session that
idles out in these tests has really expired for Django too.
"""

import datetime
import re

import pytest
from django.conf import settings

from accounts.models import User
from activity import selectors, services
from activity.models import Connection, Event
from activity.selectors import ReportFilters
from tests.activity.conftest import PASSWORD, log_in

pytestmark = pytest.mark.django_db

ACTIVE_URL = "/admin/activity/activeconnection/"
LIVE_URL = "/admin/activity/activeconnection/live/"
RECENT_URL = "/admin/activity/recentconnection/"
REPORT_URL = "/admin/activity/connection/"


def listed(admin_client, url: str) -> set[int]:
    """The connection ids a list page shows."""
    response = admin_client.get(url)
    assert response.status_code == 200
    return {int(pk) for pk in re.findall(r'data-connection="(\d+)"', response.content.decode())}


def active_ids() -> set[int]:
    return set(selectors.connections_active().values_list("pk", flat=True))


def recent_ids() -> set[int]:
    return set(selectors.connections_recent().values_list("pk", flat=True))


def report_ids() -> set[int]:
    return set(selectors.connections_report(ReportFilters()).values_list("pk", flat=True))


def test_lists_follow_sessions_through_login_activity_idle_and_logout(clock, admin_client):
    house = User.objects.create_user(username="drhouse", password=PASSWORD)
    wilson = User.objects.create_user(username="drwilson", password=PASSWORD)
    admin_conn = Connection.objects.get(username="admin").pk

    house_client = log_in(house)
    house_conn = Connection.objects.get(username="drhouse").pk
    assert house_conn in active_ids() and house_conn in listed(admin_client, ACTIVE_URL)
    assert house_conn not in recent_ids() and house_conn not in listed(admin_client, RECENT_URL)
    assert house_conn in report_ids() and house_conn in listed(admin_client, REPORT_URL)

    clock.advance(minutes=20)
    wilson_client = log_in(wilson)
    wilson_conn = Connection.objects.get(username="drwilson").pk
    assert {house_conn, wilson_conn} <= listed(admin_client, LIVE_URL)

    clock.advance(minutes=5)
    wilson_client.post("/logout/")
    assert wilson_conn not in active_ids() and wilson_conn not in listed(admin_client, ACTIVE_URL)
    assert wilson_conn in recent_ids() and wilson_conn in listed(admin_client, RECENT_URL)
    assert wilson_conn in report_ids()

    # House has been idle for 25 minutes: still within the 30-minute session.
    assert house_conn in active_ids()
    # Past the session's age (plus the last-seen throttle) his connection has ended...
    clock.advance(seconds=settings.SESSION_COOKIE_AGE - 25 * 60 + 31)
    assert house_conn not in active_ids()
    assert house_conn not in listed(admin_client, ACTIVE_URL)
    # ...and listing closed it, at the moment its session expired.
    assert house_conn in listed(admin_client, RECENT_URL)
    closed = Connection.objects.get(pk=house_conn)
    assert closed.end_reason == Connection.EndReason.IDLE
    assert closed.ended_at == closed.last_seen_at + datetime.timedelta(
        seconds=settings.SESSION_COOKIE_AGE
    )
    assert house_conn in listed(admin_client, REPORT_URL)

    # His browser's session has expired too: the next page asks him to log in again, and nothing
    # is added to the closed connection.
    events_before = Event.objects.filter(connection_id=house_conn).count()
    response = house_client.get("/studies/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Event.objects.filter(connection_id=house_conn).count() == events_before

    # The admin kept the live page open (it refreshes), so the admin's own connection is active.
    assert admin_conn in active_ids()


def test_a_connection_that_keeps_working_stays_active(clock, physician):
    client = log_in(physician)
    conn = Connection.objects.get().pk
    for _ in range(4):
        clock.advance(minutes=20)
        assert client.get("/studies/").status_code == 200
    # 80 minutes after login, but never 30 minutes idle.
    assert conn in active_ids()
    services.connections_close_idle()
    assert Connection.objects.get(pk=conn).ended_at is None


def test_recent_lists_only_connections_closed_today(clock, physician, admin_user, client):
    client = log_in(physician)
    client.post("/logout/")
    yesterday = Connection.objects.get(username="drhouse").pk
    # The next day at 09:00: yesterday's logout is history, not "recent".
    clock.advance(days=1)
    client.force_login(admin_user)
    assert yesterday not in recent_ids()
    assert yesterday not in listed(client, RECENT_URL)
    assert yesterday in report_ids()
    today = log_in(physician)
    today.post("/logout/")
    assert recent_ids() - {yesterday} == {Connection.objects.order_by("-pk").first().pk}


def test_a_patient_link_visit_is_active_then_idles_out(clock, session_request):
    request = session_request(address="203.0.113.9")
    services.record(request, Event.Kind.TOKEN_PAGE, study_uid="1.2.3", patient_name="DOE^JANE")
    conn = Connection.objects.get()
    assert conn.pk in active_ids()
    clock.advance(seconds=settings.SESSION_COOKIE_AGE + 31)
    assert conn.pk not in active_ids()
    assert services.connections_close_idle() == 1
    assert conn.pk in recent_ids()
