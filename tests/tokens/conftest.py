"""Fixtures for patient links: studies ingested for real, a movable clock, the server setup."""

import datetime
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from pydicom.uid import generate_uid

from pacsweb.models import ServerSetup
from studies.models import Instance, Study, StudyReport
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes
from tokens import services

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """The time that ``django.utils.timezone.now`` returns while the fixture is active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=datetime.UTC)
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def set(self, moment: datetime.datetime) -> None:
        assert moment.tzinfo is not None, "the clock takes aware datetimes only"
        self.now = moment

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def setup(db) -> ServerSetup:
    """A clinic's setup: a public name on a non-default port, one-month links."""
    server_setup = ServerSetup.get()
    server_setup.institution = "St. Mary's Clinic"
    server_setup.department = "Radiology"
    server_setup.web_server_name = "pacs.example.org"
    server_setup.web_port = 8443
    server_setup.ssl_enabled = True
    server_setup.access_period_days = ServerSetup.AccessPeriod.ONE_MONTH
    server_setup.save()
    return server_setup


@pytest.fixture
def make_study(db) -> Callable[..., Study]:
    """``make_study(patient_name=..., study_date=..., series=2, per_series=2)``: ingested for real."""

    def make(
        *,
        patient_name: str = "DOE^JANE",
        patient_id: str | None = None,
        study_date: str = "20240115",
        series: int = 2,
        per_series: int = 2,
        modalities: tuple[str, ...] = ("CT", "MR"),
        **attributes: object,
    ) -> Study:
        study_uid = generate_uid()
        patient_id = patient_id or f"PID-{study_uid[-8:]}"
        for series_index in range(series):
            series_uid = generate_uid()
            for number in range(1, per_series + 1):
                ds = make_dataset(
                    patient_name=patient_name,
                    patient_id=patient_id,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    modality=modalities[series_index % len(modalities)],
                    study_date=study_date,
                    **attributes,
                )
                ds.SeriesNumber = series_index + 1
                ds.InstanceNumber = number
                outcome = instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT)
                assert outcome.ok, outcome.reason
        return Study.objects.select_related("patient").get(study_uid=study_uid)

    return make


@pytest.fixture
def add_report(db) -> Callable[..., StudyReport]:
    def add(study: Study, *, title: str = "Report.pdf", content: bytes | None = None):
        content = content or b"%PDF-1.4\n% report of " + study.study_uid.encode() + b"\n%%EOF\n"
        return StudyReport.objects.create(
            study=study,
            title=title,
            file=ContentFile(content, name="report.pdf"),
            size=len(content),
        )

    return add


@pytest.fixture
def link_of() -> Callable[[Study], str]:
    """The path a patient opens for this study: ``/token?TOKEN``."""

    def path(study: Study) -> str:
        _row, token = services.token_ensure(study=study)
        return f"/token?{token}"

    return path
