"""The session and user read on every request (accounts.sessions, accounts.backends)."""

import datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone

from accounts.backends import ModelBackend
from accounts.models import User
from accounts.sessions import SessionStore


@pytest.fixture
def physician(db) -> User:
    user = User.objects.create_user(
        username="drwho", password="Sound-Pass-2024", real_name="Dr Who", can_upload=True
    )
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return User.objects.get(pk=user.pk)


def fields(user: User) -> dict:
    return {field.attname: getattr(user, field.attname) for field in User._meta.concrete_fields}


def test_backend_reads_the_same_user_as_the_orm(physician):
    user = ModelBackend().get_user(str(physician.pk))
    assert type(user) is get_user_model()
    assert fields(user) == fields(physician)
    assert user.is_active is True and user.can_upload is True
    assert user.last_login.tzinfo is not None
    assert user.get_session_auth_hash() == physician.get_session_auth_hash()
    assert not user._state.adding and user._state.db == "default"


def test_backend_refuses_inactive_missing_and_malformed_users(physician):
    User.objects.filter(pk=physician.pk).update(is_active=False)
    assert ModelBackend().get_user(physician.pk) is None
    assert ModelBackend().get_user(physician.pk + 1) is None
    assert ModelBackend().get_user("1 OR 1=1") is None


def test_session_store_reads_what_django_wrote(db):
    session = SessionStore()
    session["answer"] = {"value": 42, "text": "Ünïcode"}
    session.create()
    loaded = SessionStore(session.session_key)
    assert loaded["answer"] == {"value": 42, "text": "Ünïcode"}
    assert loaded.session_key == session.session_key


def test_session_store_drops_an_expired_or_unknown_session(db):
    session = SessionStore()
    session["answer"] = 42
    session.create()
    Session.objects.update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    expired = SessionStore(session.session_key)
    assert "answer" not in expired and expired.is_empty()
    assert expired.session_key is None
    unknown = SessionStore("x" * 32)
    assert "answer" not in unknown and unknown.session_key is None


def test_deleted_user_loses_the_session(client, physician):
    client.force_login(physician)
    assert client.get("/studies/").status_code == 200
    session_key = client.session.session_key
    User.objects.filter(pk=physician.pk).delete()
    assert client.get("/studies/").status_code == 302
    assert not Session.objects.filter(session_key=session_key).exists()


def test_password_change_elsewhere_ends_the_session(client, physician):
    client.force_login(physician)
    assert client.get("/studies/").status_code == 200
    physician.set_password("Another-Pass-2025")
    physician.save(update_fields=["password"])
    assert client.get("/studies/").status_code == 302
