"""tokens.services: producing, revoking, regenerating and extending a study's link."""

import datetime

from tokens import services
from tokens.derivation import derive_token, token_digest
from tokens.models import StudyToken


def test_first_link_writes_one_row_and_later_ones_reuse_it(make_study):
    study = make_study()
    row, token = services.token_ensure(study=study)
    again_row, again = services.token_ensure(study=study)
    assert token == again
    assert row.pk == again_row.pk
    assert StudyToken.objects.filter(study=study).count() == 1
    assert row.generation == 1 and row.revoked_at is None


def test_each_study_gets_its_own_token(make_study):
    tokens = {services.token_ensure(study=make_study(series=1, per_series=1))[1] for _ in range(5)}
    assert len(tokens) == 5


def test_revoke_stops_the_link_and_regenerate_gives_a_new_one(client, setup, make_study, clock):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    study = make_study()
    _row, old = services.token_ensure(study=study)
    assert client.get(f"/token?{old}").status_code == 200

    services.token_revoke(study=study)
    response = client.get(f"/token?{old}")
    assert response.status_code == 410
    assert "withdrawn" in response.text
    # The link shown again after a revocation is the same, withdrawn one.
    assert services.token_ensure(study=study)[1] == old

    new = services.token_regenerate(study=study)
    assert new != old
    row = StudyToken.objects.get(study=study)
    assert row.generation == 2 and row.revoked_at is None
    assert row.digest == token_digest(new)
    assert client.get(f"/token?{new}").status_code == 200
    assert client.get(f"/token?{old}").status_code == 404


def test_revoking_a_study_whose_link_was_never_shown_withdraws_it(make_study):
    study = make_study()
    services.token_revoke(study=study)
    assert StudyToken.objects.get(study=study).revoked_at is not None


def test_extend_sets_and_clears_the_extension(make_study):
    study = make_study()
    services.token_extend(study=study, through=datetime.date(2030, 1, 1))
    assert StudyToken.objects.get(study=study).extended_through == datetime.date(2030, 1, 1)
    services.token_extend(study=study, through=None)
    assert StudyToken.objects.get(study=study).extended_through is None


def test_a_new_server_key_replaces_every_link(settings, client, setup, make_study, clock):
    """After the key is replaced, a study's link follows the new key; the old link stops."""
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    settings.TOKEN_KEY = "first-key-" + "x" * 30
    study = make_study()
    _row, old = services.token_ensure(study=study)
    settings.TOKEN_KEY = "second-key-" + "y" * 30
    _row, new = services.token_ensure(study=study)
    assert new == derive_token(study_uid=study.study_uid, generation=1) != old
    assert client.get(f"/token?{old}").status_code == 404
    assert client.get(f"/token?{new}").status_code == 200
