"""The admin's activity pages: who may see them, what they show, the CSV export, the chart."""

import csv
import datetime
import io

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import User
from activity import selectors, services
from activity.csv_export import neutralise
from activity.models import Connection, Event
from activity.selectors import ReportFilters
from tests.activity.conftest import PASSWORD, log_in

pytestmark = pytest.mark.django_db

ACTIVE_URL = "/admin/activity/activeconnection/"
LIVE_URL = "/admin/activity/activeconnection/live/"
RECENT_URL = "/admin/activity/recentconnection/"
REPORT_URL = "/admin/activity/connection/"
EXPORT_URL = "/admin/activity/connection/export.csv"


def detail_url(pk: int) -> str:
    return f"/admin/activity/connection/{pk}/change/"


def all_urls(pk: int) -> list[str]:
    return [
        ACTIVE_URL,
        LIVE_URL,
        RECENT_URL,
        REPORT_URL,
        detail_url(pk),
        f"{EXPORT_URL}?date_from=2000-01-01&date_to=2100-01-01",
        "/admin/activity/",
    ]


# Who may see it --------------------------------------------------------------------------------------


def test_a_web_user_reaches_none_of_it(physician):
    client = log_in(physician)
    pk = Connection.objects.get().pk
    for url in all_urls(pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url
    # Following the redirect ends on the admin's login page, without a single row of the log.
    assert b"data-connection" not in client.get(REPORT_URL, follow=True).content


def test_an_anonymous_visitor_reaches_none_of_it(physician):
    log_in(physician)
    pk = Connection.objects.get().pk
    client = Client()
    for url in all_urls(pk):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_staff_without_the_activity_permission_is_refused(physician):
    log_in(physician)
    pk = Connection.objects.get().pk
    staff = User.objects.create_user(username="clerk", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(staff)
    for url in all_urls(pk)[:-1]:
        assert client.get(url).status_code == 403, url
    assert b"Web activity" not in client.get("/admin/").content


def test_staff_with_the_view_permission_sees_all_three_lists(physician):
    log_in(physician)
    staff = User.objects.create_user(username="clerk", password=PASSWORD, is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client = Client()
    client.force_login(staff)
    pk = Connection.objects.get(username="drhouse").pk
    for url in all_urls(pk):
        assert client.get(url).status_code == 200, url
    index = client.get("/admin/").content.decode()
    for link in (ACTIVE_URL, RECENT_URL, REPORT_URL):
        assert f'href="{link}"' in index
    assert "Active web connections" in index and "Recent web connections" in index
    assert "HTTP server report" in index


def test_nothing_in_the_activity_log_can_be_added_changed_or_deleted(admin_client, physician):
    log_in(physician)
    conn = Connection.objects.get(username="drhouse")
    assert admin_client.get("/admin/activity/connection/add/").status_code == 403
    assert admin_client.post(f"/admin/activity/connection/{conn.pk}/delete/").status_code == 403
    response = admin_client.post(detail_url(conn.pk), {"username": "someone-else"})
    assert response.status_code in (200, 405)
    conn.refresh_from_db()
    assert conn.username == "drhouse"
    assert Connection.objects.filter(pk=conn.pk).exists()
    # Events have no admin at all.
    assert admin_client.get("/admin/activity/event/").status_code == 404
    # No bulk delete action either.
    assert b'value="delete_selected"' not in admin_client.get(REPORT_URL).content


# What the pages show ---------------------------------------------------------------------------------


def test_live_list_shows_user_address_start_last_action_and_download_progress(
    admin_client, physician, session_request
):
    client = log_in(physician, address="192.0.2.44")
    request = session_request(user=physician, address="192.0.2.44")
    request.session = client.session
    services.record(request, Event.Kind.STUDY_VIEWED, study_uid="1.2.3")
    event = services.record(
        request,
        Event.Kind.DOWNLOAD,
        study_uid="1.2.3",
        patient_name="DOE^JOHN",
        detail={"level": "study", "bytes_total": 4 * 1024 * 1024},
    )
    services.event_progress(event, bytes_sent=1024 * 1024)

    page = admin_client.get(LIVE_URL).content.decode()
    assert "drhouse" in page and "Gregory House" in page
    assert "192.0.2.44" in page
    assert "Chrome 120 on Linux" in page
    assert "Download" in page
    assert "Downloading DOE, JOHN (study)" in page
    assert "1.0\xa0MB sent of 4.0\xa0MB" in page
    assert '<progress max="4194304" value="1048576">' in page

    services.event_finish(event, bytes_sent=4 * 1024 * 1024, completed=True)
    assert "Downloading" not in admin_client.get(LIVE_URL).content.decode()


def test_live_fragment_is_only_the_list_and_is_not_cached(admin_client):
    response = admin_client.get(LIVE_URL)
    body = response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert "<html" not in body and 'id="active-count"' in body
    page = admin_client.get(ACTIVE_URL).content.decode()
    assert 'data-live-url="/admin/activity/activeconnection/live/"' in page
    assert "activity/activity.js" in page


def test_detail_lists_every_event_in_order_and_escapes_what_came_from_files(
    admin_client, physician, session_request
):
    request = session_request(user=physician)
    services.record(request, Event.Kind.SEARCH, detail={"patient_name": "<b>DOE*</b>"})
    services.record(
        request,
        Event.Kind.STUDY_VIEWED,
        study_uid="1.2.3",
        patient_name="<script>alert(1)</script>^X",
    )
    event = services.record(request, Event.Kind.DOWNLOAD, study_uid="1.2.3")
    services.event_finish(event, bytes_sent=1500, completed=False)
    conn = Connection.objects.get(username="drhouse")

    page = admin_client.get(detail_url(conn.pk)).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>DOE*</b>" not in page and "&lt;b&gt;DOE*&lt;/b&gt;" in page
    kinds = [k for k in ("Search", "Study viewed", "Download") if k in page]
    assert kinds == ["Search", "Study viewed", "Download"]
    assert page.index(">Search<") < page.index(">Study viewed<") < page.index(">Download<")
    assert "cut off" in page and "1.5\xa0KB" in page


def test_rows_open_the_detail_from_every_list(admin_client, physician):
    client = log_in(physician)
    pk = Connection.objects.get(username="drhouse").pk
    for url in (ACTIVE_URL, REPORT_URL):
        assert f'data-href="{detail_url(pk)}"' in admin_client.get(url).content.decode()
    client.post("/logout/")
    assert f'data-href="{detail_url(pk)}"' in admin_client.get(RECENT_URL).content.decode()
    # The proxies' own detail addresses lead to the one detail page.
    response = admin_client.get(f"/admin/activity/activeconnection/{pk}/change/")
    assert response.status_code == 302 and response["Location"] == detail_url(pk)


def test_unknown_connection_is_404(admin_client):
    assert admin_client.get(detail_url(999999)).status_code == 404
    assert admin_client.get("/admin/activity/connection/abc/change/").status_code == 404


# The report's filters ------------------------------------------------------------------------------


@pytest.fixture
def report_data(clock, physician, session_request):
    """Three connections: House (downloads MÜLLER's study), Wilson yesterday, a patient link."""
    wilson = User.objects.create_user(
        username="drwilson", password=PASSWORD, real_name="James Wilson"
    )
    clock.advance(days=-1)
    services.record(session_request(user=wilson, address="172.16.0.9"), Event.Kind.SEARCH)
    clock.advance(days=1)
    house = session_request(user=physician, address="10.20.0.5")
    services.record(house, Event.Kind.DOWNLOAD, study_uid="1.2.840.99", patient_name="MÜLLER^ANNA")
    link = session_request(address="203.0.113.50")
    services.record(link, Event.Kind.TOKEN_PAGE, study_uid="1.2.840.77", patient_name="DOE^JANE")
    return {
        "house": Connection.objects.get(username="drhouse").pk,
        "wilson": Connection.objects.get(username="drwilson").pk,
        "link": Connection.objects.get(kind=Connection.Kind.TOKEN).pk,
    }


def _report(**filters) -> set[int]:
    return set(selectors.connections_report(ReportFilters(**filters)).values_list("pk", flat=True))


def test_report_filters(report_data, clock):
    ids = report_data
    today = clock.now.date()
    assert _report() == set(ids.values())
    assert _report(user="HOUSE") == {ids["house"]}
    assert _report(user="james") == {ids["wilson"]}
    assert _report(date_from=today) == {ids["house"], ids["link"]}
    assert _report(date_to=today - datetime.timedelta(days=1)) == {ids["wilson"]}
    assert _report(kind=Connection.Kind.TOKEN) == {ids["link"]}
    assert _report(action=Event.Kind.DOWNLOAD) == {ids["house"]}
    assert _report(address="172.16.") == {ids["wilson"]}
    # Patient names match without case or accents.
    assert _report(patient="muller") == {ids["house"]}
    assert _report(patient="Müller^Anna") == {ids["house"]}
    assert _report(study="1.2.840.77") == {ids["link"]}
    assert _report(study="1.2.840.99") == {ids["house"]}
    assert _report(study="1.2.840") == set()


def test_report_page_applies_filters_from_the_query(admin_client, report_data):
    page = admin_client.get(REPORT_URL, {"patient": "MULLER", "action": "download"})
    body = page.content.decode()
    assert f'data-connection="{report_data["house"]}"' in body
    assert f'data-connection="{report_data["wilson"]}"' not in body
    bad = admin_client.get(REPORT_URL, {"date_from": "2024-02-01", "date_to": "2024-01-01"})
    assert "The first day comes after the last day." in bad.content.decode()
    assert 'data-connection="' not in bad.content.decode()


# CSV export ----------------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("DOE^JOHN", "DOE^JOHN"),
        ("a=b", "a=b"),
        (1500, 1500),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected


def test_csv_export_streams_every_event_with_formula_characters_neutralised(
    admin_client, clock, session_request, physician
):
    request = session_request(user=physician, address="10.0.0.1")
    services.record(
        request,
        Event.Kind.STUDY_VIEWED,
        study_uid="1.2.3",
        patient_name='=HYPERLINK("http://evil","x")',
    )
    event = services.record(request, Event.Kind.DOWNLOAD, study_uid="1.2.3", patient_name="@SUM(1)")
    services.event_finish(event, bytes_sent=777, completed=False)
    services.record(request, Event.Kind.SEARCH, detail={"patient_name": "-1+1"})
    today = clock.now.date().isoformat()

    response = admin_client.get(EXPORT_URL, {"date_from": today, "date_to": today})
    assert response.streaming
    assert (
        f'filename="activity-{today.replace("-", "")}-{today.replace("-", "")}.csv"'
        in (response["Content-Disposition"])
    )
    rows = _csv(response)
    header, body = rows[0], rows[1:]
    mine = [dict(zip(header, row, strict=True)) for row in body if row[2] == "drhouse"]
    assert [r["action"] for r in mine] == ["Study viewed", "Download", "Search"]
    assert mine[0]["patient name"] == '\'=HYPERLINK("http://evil","x")'
    assert mine[1]["patient name"] == "'@SUM(1)"
    assert mine[1]["bytes sent"] == "777" and mine[1]["outcome"] == "cut off"
    assert mine[2]["detail"] == '{"patient_name": "-1+1"}'
    assert mine[0]["client address"] == "10.0.0.1"
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_csv_export_needs_a_date_range(admin_client):
    response = admin_client.get(EXPORT_URL, {"user": "drhouse"})
    assert response.status_code == 302
    assert response["Location"].startswith(REPORT_URL)
    assert "user=drhouse" in response["Location"]
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("CSV export" in m and "required" in m for m in messages)


def test_csv_export_keeps_to_its_date_range(client, admin_user, clock, session_request, physician):
    services.record(session_request(user=physician), Event.Kind.SEARCH)
    clock.advance(days=3)
    client.force_login(admin_user)
    today = clock.now.date().isoformat()
    rows = _csv(client.get(EXPORT_URL, {"date_from": today, "date_to": today}))
    assert not [row for row in rows[1:] if row[2] == "drhouse"]


# The chart -------------------------------------------------------------------------------------------


def test_hourly_buckets_count_new_connections_and_bytes(clock, physician, session_request):
    start = clock.now
    first = services.record(session_request(user=physician), Event.Kind.DOWNLOAD)
    services.event_finish(first, bytes_sent=1000, completed=True)
    clock.advance(hours=2, minutes=10)
    second = services.record(session_request(user=physician), Event.Kind.DOWNLOAD)
    services.event_finish(second, bytes_sent=500, completed=False)
    services.record(session_request(user=physician), Event.Kind.SEARCH)

    buckets = selectors.activity_per_hour()
    assert len(buckets) == 24
    assert buckets[-1].start == clock.now.replace(minute=0)
    by_hour = {b.start: (b.connections, b.bytes_sent) for b in buckets}
    assert by_hour[start] == (1, 1000)
    assert by_hour[start + datetime.timedelta(hours=2)] == (2, 500)
    assert sum(b.connections for b in buckets) == 3


def test_activity_page_draws_the_chart_as_inline_svg(admin_client, physician, session_request):
    services.record(session_request(user=physician), Event.Kind.SEARCH)
    page = admin_client.get(ACTIVE_URL).content.decode()
    charts = page[page.index('<section class="activity-charts"') :]
    charts = charts[: charts.index("</section>")]
    assert charts.count("<svg") == 2 and charts.count("<rect") == 48
    assert "New connections per hour" in charts and "Bytes served per hour" in charts
    # The admin's own connection and the physician's, both in this hour.
    assert "last 24 hours: 2 connections" in charts
