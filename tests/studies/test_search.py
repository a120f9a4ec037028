"""The query page and the one search path behind it: every field, combinations, wildcards, dates."""

import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from studies.models import Instance
from studies.selectors import StudyQuery, patients_search, studies_search
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes


def ingest(**fields: object) -> None:
    outcome = instance_ingest(file=to_bytes(make_dataset(**fields)), source=Instance.Source.IMPORT)
    assert outcome.ok, outcome.reason


@pytest.fixture(scope="module")
def _module_archive(django_db_setup, django_db_blocker):
    """The archive below, ingested once for the module and rolled back after it."""
    with django_db_blocker.unblock(), transaction.atomic():
        _ingest_archive()
        yield
        transaction.set_rollback(True)


@pytest.fixture
def archive(_module_archive, db) -> None:
    """Four patients, five studies, with the values each field is searched for."""


def _ingest_archive() -> None:
    ingest(
        patient_name="DOE^JOHN",
        patient_id="PAT-1001",
        PatientSex="M",
        PatientBirthDate="19640312",
        study_date="20240115",
        AccessionNumber="ACC-24-001",
        InstitutionName="General Hospital",
        ReferringPhysicianName="HOUSE^GREGORY",
        modality="CT",
        StudyDescription="CT CHEST",
    )
    ingest(
        patient_name="DOE^JOHN",
        patient_id="PAT-1001",
        PatientSex="M",
        PatientBirthDate="19640312",
        study_date="20230602",
        AccessionNumber="ACC-23-917",
        InstitutionName="General Hospital",
        ReferringPhysicianName="WILSON^JAMES",
        modality="MR",
        StudyDescription="MR KNEE",
    )
    ingest(
        patient_name="MÜLLER^ANNA",
        patient_id="PAT-2002",
        PatientSex="F",
        PatientBirthDate="19881120",
        study_date="20240301",
        AccessionNumber="ACC-24-050",
        InstitutionName="Hôpital Saint-Éloi",
        ReferringPhysicianName="CUDDY^LISA",
        modality="CR",
        StudyDescription="CHEST PA",
    )
    # One study with two modalities: the CT series and a structured report.
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    for modality in ("PT", "CT"):
        ingest(
            patient_name="DOERING^KARL",
            patient_id="XYZ-3",
            PatientSex="O",
            PatientBirthDate="19500101",
            study_uid=study_uid,
            study_date="20240120",
            AccessionNumber="B77",
            InstitutionName="Clinic North",
            ReferringPhysicianName="HOUSE^GREGORY",
            modality=modality,
            StudyDescription="PET-CT",
        )
    ingest(
        patient_name="SMITH^JANE",
        patient_id="PAT-4004",
        PatientSex="F",
        PatientBirthDate="19700707",
        study_date="20220910",
        AccessionNumber="ACC-22-300",
        InstitutionName="General Hospital",
        ReferringPhysicianName="HOUSE^GREGORY",
        modality="US",
        StudyDescription="ABDOMEN",
    )


@pytest.fixture
def physician(client, db):
    user = User.objects.create_user(username="drhouse", password="Sound-Pass-2024")
    client.force_login(user)
    return client


def names(**criteria: object) -> list[str]:
    """Patient names the search finds, in result order."""
    return [p.name for p in patients_search(StudyQuery(**criteria))]


def descriptions(**criteria: object) -> list[str]:
    return [s.description for s in studies_search(StudyQuery(**criteria))]


def page_names(client, **params: str) -> list[str]:
    """Patient names on the query page for these form fields."""
    response = client.get("/studies/", params)
    assert response.status_code == 200
    return [r.patient.name for r in response.context["results"]]


# Person names: prefix, case, accents, wildcards ------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("doe", ["DOERING^KARL", "DOE^JOHN"]),
        ("DOE^JOHN", ["DOE^JOHN"]),
        ("doe^j", ["DOE^JOHN"]),
        ("muller", ["MÜLLER^ANNA"]),
        ("MÜLLER", ["MÜLLER^ANNA"]),
        ("Müller^Anna", ["MÜLLER^ANNA"]),
        ("*ller*", ["MÜLLER^ANNA"]),
        ("d?e^*", ["DOE^JOHN"]),
        ("*^jane", ["SMITH^JANE"]),
        ("nobody", []),
    ],
)
def test_patient_name_is_a_case_and_accent_insensitive_prefix(archive, typed, expected):
    assert names(patient_name=typed) == expected


