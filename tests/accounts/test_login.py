"""Logging in and out: lockout (django-axes) per user and per address, sessions, admin separation."""

import datetime
import time

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.db.models import F
from django.test import Client
from django.utils import timezone

from accounts import middleware
from accounts.models import User
from pacsweb.models import ServerSetup

PASSWORD = "Sound-Pass-2024"
LOGIN = "/login/"


@pytest.fixture
def physician(db) -> User:
    return User.objects.create_user(username="drhouse", password=PASSWORD, real_name="Dr House")


def post_login(client: Client, username: str, password: str, **headers: str):
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def fail(client: Client, username: str, times: int, **headers: str) -> None:
    for _ in range(times):
        response = post_login(client, username, "wrong-password", **headers)
        assert response.status_code in (200, 429)


def is_locked_out(response) -> bool:
    return response.status_code == 429 and b"Too many failed attempts" in response.content


def test_login_page_has_labelled_fields(client, db):
    response = client.get(LOGIN)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="id_username">Username</label>' in html
    assert '<label for="id_password">Password</label>' in html
    assert "csrfmiddlewaretoken" in html


def test_login_goes_to_the_query_page_with_a_new_session_id(client, physician):
    client.get(LOGIN)
    client.session["planted"] = True
    session = client.session
    session.save()
    before = session.session_key
    response = post_login(client, "drhouse", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/studies/"
    after = client.cookies["sessionid"].value
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()


def test_wrong_password_and_unknown_user_get_the_same_answer(client, physician):
    wrong = post_login(client, "drhouse", "not-his-password")
    unknown = post_login(client, "nobody", "not-his-password")
    assert wrong.status_code == unknown.status_code == 200
    message = b"The username or password is not correct."
    assert message in wrong.content and message in unknown.content
    assert "_auth_user_id" not in client.session


def test_inactive_user_cannot_log_in_and_is_told_nothing_more(client, physician):
    physician.is_active = False
    physician.save(update_fields=["is_active"])
    response = post_login(client, "drhouse", PASSWORD)
    assert response.status_code == 200
    assert b"The username or password is not correct." in response.content
    assert "_auth_user_id" not in client.session


def test_login_follows_a_local_next_but_not_another_site(client, physician):
    response = client.post(
        LOGIN + "?next=/studies/patient/1/", {"username": "drhouse", "password": PASSWORD}
    )
    assert response["Location"] == "/studies/patient/1/"
    client.post("/logout/")
    response = client.post(
        LOGIN, {"username": "drhouse", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/studies/"


def test_login_form_needs_csrf(physician):
    client = Client(enforce_csrf_checks=True)
    response = post_login(client, "drhouse", PASSWORD)
    assert response.status_code == 403


def test_user_is_locked_out_after_repeated_failures_from_any_address(client, physician, settings):
    for number in range(settings.AXES_FAILURE_LIMIT - 1):
        response = post_login(client, "drhouse", "wrong", REMOTE_ADDR=f"10.0.0.{number + 1}")
        assert response.status_code == 200, "a failure before the limit shows the form again"
    # The failure that reaches the limit is answered with the lockout page.
    assert is_locked_out(post_login(client, "drhouse", "wrong", REMOTE_ADDR="10.0.0.99"))
    # Even the right password, from a fresh address, is refused during the cool-off.
    response = post_login(client, "drhouse", PASSWORD, REMOTE_ADDR="10.0.9.9")
    assert is_locked_out(response)
    assert "_auth_user_id" not in client.session


def test_lockout_of_an_unknown_username_looks_the_same(client, physician, settings):
    fail(client, "drhouse", settings.AXES_FAILURE_LIMIT, REMOTE_ADDR="10.0.0.1")
    fail(client, "nobody", settings.AXES_FAILURE_LIMIT, REMOTE_ADDR="10.0.0.2")
    known = post_login(client, "drhouse", "x", REMOTE_ADDR="10.0.0.1")
    unknown = post_login(client, "nobody", "x", REMOTE_ADDR="10.0.0.2")
    assert is_locked_out(known) and is_locked_out(unknown)
    assert known.content == unknown.content


def test_address_is_locked_out_whatever_username_it_tries(client, physician, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail(client, f"guess{number}", 1, REMOTE_ADDR="10.0.0.66")
    assert is_locked_out(post_login(client, "drhouse", PASSWORD, REMOTE_ADDR="10.0.0.66"))
    # The user himself, from elsewhere, is not affected.
    response = post_login(Client(), "drhouse", PASSWORD, REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 302


def test_lockout_ends_after_the_cool_off(client, physician, settings):
    fail(client, "drhouse", settings.AXES_FAILURE_LIMIT)
    assert is_locked_out(post_login(client, "drhouse", PASSWORD))
    cool_off = datetime.timedelta(hours=settings.AXES_COOLOFF_TIME)
    AccessAttempt.objects.update(
        attempt_time=F("attempt_time") - cool_off - datetime.timedelta(seconds=1)
    )
    assert post_login(client, "drhouse", PASSWORD).status_code == 302


def test_forged_forwarded_for_does_not_dodge_the_address_lockout(client, physician, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail(
            client,
            f"guess{number}",
            1,
            REMOTE_ADDR="10.0.0.66",
            HTTP_X_FORWARDED_FOR=f"172.16.0.{number + 1}",
        )
    response = post_login(
        client, "drhouse", PASSWORD, REMOTE_ADDR="10.0.0.66", HTTP_X_FORWARDED_FOR="172.16.9.9"
    )
    assert is_locked_out(response)


def test_forged_forwarded_for_does_not_lock_out_someone_else(client, physician, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail(client, f"guess{number}", 1, REMOTE_ADDR="10.0.0.66", HTTP_X_FORWARDED_FOR="10.0.0.7")
    response = post_login(Client(), "drhouse", PASSWORD, REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 302


def test_behind_a_trusted_proxy_the_client_address_is_locked_out(client, physician, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "127.0.0.1"
    for number in range(settings.AXES_FAILURE_LIMIT):
        # The attacker forges the leftmost entries; the proxy appends the real address.
        fail(
            client,
            f"guess{number}",
            1,
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"172.16.0.{number + 1}, 203.0.113.5",
        )
    attacker = post_login(
        client,
        "drhouse",
        PASSWORD,
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR="172.16.9.9, 203.0.113.5",
    )
    assert is_locked_out(attacker)
    # Other clients behind the same proxy, including the one the attacker named, log in.
    victim = post_login(
        Client(), "drhouse", PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="172.16.0.1"
    )
    assert victim.status_code == 302


def test_logout_ends_the_session_on_the_server(client, physician):
    post_login(client, "drhouse", PASSWORD)
    session_key = client.cookies["sessionid"].value
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Session.objects.filter(session_key=session_key).exists()
    # Replaying the old cookie gets nothing.
    replay = Client()
    replay.cookies["sessionid"] = session_key
    assert replay.get("/studies/")["Location"].startswith("/login/")


def test_logout_needs_a_post(client, physician):
    client.force_login(physician)
    assert client.get("/logout/").status_code == 405
    assert client.get("/studies/").status_code == 200


def test_idle_session_expires(client, physician):
    client.force_login(physician)
    assert client.get("/studies/").status_code == 200
    Session.objects.update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get("/studies/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_session_in_use_pushes_the_idle_expiry_back_once_a_minute(client, physician, monkeypatch):
    client.force_login(physician)
    client.get("/studies/")
    soon = timezone.now() + datetime.timedelta(seconds=5)
    Session.objects.update(expire_date=soon)
    # Within the minute the session is not written again: no database write per request.
    client.get("/studies/")
    assert Session.objects.get().expire_date == soon
    later = time.time() + middleware.SESSION_REFRESH_SECONDS + 1
    monkeypatch.setattr(middleware.time, "time", lambda: later)
    client.get("/studies/")
    assert Session.objects.get().expire_date > soon


def test_user_made_inactive_loses_the_session_at_the_next_request(client, physician):
    client.force_login(physician)
    assert client.get("/studies/").status_code == 200
    session_key = client.session.session_key
    User.objects.filter(pk=physician.pk).update(is_active=False)
    response = client.get("/studies/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Session.objects.filter(session_key=session_key).exists()
    # Making the user active again does not revive the old session.
    User.objects.filter(pk=physician.pk).update(is_active=True)
    assert client.get("/studies/").status_code == 302


def test_web_user_never_reaches_the_admin(client, physician):
    client.force_login(physician)
    for url in ("/admin/", "/admin/accounts/user/", "/admin/pacsweb/serversetup/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    response = Client().post(
        "/admin/login/", {"username": "drhouse", "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 200
    assert b"staff account" in response.content


def test_landing_and_login_pages_need_no_account(client, db):
    landing = client.get("/")
    assert landing.status_code == 200
    content = landing.content.decode()
    assert 'href="/login/"' in content
    assert 'href="/ohif/"' in content
    assert 'href="https://weasis.org/en/getting-started/download-dicom-viewer/"' in content
    assert "An account is needed" in content
    assert client.get("/login/").status_code == 200


def test_landing_shows_the_institution_and_department(client, db):
    ServerSetup.objects.update_or_create(
        pk=1, defaults={"institution": "St. Mary's <Hospital>", "department": "Radiology"}
    )
    content = client.get("/").content.decode()
    assert "St. Mary&#x27;s &lt;Hospital&gt;" in content and "Radiology" in content
