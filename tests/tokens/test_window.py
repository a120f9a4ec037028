"""tokens.window and its use by the patient page: the last valid second, the first invalid one."""

import datetime

import pytest

from pacsweb.models import ServerSetup
from tests.tokens.conftest import BERLIN
from tokens import services
from tokens.window import LinkState, access_window, link_state

JAN_15 = datetime.date(2024, 1, 15)
RECEIVED = datetime.datetime(2024, 6, 30, 23, 30, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def _berlin(settings):
    # A zone away from UTC, so that a window computed in UTC instead of server time is caught.
    settings.TIME_ZONE = "Europe/Berlin"


def _at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=BERLIN)


def test_week_window_ends_after_the_seventh_day():
    window = access_window(
        study_date=JAN_15, received_at=RECEIVED, period_days=7, extended_through=None
    )
    assert window.last_day == datetime.date(2024, 1, 22)
    assert window.state_at(_at(2024, 1, 22, 23, 59, 59, 999999)) is LinkState.ACTIVE
    assert window.state_at(_at(2024, 1, 23, 0, 0, 0)) is LinkState.EXPIRED
    assert window.closes_at() == _at(2024, 1, 23)
    assert window.closes_at().astimezone(datetime.UTC) == datetime.datetime(
        2024, 1, 22, 23, 0, tzinfo=datetime.UTC
    )


def test_window_opens_at_midnight_of_the_study_date():
    window = access_window(
        study_date=JAN_15, received_at=RECEIVED, period_days=30, extended_through=None
    )
    assert window.state_at(_at(2024, 1, 14, 23, 59, 59)) is LinkState.NOT_YET_VALID
    assert window.state_at(_at(2024, 1, 15, 0, 0, 0)) is LinkState.ACTIVE


def test_unlimited_period_never_expires():
    window = access_window(
        study_date=JAN_15, received_at=RECEIVED, period_days=0, extended_through=None
    )
    assert window.last_day is None and window.closes_at() is None
    assert window.state_at(_at(2124, 1, 1)) is LinkState.ACTIVE


def test_study_without_date_counts_from_the_day_it_was_received_in_server_time():
    # 23:30 UTC on 30 June is already 1 July in Berlin.
    window = access_window(
        study_date=None, received_at=RECEIVED, period_days=7, extended_through=None
    )
    assert window.first_day == datetime.date(2024, 7, 1)
    assert window.last_day == datetime.date(2024, 7, 8)


def test_extension_moves_the_last_day_later_never_earlier():
    extended = access_window(
        study_date=JAN_15,
        received_at=RECEIVED,
        period_days=7,
        extended_through=datetime.date(2024, 3, 1),
    )
    assert extended.last_day == datetime.date(2024, 3, 1)
    earlier = access_window(
        study_date=JAN_15,
        received_at=RECEIVED,
        period_days=7,
        extended_through=datetime.date(2024, 1, 16),
    )
    assert earlier.last_day == datetime.date(2024, 1, 22)


def test_revoked_link_is_revoked_whatever_the_dates():
    window = access_window(
        study_date=JAN_15, received_at=RECEIVED, period_days=0, extended_through=None
    )
    assert link_state(window=window, revoked=True, at=_at(2024, 1, 16)) is LinkState.REVOKED


def test_window_across_the_spring_clock_change():
    # Berlin moves from UTC+1 to UTC+2 on 31 March 2024: the end is still local midnight.
    window = access_window(
        study_date=datetime.date(2024, 3, 24),
        received_at=RECEIVED,
        period_days=7,
        extended_through=None,
    )
    assert window.closes_at().astimezone(datetime.UTC) == datetime.datetime(
        2024, 3, 31, 22, 0, tzinfo=datetime.UTC
    )


@pytest.mark.parametrize(
    ("period", "last_valid", "first_invalid"),
    [
        (ServerSetup.AccessPeriod.ONE_WEEK, (2024, 1, 22), (2024, 1, 23)),
        (ServerSetup.AccessPeriod.ONE_MONTH, (2024, 2, 14), (2024, 2, 15)),
    ],
)
def test_patient_page_at_the_window_boundaries(
    client, clock, setup, make_study, period, last_valid, first_invalid
):
    setup.access_period_days = period
    setup.save()
    clock.set(_at(2024, 1, 15, 9, 0))
    study = make_study(study_date="20240115")
    _row, token = services.token_ensure(study=study)

    clock.set(_at(*last_valid, 23, 59, 59))
    assert client.get(f"/token?{token}").status_code == 200

    clock.set(_at(*first_invalid, 0, 0, 0))
    response = client.get(f"/token?{token}")
    assert response.status_code == 410
    assert "This link has expired" in response.text
    expected_day = datetime.date(*last_valid)
    assert f"{expected_day.day} {expected_day:%B %Y}" in response.text


def test_patient_page_with_unlimited_period_works_decades_later(client, clock, setup, make_study):
    setup.access_period_days = ServerSetup.AccessPeriod.UNLIMITED
    setup.save()
    study = make_study(study_date="20240115")
    _row, token = services.token_ensure(study=study)
    clock.set(_at(2064, 1, 15, 12, 0))
    response = client.get(f"/token?{token}")
    assert response.status_code == 200
    assert "with no end date" in response.text


def test_patient_page_before_the_study_date_says_when_it_opens(client, clock, setup, make_study):
    clock.set(_at(2024, 1, 10, 12, 0))
    study = make_study(study_date="20240115")
    _row, token = services.token_ensure(study=study)
    response = client.get(f"/token?{token}")
    assert response.status_code == 403
    assert "15 January 2024" in response.text
    assert study.patient.name not in response.text


def test_extended_link_works_after_its_period(client, clock, setup, make_study):
    setup.access_period_days = ServerSetup.AccessPeriod.ONE_WEEK
    setup.save()
    clock.set(_at(2024, 1, 15, 9, 0))
    study = make_study(study_date="20240115")
    _row, token = services.token_ensure(study=study)
    services.token_extend(study=study, through=datetime.date(2024, 2, 29))
    clock.set(_at(2024, 2, 29, 23, 59, 59))
    assert client.get(f"/token?{token}").status_code == 200
    clock.set(_at(2024, 3, 1, 0, 0, 0))
    assert client.get(f"/token?{token}").status_code == 410
