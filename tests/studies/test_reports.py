"""Attaching PDF reports to a study: only real PDFs, bounded, stored under generated names."""

import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pypdf import PdfWriter

from accounts.models import User
from activity.models import Event
from studies import services, views
from studies.models import Instance, Study, StudyReport
from studies.services import ReportRejected, instance_ingest, study_report_attach
from tests.conftest import make_dataset, to_bytes

STUDY_UID = "1.2.826.0.1.3680043.8.498.300"
ATTACH = f"/studies/study/{STUDY_UID}/reports/"


def a_pdf(pages: int = 1, *, password: str = "") -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    if password:
        writer.encrypt(password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def study(db) -> Study:
    outcome = instance_ingest(
        file=to_bytes(make_dataset(study_uid=STUDY_UID)), source=Instance.Source.IMPORT
    )
    assert outcome.ok
    return Study.objects.get(study_uid=STUDY_UID)


@pytest.fixture
def reader(client, db) -> User:
    # Attaching reports is for every active web user, not only those who may upload images.
    user = User.objects.create_user(username="reader", password="Sound-Pass-2024")
    assert not user.can_upload
    client.force_login(user)
    return user


def stored_files() -> set[Path]:
    root = Path(StudyReport._meta.get_field("file").storage.location)
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def post(client, content: bytes, name: str = "report.pdf", **extra):
    return client.post(
        ATTACH + "?next=/studies/", {"file": SimpleUploadedFile(name, content)}, **extra
    )


def test_any_web_user_attaches_a_pdf_and_downloads_it_again(client, study, reader):
    pdf = a_pdf(2)
    before = stored_files()
    response = post(client, pdf, name="CT chest – findings.pdf")
    assert response.status_code == 302 and response["Location"] == "/studies/"
    report = StudyReport.objects.get()
    assert report.study == study and report.uploaded_by == reader
    assert report.title == "CT chest – findings.pdf" and report.size == len(pdf)
    # Stored under a generated name in the private folder, never the uploaded one.
    (new_file,) = stored_files() - before
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", new_file.name)
    assert new_file.read_bytes() == pdf
    assert new_file.stat().st_mode & 0o077 == 0

    download = client.get(f"/studies/study/{STUDY_UID}/reports/{report.pk}/")
    assert download["Content-Type"] == "application/pdf"
    assert download["Content-Disposition"].startswith("attachment;")
    assert b"".join(download.streaming_content) == pdf

    event = Event.objects.get(kind="report_attached")
    assert event.study_uid == STUDY_UID and event.patient_name == "DOE^JOHN"
    assert event.detail == {"report": report.title, "bytes": len(pdf)}


def test_attached_report_is_listed_on_the_study_and_query_pages(client, study, reader):
    post(client, a_pdf(), name="Findings.pdf")
    report = StudyReport.objects.get()
    link = f'href="/studies/study/{STUDY_UID}/reports/{report.pk}/"'
    assert link in client.get(f"/studies/study/{STUDY_UID}/").content.decode()
    assert link in client.get("/studies/", {"patient_name": "doe"}).content.decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some notes", "This is not a PDF file."),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "This is not a PDF file."),
        (b"%PDF-1.7\nthis is not the rest of a PDF\n%%EOF\n", "The PDF is damaged"),
        (b"", "The submitted file is empty."),
    ],
)
def test_files_that_are_not_pdfs_are_refused_and_nothing_is_kept(
    client, study, reader, content, message
):
    before = stored_files()
    response = post(client, content, name="report.pdf", follow=True)
    assert message in response.content.decode()
    assert not StudyReport.objects.exists()
    assert stored_files() == before
    assert not Event.objects.filter(kind="report_attached").exists()


def test_password_protected_pdf_is_refused(client, study, reader):
    response = post(client, a_pdf(password="secret"), follow=True)
    assert "protected by a password" in response.content.decode()
    assert not StudyReport.objects.exists()


def test_post_without_a_file_is_refused(client, study, reader):
    response = client.post(ATTACH, {}, follow=True)
    assert "The report was not attached: This field is required." in response.content.decode()
    assert not StudyReport.objects.exists()


def test_oversized_request_is_refused_before_it_is_read(client, study, reader, monkeypatch):
    monkeypatch.setattr(views, "REPORT_REQUEST_MAX_BYTES", 10_000)
    before = stored_files()
    response = post(client, a_pdf() + b"%" * 20_000, follow=True)
    assert "larger than 50 MB" in response.content.decode()
    assert not StudyReport.objects.exists()
    assert stored_files() == before


def test_service_refuses_a_pdf_over_the_limit(study, reader, monkeypatch):
    monkeypatch.setattr(services, "REPORT_MAX_BYTES", 1000)
    with pytest.raises(ReportRejected, match="larger than"):
        study_report_attach(
            study=study, file=io.BytesIO(a_pdf(20)), filename="big.pdf", user=reader
        )
    assert not StudyReport.objects.exists()


@pytest.mark.parametrize(
    ("sent", "title"),
    [
        ("C:\\Users\\doc\\Befund Müller.pdf", "Befund Müller.pdf"),
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("\x00\x1b[31m.pdf", "[31m.pdf"),
        ("", "report.pdf"),
    ],
)
def test_title_is_the_last_part_of_the_name_without_control_characters(study, reader, sent, title):
    report = study_report_attach(study=study, file=io.BytesIO(a_pdf()), filename=sent, user=reader)
    assert report.title == title
    assert "/" not in Path(report.file.name).name


def test_download_name_always_ends_in_pdf(client, study, reader):
    report = study_report_attach(
        study=study, file=io.BytesIO(a_pdf()), filename="Befund", user=reader
    )
    response = client.get(f"/studies/study/{STUDY_UID}/reports/{report.pk}/")
    assert 'filename="Befund.pdf"' in response["Content-Disposition"]
