"""The physicians' pages: who may see them, what they link to, escaping, query counts, activity."""

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from activity.models import Event
from studies.models import Instance, Patient, Series, Study, StudyReport
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes

PASSWORD = "Sound-Pass-2024"
STUDY_UID = "1.2.826.0.1.3680043.8.498.100"
SERIES_UID = "1.2.826.0.1.3680043.8.498.101"
OTHER_STUDY_UID = "1.2.826.0.1.3680043.8.498.200"


def ingest(**fields: object) -> None:
    outcome = instance_ingest(file=to_bytes(make_dataset(**fields)), source=Instance.Source.IMPORT)
    assert outcome.ok, outcome.reason


@pytest.fixture
def archive(db) -> None:
    for number in (1, 2, 3):
        ingest(
            patient_name="DOE^JOHN",
            patient_id="PAT-1",
            study_uid=STUDY_UID,
            series_uid=SERIES_UID,
            InstanceNumber=number,
            StudyDescription="CT CHEST",
            SeriesDescription="AXIAL",
        )
    ingest(
        patient_name="DOE^JOHN",
        patient_id="PAT-1",
        study_uid=OTHER_STUDY_UID,
        study_date="20230101",
        StudyDescription="CT HEAD",
    )


@pytest.fixture
def physician(db) -> User:
    return User.objects.create_user(username="drhouse", password=PASSWORD, real_name="Dr House")


@pytest.fixture
def logged_in(client, physician) -> Client:
    client.force_login(physician)
    return client


def urls() -> list[str]:
    """Every page and file of the physicians' part for the archive fixture."""
    patient = Patient.objects.get()
    report = StudyReport.objects.first()
    pages = [
        "/studies/",
        "/studies/?patient_name=doe",
        f"/studies/patient/{patient.pk}/",
        f"/studies/study/{STUDY_UID}/",
        f"/studies/series/{SERIES_UID}/",
        f"/studies/series/{SERIES_UID}/thumbnail",
    ]
    if report:
        pages.append(f"/studies/study/{STUDY_UID}/reports/{report.pk}/")
    return pages


# Who may see what -----------------------------------------------------------------------------


def test_outsider_is_sent_to_log_in_from_every_page(client, archive):
    for url in urls():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


def test_outsider_cannot_attach_a_report(client, archive):
    response = client.post(f"/studies/study/{STUDY_UID}/reports/", {"file": b""})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not StudyReport.objects.exists()


def test_inactive_user_gets_nothing(client, archive, physician):
    client.force_login(physician)
    User.objects.filter(pk=physician.pk).update(is_active=False)
    for url in urls():
        assert client.get(url).status_code == 302, url


def test_logged_in_user_sees_every_page(logged_in, archive):
    for url in urls():
        assert logged_in.get(url).status_code == 200, url


def test_unknown_objects_are_404(logged_in, archive):
    for url in (
        "/studies/patient/999999/",
        "/studies/study/1.2.3.4/",
        "/studies/series/1.2.3.4/",
        "/studies/series/1.2.3.4/thumbnail",
        f"/studies/study/{STUDY_UID}/reports/999999/",
    ):
        assert logged_in.get(url).status_code == 404, url


def test_no_path_in_a_url_reaches_the_file_system(logged_in, archive, settings):
    stored = Instance.objects.first().path
    for url in (
        "/studies/study/..%2F..%2F..%2Fetc%2Fpasswd/",
        "/studies/study/%2Fetc%2Fpasswd/",
        "/studies/series/..%2F..%2Fsecret_key/thumbnail",
        f"/studies/series/{stored.replace('/', '%2F')}/thumbnail",
        "/studies/study/../../etc/passwd/",
        f"/studies/study/{STUDY_UID}/reports/..%2F..%2Fsecret_key/",
    ):
        assert logged_in.get(url).status_code == 404, url


def test_report_of_another_study_is_not_served_through_this_one(logged_in, archive, tmp_path):
    other = Study.objects.get(study_uid=OTHER_STUDY_UID)
    report = StudyReport.objects.create(study=other, title="r.pdf", size=1, file="x/r.pdf")
    assert logged_in.get(f"/studies/study/{STUDY_UID}/reports/{report.pk}/").status_code == 404


def test_pages_refuse_other_methods(logged_in, archive):
    assert logged_in.post("/studies/").status_code == 405
    assert logged_in.post(f"/studies/study/{STUDY_UID}/").status_code == 405
    assert logged_in.get(f"/studies/study/{STUDY_UID}/reports/").status_code == 405


def test_forms_carry_a_csrf_token_and_posts_without_one_are_refused(archive, physician):
    client = Client(enforce_csrf_checks=True)
    client.force_login(physician)
    page = client.get(f"/studies/study/{STUDY_UID}/").content.decode()
    for form in re.findall(r'<form method="post".*?</form>', page, flags=re.S):
        assert "csrfmiddlewaretoken" in form
    response = client.post(f"/studies/study/{STUDY_UID}/reports/", {"file": b"%PDF-"})
    assert response.status_code == 403
    assert client.post("/logout/").status_code == 403


