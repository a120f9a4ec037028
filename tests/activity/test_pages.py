"""The physicians' pages record what they show: search, patient, study, series, report attached.

Driven through the test client on the real pages (``studies.views``), as a physician would.
"""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.uid import generate_uid
from pypdf import PdfWriter

from activity.models import Connection, Event
from studies.models import Instance, Patient
from studies.services import instance_ingest
from tests.activity.conftest import log_in

pytestmark = pytest.mark.django_db


def _pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_physicians_walk_through_the_archive_is_recorded_in_order(physician, dicom_bytes):
    study_uid, series_uid = generate_uid(), generate_uid()
    outcome = instance_ingest(
        file=dicom_bytes(study_uid=study_uid, series_uid=series_uid, patient_name="MÜLLER^ANNA"),
        source=Instance.Source.IMPORT,
    )
    assert outcome.ok, outcome.reason
    patient = Patient.objects.get()
    physician.can_upload = True
    physician.save(update_fields=["can_upload"])
    client = log_in(physician, address="192.0.2.77")

    assert client.get("/studies/", {"patient_name": "muller"}).status_code == 200
    assert client.get(f"/studies/patient/{patient.pk}/").status_code == 200
    assert client.get(f"/studies/study/{study_uid}/").status_code == 200
    assert client.get(f"/studies/series/{series_uid}/").status_code == 200
    upload = SimpleUploadedFile("report.pdf", _pdf(), content_type="application/pdf")
    response = client.post(f"/studies/study/{study_uid}/reports/", {"file": upload})
    assert response.status_code == 302

    conn = Connection.objects.get(username="drhouse")
    assert conn.client_address == "192.0.2.77"
    events = list(conn.events.order_by("at", "pk"))
    assert [e.kind for e in events] == [
        Event.Kind.LOGIN,
        Event.Kind.SEARCH,
        Event.Kind.PATIENT_VIEWED,
        Event.Kind.STUDY_VIEWED,
        Event.Kind.SERIES_VIEWED,
        Event.Kind.REPORT_ATTACHED,
    ]
    search, patient_viewed, study_viewed, series_viewed, report = events[1:]
    assert search.detail["patient_name"] == "muller"
    assert patient_viewed.patient_name == "MÜLLER^ANNA"
    assert study_viewed.study_uid == study_uid
    assert series_viewed.study_uid == study_uid
    assert series_viewed.detail["series_uid"] == series_uid
    assert report.study_uid == study_uid and report.patient_name == "MÜLLER^ANNA"


def test_an_outsider_gets_no_page_and_no_event(physician, dicom_bytes, client):
    study_uid = generate_uid()
    instance_ingest(file=dicom_bytes(study_uid=study_uid), source=Instance.Source.IMPORT)
    response = client.get(f"/studies/study/{study_uid}/")
    assert response.status_code == 302
    assert not Event.objects.exists()