def test_query_page_searches_names_like_the_selector(archive, physician):
    assert page_names(physician, patient_name="doe") == ["DOERING^KARL", "DOE^JOHN"]
    assert page_names(physician, patient_name="muller") == ["MÜLLER^ANNA"]


# Every other field ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"patient_id": "PAT-1001"}, ["DOE^JOHN"]),
        ({"patient_id": "PAT-1"}, []),
        ({"patient_id": "PAT-?00?"}, ["MÜLLER^ANNA", "DOE^JOHN", "SMITH^JANE"]),
        ({"sex": "F"}, ["MÜLLER^ANNA", "SMITH^JANE"]),
        ({"sex": "O"}, ["DOERING^KARL"]),
        ({"birth_date": "1988-11-20"}, ["MÜLLER^ANNA"]),
        ({"accession_number": "ACC-23-917"}, ["DOE^JOHN"]),
        ({"accession_number": "ACC-24-*"}, ["MÜLLER^ANNA", "DOE^JOHN"]),
        ({"institution": "general"}, ["DOE^JOHN", "SMITH^JANE"]),
        ({"institution": "hopital saint"}, ["MÜLLER^ANNA"]),
        ({"institution": "*north"}, ["DOERING^KARL"]),
        ({"referring_physician": "house"}, ["DOERING^KARL", "DOE^JOHN", "SMITH^JANE"]),
        ({"referring_physician": "WILSON^JAMES"}, ["DOE^JOHN"]),
        ({"modality": "CR"}, ["MÜLLER^ANNA"]),
        ({"modality": "PT"}, ["DOERING^KARL"]),
    ],
)
def test_query_page_searches_every_field(archive, physician, params, expected):
    assert page_names(physician, **params) == expected


def test_modality_matches_any_series_of_the_study(archive, physician):
    response = physician.get("/studies/", {"modality": "CT"})
    results = response.context["results"]
    assert [r.patient.name for r in results] == ["DOERING^KARL", "DOE^JOHN"]
    karl = results[0]
    assert [s.description for s in karl.studies] == ["PET-CT"]
    assert karl.studies[0].modality_list == ["CT", "PT"]


def test_only_matching_studies_are_listed_under_a_patient(archive, physician):
    response = physician.get("/studies/", {"patient_name": "doe^john", "modality": "MR"})
    (john,) = response.context["results"]
    assert [s.description for s in john.studies] == ["MR KNEE"]
    # The viewer links still open all the patient's studies, most recent first.
    assert len(john.all_study_uids) == 2
    assert b"1 of 2 studies match this search." in response.content


def test_combinations_narrow_the_results(archive, physician):
    assert page_names(physician, referring_physician="house", sex="F") == ["SMITH^JANE"]
    assert page_names(physician, patient_name="doe", modality="CT", institution="general") == [
        "DOE^JOHN"
    ]
    dated = {"search": "dated", "date_from": "2024-01-01", "date_to": "2024-01-31"}
    assert page_names(physician, patient_name="doe*", modality="CT", **dated) == [
        "DOERING^KARL",
        "DOE^JOHN",
    ]
    assert page_names(physician, patient_name="doe*", modality="MR", **dated) == []


# Study dates and the "Search" choice ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        ({"date_from": "2024-01-01", "date_to": "2024-01-31"}, ["CT CHEST", "PET-CT"]),
        ({"date_from": "2024-01-20", "date_to": "2024-01-20"}, ["PET-CT"]),
        ({"date_from": "2024-01-16"}, ["CHEST PA", "PET-CT"]),
        ({"date_to": "2022-12-31"}, ["ABDOMEN"]),
        ({"date_from": "20230101", "date_to": "20231231"}, ["MR KNEE"]),
    ],
)
def test_with_study_date_restricts_to_the_range(archive, physician, dates, expected):
    response = physician.get("/studies/", {"search": "dated", **dates})
    found = sorted(s.description for r in response.context["results"] for s in r.studies)
    assert found == sorted(expected)


def test_dates_are_ignored_unless_search_is_with_study_date(archive, physician):
    response = physician.get("/studies/", {"date_from": "2024-01-01", "date_to": "2024-01-31"})
    assert len(response.context["results"]) == 4
    assert "choose “With Study Date”" in response.content.decode()


def test_with_study_date_needs_a_date(archive, physician):
    response = physician.get("/studies/", {"search": "dated"})
    assert "results" not in response.context
    assert b"Give a study date, or choose another kind of search." in response.content