# What the pages show and link to --------------------------------------------------------------


def test_query_results_link_every_action(logged_in, archive):
    content = logged_in.get("/studies/", {"patient_name": "doe"}).content.decode()
    patient = Patient.objects.get()
    assert f'href="/studies/patient/{patient.pk}/download"' in content
    assert f'href="/weasis/launch/patient/{patient.pk}"' in content
    assert (
        f'href="/ohif/viewer?StudyInstanceUIDs={STUDY_UID}&amp;StudyInstanceUIDs={OTHER_STUDY_UID}"'
        in content
    )
    assert f'href="/studies/patient/{patient.pk}/"' in content
    for uid in (STUDY_UID, OTHER_STUDY_UID):
        assert f'href="/studies/study/{uid}/download"' in content
        assert f'href="/weasis/launch/study/{uid}"' in content
        assert f'href="/ohif/viewer?StudyInstanceUIDs={uid}"' in content
        assert f'data-patient-link="/studies/study/{uid}/patient-link"' in content
        assert f'href="/studies/study/{uid}/"' in content
        assert f'data-attach-report="/studies/study/{uid}/reports/"' in content
    # One report form for the whole page, opened for the study whose button was pressed.
    assert content.count('<dialog id="attach-dialog"') == 1


def test_study_row_shows_its_facts(logged_in, archive):
    content = logged_in.get("/studies/", {"patient_name": "doe"}).content.decode()
    assert "2024-01-15" in content and "CT CHEST" in content
    assert "ACC001" in content and "HOUSE, GREGORY" in content
    assert "1 / 3" in content


def test_patient_page_lists_all_studies_newest_first(logged_in, archive):
    patient = Patient.objects.get()
    response = logged_in.get(f"/studies/patient/{patient.pk}/")
    assert [s.study_uid for s in response.context["studies"]] == [STUDY_UID, OTHER_STUDY_UID]
    assert b"DOE, JOHN" in response.content
    assert b"2 studies" in response.content


def test_study_page_lists_series_with_thumbnails_and_actions(logged_in, archive):
    content = logged_in.get(f"/studies/study/{STUDY_UID}/").content.decode()
    assert f'action="/studies/study/{STUDY_UID}/reports/?next=' in content
    assert f'src="/studies/series/{SERIES_UID}/thumbnail"' in content
    assert f'href="/studies/series/{SERIES_UID}/download"' in content
    assert f'href="/weasis/launch/series/{SERIES_UID}"' in content
    assert (
        f'href="/ohif/viewer?StudyInstanceUIDs={STUDY_UID}&amp;SeriesInstanceUIDs={SERIES_UID}"'
        in content
    )
    assert "AXIAL" in content and "3 images" in content


def test_series_page_lists_instances_in_order(logged_in, archive):
    response = logged_in.get(f"/studies/series/{SERIES_UID}/")
    assert [i.instance_number for i in response.context["page"]] == [1, 2, 3]


def test_dicom_text_with_markup_and_quotes_shows_as_text(logged_in, db):
    name = '<script>alert("name")</script>^O\'NEIL'
    description = 'ABDOMEN "RUQ" <img src=x onerror=alert(1)>'
    ingest(
        patient_name=name,
        patient_id='ID"<b>',
        study_uid=STUDY_UID,
        series_uid=SERIES_UID,
        StudyDescription=description,
        SeriesDescription="<svg onload=alert(2)>",
        ReferringPhysicianName="<i>EVIL</i>",
        InstitutionName="A&B <u>",
        AccessionNumber="<a>",
    )
    patient = Patient.objects.get()
    pages = [
        logged_in.get("/studies/", {"patient_name": "*"}),
        logged_in.get(f"/studies/patient/{patient.pk}/"),
        logged_in.get(f"/studies/study/{STUDY_UID}/"),
        logged_in.get(f"/studies/series/{SERIES_UID}/"),
    ]
    for response in pages:
        content = response.content.decode()
        for raw in ("<script>alert", "<img src=x", "<svg onload", "<i>EVIL", 'ID"<b>', "<u>"):
            assert raw not in content
    study_page = pages[2].content.decode()
    assert html.escape(description) in study_page
    assert html.escape("<svg onload=alert(2)>") in study_page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;, O&#x27;NEIL" in study_page


# Query counts ---------------------------------------------------------------------------------


def query_count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def add_patients(count: int, *, first: int) -> None:
    for number in range(first, first + count):
        for study in range(2):
            ingest(
                patient_name=f"ROE^{number}",
                patient_id=f"R{number}",
                study_date=f"2024010{study + 1}",
                modality="CT" if study else "MR",
            )
    for study in Study.objects.filter(patient__patient_id__startswith="R"):
        StudyReport.objects.create(study=study, title="a.pdf", size=1, file="x/a.pdf")


