"""Fixtures for the activity tests: a clock that tests move, users, and requests with sessions."""

import datetime
from collections.abc import Callable
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.models import User

PASSWORD = "Correct-Horse-42"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"


class Clock:
    """Stands in for ``django.utils.timezone.now``; tests move it instead of sleeping."""

    def __init__(self, start: datetime.datetime) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> datetime.datetime:
        self.now += datetime.timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Time starts at 09:00 today (server time zone) and moves only when the test says so.

    Everything that asks ``timezone.now()`` follows it: activity, session expiry, django-axes.
    """
    start = timezone.localtime(timezone.now()).replace(hour=9, minute=0, second=0, microsecond=0)
    clock = Clock(start)
    monkeypatch.setattr(timezone, "now", clock)
    return clock


@pytest.fixture
def physician(db) -> User:
    return User.objects.create_user(
        username="drhouse", password=PASSWORD, real_name="Gregory House"
    )


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser(username="admin", password=PASSWORD)


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def log_in(user: User, *, address: str = "10.1.2.3", agent: str = CHROME) -> Client:
    """A browser of its own that logs in through the real login page."""
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, "the login failed"
    return client


@pytest.fixture
def session_request(db) -> Callable:
    """``session_request(user=None, address=...)``: a request with a session, as views get it.

    For the kinds of action whose pages other apps own: their views call ``record`` with such a
    request, so the tests here do the same.
    """
    engine = import_module(settings.SESSION_ENGINE)
    factory = RequestFactory()

    def make(*, user: User | None = None, address: str = "10.9.8.7", agent: str = CHROME):
        request = factory.get("/", REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
        request.session = engine.SessionStore()
        request.user = user if user is not None else AnonymousUser()
        return request

    return make