def test_reversed_date_range_is_refused(archive, physician):
    response = physician.get(
        "/studies/", {"search": "dated", "date_from": "2024-02-01", "date_to": "2024-01-01"}
    )
    assert b"The end date is before the start date." in response.content


def test_malformed_date_is_refused_with_a_message(archive, physician):
    response = physician.get("/studies/", {"search": "dated", "date_from": "not-a-date"})
    assert b"Enter a valid date." in response.content
    assert "results" not in response.context


@pytest.mark.parametrize(
    ("choice", "days_ago", "found"),
    [
        ("today", 0, True),
        ("today", 1, False),
        ("yesterday", 1, True),
        ("7d", 6, True),
        ("7d", 7, False),
        ("30d", 29, True),
        ("30d", 30, False),
    ],
)
def test_relative_date_choices(db, physician, choice, days_ago, found):
    day = timezone.localdate() - datetime.timedelta(days=days_ago)
    ingest(patient_name="RECENT^ONE", study_date=day.strftime("%Y%m%d"))
    ingest(patient_name="OLD^ONE", study_date="19990101")
    names_found = page_names(physician, search=choice, patient_name="*^one")
    assert names_found == (["RECENT^ONE"] if found else [])


# Order and pages ------------------------------------------------------------------------------


def test_patients_come_most_recent_study_first(archive, physician):
    assert page_names(physician, patient_name="") == [
        "MÜLLER^ANNA",
        "DOERING^KARL",
        "DOE^JOHN",
        "SMITH^JANE",
    ]
    response = physician.get("/studies/", {"patient_name": "doe^john"})
    (john,) = response.context["results"]
    assert [s.study_date.isoformat() for s in john.studies] == ["2024-01-15", "2023-06-02"]


def test_results_are_paginated(db, physician):
    for number in range(23):
        ingest(
            patient_name=f"PATIENT^{number:02d}",
            patient_id=f"P{number:02d}",
            study_date=(datetime.date(2024, 1, 1) + datetime.timedelta(days=number)).strftime(
                "%Y%m%d"
            ),
        )
    first = physician.get("/studies/", {"patient_name": "patient"})
    assert first.context["page"].paginator.count == 23
    assert [r.patient.name for r in first.context["results"]][:2] == ["PATIENT^22", "PATIENT^21"]
    assert len(first.context["results"]) == 20
    assert b"page=2" in first.content and b"patient_name=patient" in first.content
    second = physician.get("/studies/", {"patient_name": "patient", "page": "2"})
    assert [r.patient.name for r in second.context["results"]] == [
        "PATIENT^02",
        "PATIENT^01",
        "PATIENT^00",
    ]
    # A page past the end shows the last one rather than an error.
    assert (
        physician.get("/studies/", {"patient_name": "patient", "page": "99"}).context["page"].number
        == 2
    )


def test_empty_search_lists_everything_and_no_search_lists_nothing(archive, physician):
    assert len(physician.get("/studies/", {"patient_name": ""}).context["results"]) == 4
    first_visit = physician.get("/studies/")
    assert "results" not in first_visit.context
    assert b"Find a patient" in first_visit.content


def test_no_match_says_so(archive, physician):
    response = physician.get("/studies/", {"patient_name": "zzz"})
    assert response.context["results"] == []
    assert b"No studies match" in response.content


# Through the selectors directly (the same path QIDO-RS and C-FIND use) ---------------------------


def test_selector_study_date_range_and_modalities(archive):
    assert descriptions(study_date="20240101-20240131", modalities=["CT"]) == [
        "PET-CT",
        "CT CHEST",
    ]
    assert descriptions(study_date="-20221231") == ["ABDOMEN"]
    assert descriptions(referring_physician="cuddy") == ["CHEST PA"]


def test_modalities_in_study_match_whole_values_in_any_position(db):
    study_uid = "1.2.826.0.1.3680043.8.498.9"
    for modality in ("CT", "MR", "PT"):
        ingest(patient_id="MOD-1", study_uid=study_uid, modality=modality)
    ingest(patient_id="MOD-2", modality="SR")
    # Only these two patients (the module's archive may be in the database as well).
    ours = {"patient_id": "MOD-*"}
    for found in (["CT"], ["MR"], ["PT"], ["pt"], ["XA", "MR"], ["XA\\PT"]):
        assert descriptions(modalities=found, **ours) == ["CT HEAD"], found
    for missed in (["T"], ["C"], ["%"], ["_T"], ["C%"]):
        assert descriptions(modalities=missed, **ours) == [], missed
    assert len(descriptions(modalities=["SR", "CT"], **ours)) == 2
