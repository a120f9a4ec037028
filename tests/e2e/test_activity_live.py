"""The admin's web activity pages in a real browser.

The live list picks up a physician's new login without reloading the page; a row opens its
connection; the CSV export neutralises what a spreadsheet would run; a web user reaches none of
it. Screenshots of every activity page go to ``screenshot_dir`` (``PACSWEB_SCREENSHOT_DIR``).
"""

import csv
import datetime
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from activity.models import Connection, Event
from tests.e2e.conftest import DEFAULT_PASSWORD, PHONE, log_in

ACTIVE = "/admin/activity/activeconnection/"
RECENT = "/admin/activity/recentconnection/"
REPORT = "/admin/activity/connection/"
# Longer than a few refresh periods of the live list (3 s), on a busy machine.
LIVE_TIMEOUT_MS = 20_000


@pytest.fixture
def admin_page(live_server, web_user, new_page):
    """A page logged in to the Django admin as a superuser."""
    web_user(username="admin", is_staff=True, is_superuser=True, real_name="")
    page = new_page()
    page.goto(live_server.url + "/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/$"))
    return page


@pytest.fixture
def last_day(transactional_db) -> None:
    """Connections and finished downloads over the last 24 hours, so the chart has something to draw.

    Written straight to the tables: these are past sessions that no browser could replay.
    """
    now = timezone.now()
    for hour in range(0, 24, 2):
        started = now - datetime.timedelta(hours=hour, minutes=10)
        for n in range(1 + hour % 5):
            conn = Connection.objects.create(
                kind=Connection.Kind.USER,
                username=f"drhistory{n}",
                client_address=f"10.0.{hour}.{n + 1}",
                user_agent="Mozilla/5.0 (Windows NT 10.0) Firefox/121.0",
                started_at=started,
                last_seen_at=started + datetime.timedelta(minutes=9),
                ended_at=started + datetime.timedelta(minutes=9),
                end_reason=Connection.EndReason.LOGOUT,
                bytes_sent=(hour + 1) * 40_000_000,
            )
            Event.objects.create(
                connection=conn,
                at=started + datetime.timedelta(minutes=1),
                kind=Event.Kind.DOWNLOAD,
                study_uid=f"1.2.826.0.1.{hour}",
                patient_name=f"PATIENT^HOUR{hour}",
                bytes_sent=(hour + 1) * 40_000_000,
                completed=n != 1,
            )


def test_live_list_shows_a_new_login_without_reloading(
    live_server, admin_page, web_user, logged_in_page, screenshot, last_day
):
    page = admin_page
    page.goto(live_server.url + ACTIVE)
    live = page.locator("#live-list")
    expect(live).to_contain_text("admin")
    expect(live).not_to_contain_text("drhouse")
    page.evaluate("window.pacswebMarker = 'same page'")

    physician = web_user(username="drhouse", real_name="Gregory House")
    logged_in_page(physician)

    expect(live.get_by_text("drhouse")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(live).to_contain_text("Gregory House")
    expect(live).to_contain_text("127.0.0.1")
    expect(page.locator("#active-count")).to_have_text("2")
    expect(page.locator("#live-status")).to_contain_text("Updated")
    # The same document all along: the list was replaced in place, the page never reloaded.
    assert page.evaluate("window.pacswebMarker") == "same page"
    charts = page.locator(".activity-chart svg")
    expect(charts).to_have_count(2)
    assert page.locator(".activity-chart rect").count() == 48
    screenshot(page, "activity-active-desktop")

    # A click anywhere on a row (here: its address cell) opens that connection.
    row = live.locator("tr", has_text="drhouse")
    row.locator("td").nth(1).click()
    page.wait_for_url(re.compile(r"/admin/activity/connection/\d+/change/$"))
    expect(page.locator("#connection-events")).to_contain_text("Logged in")
    screenshot(page, "activity-detail-desktop")


def test_recent_and_report_pages(live_server, admin_page, web_user, new_page, screenshot, last_day):
    physician = web_user(username="drwilson", real_name="James Wilson")
    browser_page = new_page()
    log_in(browser_page, live_server.url, physician.username, DEFAULT_PASSWORD)
    browser_page.get_by_role("button", name="Log out").click()

    page = admin_page
    page.goto(live_server.url + RECENT)
    expect(page.locator("#recent-connections")).to_contain_text("drwilson")
    expect(page.locator("#recent-connections")).to_contain_text("Logged out")
    screenshot(page, "activity-recent-desktop")

    page.goto(live_server.url + REPORT)
    page.fill("#id_user", "history")
    page.select_option("#id_action", "download")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#report-connections")
    expect(table).to_contain_text("drhistory0")
    expect(table).not_to_contain_text("drwilson")
    screenshot(page, "activity-report-desktop")

    phone = new_page(viewport=PHONE)
    phone.goto(live_server.url + "/admin/login/")
    phone.fill("#id_username", "admin")
    phone.fill("#id_password", DEFAULT_PASSWORD)
    phone.get_by_role("button", name="Log in").click()
    phone.wait_for_url(re.compile(r"/admin/$"))
    phone.goto(live_server.url + ACTIVE)
    expect(phone.locator(".activity-chart svg")).to_have_count(2)
    screenshot(phone, "activity-active-phone")


def test_csv_export_neutralises_formulas_from_the_browser(
    live_server, admin_page, web_user, new_page, tmp_path
):
    # Both the user name and the browser's User-Agent header are chosen by the people involved.
    physician = web_user(username="@SUM-doctor")
    evil_agent = '=HYPERLINK("http://evil.example/","open me")'
    visitor = new_page(user_agent=evil_agent)
    log_in(visitor, live_server.url, physician.username, DEFAULT_PASSWORD)

    page = admin_page
    page.goto(live_server.url + REPORT)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "export.csv"
    download_info.value.save_as(path)

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    mine = [row for row in rows if "SUM-doctor" in row["user"]]
    assert mine and all(row["user"] == "'@SUM-doctor" for row in mine)
    assert all(row["browser"] == "'" + evil_agent for row in mine)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


def test_a_web_user_reaches_none_of_the_activity_pages(live_server, web_user, logged_in_page):
    page = logged_in_page(web_user(username="drchase"))
    for url in (
        ACTIVE,
        ACTIVE + "live/",
        RECENT,
        REPORT,
        REPORT + "export.csv?date_from=2000-01-01&date_to=2100-01-01",
    ):
        page.goto(live_server.url + url)
        expect(page).to_have_url(re.compile(r"/admin/login/"))
        expect(page.locator("body")).to_contain_text("not authorized")
        assert page.locator("[data-connection]").count() == 0