def test_query_page_queries_do_not_grow_with_the_results(logged_in, db, django_assert_num_queries):
    url = "/studies/?patient_name=roe"
    add_patients(1, first=0)
    logged_in.get(url)  # The first request opens the activity connection.
    few = query_count(logged_in, url)
    add_patients(6, first=1)
    with django_assert_num_queries(few):
        response = logged_in.get(url)
    assert len(response.context["results"]) == 7
    assert sum(len(r.studies) for r in response.context["results"]) == 14


def test_patient_and_study_pages_do_not_grow_with_their_content(
    logged_in, db, django_assert_num_queries
):
    ingest(patient_name="ROE^0", patient_id="R0", study_uid=STUDY_UID, series_uid=SERIES_UID)
    patient = Patient.objects.get()
    study = Study.objects.get()
    StudyReport.objects.create(study=study, title="a.pdf", size=1, file="x/a.pdf")
    logged_in.get("/studies/")
    patient_few = query_count(logged_in, f"/studies/patient/{patient.pk}/")
    study_few = query_count(logged_in, f"/studies/study/{STUDY_UID}/")
    for number in range(5):
        ingest(patient_name="ROE^0", patient_id="R0", study_uid=STUDY_UID, SeriesNumber=number)
        ingest(patient_name="ROE^0", patient_id="R0", study_date=f"2022010{number + 1}")
    for other in Study.objects.exclude(pk=study.pk):
        StudyReport.objects.create(study=other, title="b.pdf", size=1, file="x/b.pdf")
    assert Series.objects.filter(study=study).count() == 6
    with django_assert_num_queries(patient_few):
        logged_in.get(f"/studies/patient/{patient.pk}/")
    with django_assert_num_queries(study_few):
        logged_in.get(f"/studies/study/{STUDY_UID}/")


# Activity -------------------------------------------------------------------------------------


def test_pages_record_what_was_looked_at(logged_in, archive, physician):
    patient = Patient.objects.get()
    logged_in.get("/studies/", {"patient_name": "doe", "modality": "CT", "search": "all"})
    logged_in.get(f"/studies/patient/{patient.pk}/")
    logged_in.get(f"/studies/study/{STUDY_UID}/")
    logged_in.get(f"/studies/series/{SERIES_UID}/")
    events = {e.kind: e for e in Event.objects.filter(connection__user=physician)}
    assert events["search"].detail == {"patient_name": "doe", "modality": "CT"}
    assert events["patient_viewed"].patient_name == "DOE^JOHN"
    assert events["study_viewed"].study_uid == STUDY_UID
    assert events["study_viewed"].patient_name == "DOE^JOHN"
    assert events["series_viewed"].study_uid == STUDY_UID
    assert events["series_viewed"].detail == {"series_uid": SERIES_UID}


def test_query_form_has_labelled_fields_and_keeps_what_was_typed(logged_in, archive):
    content = logged_in.get(
        "/studies/",
        {"patient_name": 'doe"<', "modality": "CT", "search": "dated", "date_from": "2024-01-01"},
    ).content.decode()
    labels = [
        "Patient name",
        "Patient ID",
        "Sex",
        "Birth date",
        "Study date from",
        "Study date to",
        "Accession number",
        "Institution",
        "Referring physician",
        "Modality",
        "Search",
    ]
    for label in labels:
        assert re.search(rf'<label for="id_\w+">{label}</label>', content), label
    assert 'name="patient_name" id="id_patient_name" value="doe&quot;&lt;"' in content
    assert '<option value="CT" selected>CT</option>' in content
    assert '<option value="dated" selected>With Study Date</option>' in content
    assert 'type="date" name="date_from" id="id_date_from" value="2024-01-01"' in content


def test_invalid_field_is_marked_for_assistive_technology(logged_in, archive):
    content = logged_in.get("/studies/", {"search": "dated", "date_from": "2024-13-45"}).content
    assert b'aria-invalid="true"' in content
    assert b"Enter a valid date." in content


def test_a_patient_shows_his_most_recent_matching_studies_up_to_a_limit(logged_in, db):
    for day in range(1, 8):
        ingest(patient_name="ROE^MANY", patient_id="R1", study_date=f"2024010{day}")
    response = logged_in.get("/studies/", {"patient_name": "roe"})
    (result,) = response.context["results"]
    assert [s.study_date.day for s in result.studies] == [7, 6, 5, 4, 3]
    assert result.matched == 7 and len(result.all_study_uids) == 7
    assert b"The 5 most recent of 7 matching studies." in response.content
    patient = Patient.objects.get()
    assert len(logged_in.get(f"/studies/patient/{patient.pk}/").context["studies"]) == 7
