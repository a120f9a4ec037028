"""The admin's "Patient links": list, copy, revoke, regenerate, extend, usage."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tokens import services
from tokens.models import StudyToken

CHANGELIST = "/admin/tokens/studylink/"


@pytest.fixture
def studies(clock, setup, make_study):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    return [
        make_study(patient_name="DOE^ALICE", study_date="20240115", series=1, per_series=1),
        make_study(patient_name="ROE^BORIS", study_date="20231201", series=1, per_series=1),
    ]


def _action(admin_client, action: str, studies, **extra):
    data = {"action": action, "_selected_action": [s.pk for s in studies], **extra}
    return admin_client.post(CHANGELIST, data)


def test_list_shows_each_study_with_its_link_state(admin_client, studies):
    services.token_ensure(study=studies[0])
    services.token_revoke(study=studies[1])
    text = admin_client.get(CHANGELIST).text
    assert "DOE, ALICE" in text and "ROE, BORIS" in text
    assert "active" in text and "revoked" in text
    assert "2024-02-14" in text


def test_list_queries_do_not_grow_with_the_studies(admin_client, studies, make_study):
    def count() -> int:
        with CaptureQueriesContext(connection) as context:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(context)

    for study in studies:
        services.token_ensure(study=study)
    # The first request of a session writes the session once (its idle refresh); later ones don't.
    count()
    few = count()
    for _ in range(4):
        services.token_ensure(study=make_study(series=1, per_series=1))
    assert count() == few


def test_copy_study_token_shows_the_links(admin_client, studies):
    response = _action(admin_client, "copy_links", studies)
    assert response.status_code == 200
    for study in studies:
        _row, token = services.token_ensure(study=study)
        assert f"https://pacs.example.org:8443/token?{token}" in response.text
    assert 'data-copy="all-links"' in response.text
    assert "no-store" in response["Cache-Control"]


def test_one_studys_link_page(admin_client, studies):
    study = studies[0]
    response = admin_client.get(f"{CHANGELIST}{study.pk}/link/")
    _row, token = services.token_ensure(study=study)
    assert f"token?{token}" in response.text


def test_revoke_asks_first_then_revokes(admin_client, client, studies):
    _row, token = services.token_ensure(study=studies[0])
    confirm = _action(admin_client, "revoke_links", studies[:1])
    assert confirm.status_code == 200 and "stop working at once" in confirm.text
    assert StudyToken.objects.get(study=studies[0]).revoked_at is None
    done = _action(admin_client, "revoke_links", studies[:1], confirm="yes")
    assert done.status_code == 302
    assert StudyToken.objects.get(study=studies[0]).revoked_at is not None
    assert client.get(f"/token?{token}").status_code == 410


def test_regenerate_replaces_the_link(admin_client, client, studies):
    _row, old = services.token_ensure(study=studies[0])
    _action(admin_client, "regenerate_links", studies[:1], confirm="yes")
    _row, new = services.token_ensure(study=studies[0])
    assert new != old
    assert client.get(f"/token?{old}").status_code == 404
    assert client.get(f"/token?{new}").status_code == 200


def test_extend_takes_a_day(admin_client, clock, studies):
    form = _action(admin_client, "extend_links", studies)
    assert 'type="date"' in form.text
    past = _action(admin_client, "extend_links", studies, confirm="yes", through="2020-01-01")
    assert past.status_code == 200 and "today or a later day" in past.text
    assert not StudyToken.objects.filter(extended_through__isnull=False).exists()
    done = _action(admin_client, "extend_links", studies, confirm="yes", through="2024-12-31")
    assert done.status_code == 302
    assert {t.extended_through for t in StudyToken.objects.all()} == {datetime.date(2024, 12, 31)}
    assert "2024-12-31" in admin_client.get(CHANGELIST).text


def test_study_page_shows_when_and_from_where_the_link_was_used(admin_client, client, studies):
    study = studies[0]
    _row, token = services.token_ensure(study=study)
    client.get(f"/token?{token}", REMOTE_ADDR="203.0.113.77", HTTP_USER_AGENT="Phone/<b>1</b>")
    client.get("/token/zip")
    text = admin_client.get(f"{CHANGELIST}{study.pk}/change/").text
    assert "203.0.113.77" in text
    assert "Patient link opened" in text and "Download" in text
    assert "Phone/&lt;b&gt;1&lt;/b&gt;" in text
    # Read-only: the page offers no save button.
    assert 'name="_save"' not in text
    listing = admin_client.get(CHANGELIST).text
    assert "never" in listing  # ROE^BORIS's link was never used.


def test_web_users_cannot_reach_it(client, django_user_model, studies):
    client.force_login(django_user_model.objects.create_user(username="doc", password="x"))
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
