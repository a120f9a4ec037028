"""Fixtures for DICOMweb and the viewers: studies ingested for real, and the three kinds of caller."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from pydicom.uid import generate_uid

from pacsweb.models import ServerSetup
from studies.models import Instance, Study
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tokens.services import token_ensure


@dataclass
class StudyFiles:
    study: Study
    series_uids: list[str]
    sop_uids: list[str]


def ingest(ds) -> None:
    outcome = instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT)
    assert outcome.status == Status.STORED, outcome


@pytest.fixture
def make_study(db) -> Callable[..., StudyFiles]:
    """``make_study(series=(("CT", 3), ("MR", 2)), **attributes)``: ingested for real."""

    def make(*, series=(("CT", 3), ("MR", 2)), rows: int = 16, columns: int = 16, **attrs):
        study_uid = attrs.pop("study_uid", None) or generate_uid()
        series_uids, sop_uids = [], []
        for index, (modality, count) in enumerate(series, start=1):
            series_uid = generate_uid()
            series_uids.append(series_uid)
            for number in range(1, count + 1):
                ds = make_dataset(
                    study_uid=study_uid,
                    series_uid=series_uid,
                    modality=modality,
                    rows=rows,
                    columns=columns,
                    SeriesNumber=index,
                    InstanceNumber=number,
                    SeriesDescription=f"{modality} series {index}",
                    **attrs,
                )
                sop_uids.append(str(ds.SOPInstanceUID))
                ingest(ds)
        return StudyFiles(Study.objects.get(study_uid=study_uid), series_uids, sop_uids)

    return make


@pytest.fixture
def unlimited_links(db) -> ServerSetup:
    setup = ServerSetup.get()
    setup.access_period_days = ServerSetup.AccessPeriod.UNLIMITED
    setup.institution = "St. Mary's <Clinic>"
    setup.save()
    return setup


@pytest.fixture
def physician(db, django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="drhouse", password="x-Correct-42")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def uploader(db, django_user_model) -> Client:
    user = django_user_model.objects.create_user(
        username="uploader", password="x-Correct-42", can_upload=True
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def patient_client(unlimited_links) -> Callable[[Study], Client]:
    """A browser that opened the patient link of ``study``."""

    def make(study: Study) -> Client:
        _token, text = token_ensure(study=study)
        client = Client()
        response = client.get("/token?" + text)
        assert response.status_code == 200, response.content[:500]
        return client

    return make
