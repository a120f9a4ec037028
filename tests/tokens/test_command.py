"""``manage.py study_token STUDY_INSTANCE_UID``."""

import datetime
import io

import pytest
from django.core.management import CommandError, call_command

from tokens import services


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("study_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_prints_the_link_from_the_server_setup(client, clock, setup, make_study):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    study = make_study(study_date="20240115")
    out, err = _run(study.study_uid)
    _row, token = services.token_ensure(study=study)
    assert out == f"https://pacs.example.org:8443/token?{token}\n"
    assert err == ""
    # The printed link opens the study.
    path = out.strip().removeprefix("https://pacs.example.org:8443")
    assert client.get(path).status_code == 200


def test_same_link_every_time(setup, make_study):
    study = make_study()
    assert _run(study.study_uid)[0] == _run(study.study_uid)[0]


def test_unknown_study_is_an_error(setup):
    with pytest.raises(CommandError, match="no study"):
        _run("1.2.3.4.5")


def test_setup_without_an_address_is_an_error(settings, setup, make_study):
    settings.PUBLIC_IP = ""
    setup.web_server_name = ""
    setup.save()
    study = make_study()
    with pytest.raises(CommandError, match="web server name"):
        _run(study.study_uid)


def test_expired_link_is_printed_with_a_warning(clock, setup, make_study):
    clock.set(datetime.datetime(2025, 1, 1, 12, tzinfo=datetime.UTC))
    study = make_study(study_date="20240115")
    out, err = _run(study.study_uid)
    assert out.startswith("https://pacs.example.org:8443/token?")
    assert "expired" in err and "2024-02-14" in err
