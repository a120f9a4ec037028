"""The admin's activity pages on a big log: 10,000 connections and 100,000 events.

Query counts are asserted, not times: a page whose query count does not grow with the log stays
fast on any machine, while a timing assertion would only measure the machine. The data is made
once, with bulk_create, and every page is loaded against it in the one test.
"""

import datetime
import re
import time

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone

from accounts.models import User
from activity.models import Connection, Event

CONNECTIONS = 10_000
EVENTS_PER_CONNECTION = 10
ACTIVE = 150
KINDS = [
    Event.Kind.LOGIN,
    Event.Kind.SEARCH,
    Event.Kind.PATIENT_VIEWED,
    Event.Kind.STUDY_VIEWED,
    Event.Kind.SERIES_VIEWED,
    Event.Kind.VIEWER_OPENED,
    Event.Kind.DICOMWEB,
    Event.Kind.UPLOAD,
    Event.Kind.DOWNLOAD,
    Event.Kind.LOGOUT,
]


def _make_log(now: datetime.datetime, users: list[User]) -> None:
    """Write the log straight to its tables: model instances would take most of the test's time.

    The connections are spread over the last 30 days; the first ACTIVE are still in use, with a
    download running. Each connection gets ten events, made by the database itself.
    """
    db_time = db_connection.ops.adapt_datetimefield_value
    rows = []
    for i in range(CONNECTIONS):
        active = i < ACTIVE
        started = now - datetime.timedelta(minutes=5 if active else 30 + (i - ACTIVE) * 4)
        user = users[i % len(users)]
        rows.append(
            (
                Connection.Kind.USER.value,
                user.pk,
                user.username,
                "",
                "",
                f"s{i:039d}",
                f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36",
                db_time(started),
                db_time(now - datetime.timedelta(minutes=1) if active else started),
                None if active else db_time(started + datetime.timedelta(minutes=20)),
                "" if active else Connection.EndReason.LOGOUT.value,
                i * 1000,
            )
        )
    kinds = ", ".join(f"('{kind}')" for kind in KINDS)
    with db_connection.cursor() as cursor:
        columns = (
            "kind, user_id, username, study_uid, patient_name, session_key, client_address, "
            "user_agent, started_at, last_seen_at, ended_at, end_reason, bytes_sent"
        )
        # Many rows per statement: one round trip per batch, on SQLite and PostgreSQL alike.
        for first in range(0, len(rows), 1000):
            batch = rows[first : first + 1000]
            values = ", ".join(["(" + ", ".join(["%s"] * len(rows[0])) + ")"] * len(batch))
            cursor.execute(
                f"INSERT INTO {Connection._meta.db_table} ({columns}) VALUES {values}",  # noqa: S608 - placeholders only.
                [value for row in batch for value in row],
            )
        cursor.execute(
            f"""
            INSERT INTO {Event._meta.db_table}
                (connection_id, at, kind, study_uid, patient_name, patient_search, detail,
                 bytes_sent, completed)
            SELECT c.id, c.started_at, k.column1,
                   '1.2.826.0.1.' || (c.id % 500), 'PATIENT^' || (c.id % 500),
                   'patient^' || (c.id % 500), '{{}}',
                   CASE WHEN k.column1 = 'download' THEN 5000000 ELSE 0 END,
                   CASE WHEN k.column1 <> 'download' OR c.ended_at IS NULL THEN NULL ELSE TRUE END
            FROM {Connection._meta.db_table} c CROSS JOIN (VALUES {kinds}) AS k
            """  # noqa: S608 - table names and the fixed kinds above, no outside input.
        )


@pytest.mark.django_db
def test_admin_pages_keep_a_flat_query_count_on_a_big_log(clock, django_assert_max_num_queries):
    # 09:00 today: the log holds connections closed earlier today and on the 29 days before.
    now = clock.now
    users = [User(username=f"doctor{i}", real_name=f"Doctor {i}", password="!") for i in range(50)]
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith="doctor"))
    made = time.perf_counter()
    _make_log(now, users)
    made = time.perf_counter() - made
    assert Connection.objects.count() == CONNECTIONS
    assert Event.objects.count() == CONNECTIONS * EVENTS_PER_CONNECTION

    admin = User.objects.create_superuser(username="admin", password="Admin-Pass-1")
    client = Client()
    client.force_login(admin)
    # The first admin page creates the server setup's row; the counts below are for every page after.
    assert client.get("/admin/").status_code == 200
    busy = Connection.objects.filter(username="doctor0").order_by("-started_at").first()
    today = timezone.localdate()
    today_start = timezone.make_aware(datetime.datetime.combine(today, datetime.time.min))
    # What each page must report, counted here without the selectors under test.
    closed_today = Connection.objects.filter(ended_at__gte=today_start, ended_at__lte=now).count()
    patient_7 = (
        Connection.objects.filter(
            events__patient_search__contains="patient^7", events__kind=Event.Kind.DOWNLOAD
        )
        .distinct()
        .count()
    )
    doctor_1 = Connection.objects.filter(username__contains="doctor1").count()
    events_today = Event.objects.filter(connection__started_at__gte=today_start).count()
    assert 0 < closed_today < CONNECTIONS and 0 < patient_7 < CONNECTIONS
    pages = [
        ("/admin/activity/activeconnection/", 12, ACTIVE + 1),
        ("/admin/activity/activeconnection/live/", 10, ACTIVE + 1),
        ("/admin/activity/recentconnection/", 9, closed_today),
        ("/admin/activity/connection/", 10, CONNECTIONS + 1),
        ("/admin/activity/connection/?page=50", 10, CONNECTIONS + 1),
        ("/admin/activity/connection/?patient=patient%5E7&action=download", 10, patient_7),
        ("/admin/activity/connection/?user=doctor1&date_from=2000-01-01", 10, doctor_1),
        (f"/admin/activity/connection/{busy.pk}/change/", 9, EVENTS_PER_CONNECTION),
        (
            f"/admin/activity/connection/export.csv?date_from={today}&date_to={today}",
            6,
            events_today,
        ),
    ]
    timings = {}
    for url, max_queries, expected in pages:
        started = time.perf_counter()
        with django_assert_max_num_queries(max_queries) as captured:
            response = client.get(url)
            body = (
                b"".join(response.streaming_content) if response.streaming else response.content
            ).decode()
        timings[url] = (time.perf_counter() - started, len(captured))
        assert response.status_code == 200, url
        if response.streaming:
            assert len(body.splitlines()) - 1 == expected, url
        else:
            shown = re.search(r"<strong[^>]*>(\d+)</strong>|<h2>(\d+) events</h2>", body)
            assert shown and int(shown.group(1) or shown.group(2)) == expected, url
    # The live list shows the running downloads of the active connections.
    assert (
        "Downloading PATIENT"
        in client.get("/admin/activity/activeconnection/live/").content.decode()
    )
    report = ", ".join(f"{url}: {t * 1000:.0f} ms, {q} queries" for url, (t, q) in timings.items())
    print(f"\nmade the log in {made:.1f} s; {report}")
