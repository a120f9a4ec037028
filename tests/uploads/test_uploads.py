"""The upload page and the result page: permissions, mixed files, zips, HL7, bounds, CSRF."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from activity.models import Event
from studies.models import Instance, Patient
from tests.conftest import make_dataset, to_bytes
from tests.worklist.hl7_samples import radis_orm, text, without
from uploads.models import UploadBatch
from worklist.models import Order

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/upload/"


def dcm(**kwargs: object) -> bytes:
    return to_bytes(make_dataset(**kwargs))


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def upload_file(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


@pytest.fixture
def uploader(django_user_model):
    return django_user_model.objects.create_user(
        username="uploader", password="Upload-Pass-1", can_upload=True, real_name="Dr. Up Loader"
    )


@pytest.fixture
def reader(django_user_model):
    return django_user_model.objects.create_user(username="reader", password="Reader-Pass-1")


@pytest.fixture
def uploader_client(uploader) -> Client:
    client = Client()
    client.force_login(uploader)
    return client


def post(client: Client, files: list[tuple[str, bytes]], **extra: str):
    return client.post(
        UPLOAD_URL, {"files": [upload_file(name, data) for name, data in files], **extra}
    )


def test_anonymous_is_sent_to_login(client) -> None:
    for response in (client.get(UPLOAD_URL), post(client, [("a.dcm", dcm())])):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))
    assert not Instance.objects.exists()


def test_user_without_upload_right_gets_403_and_no_upload_section(client, reader) -> None:
    client.force_login(reader)
    page = client.get(UPLOAD_URL)
    assert page.status_code == 403
    assert b"Uploads are not enabled for your account" in page.content
    forged = post(client, [("a.dcm", dcm())])
    assert forged.status_code == 403
    assert b"Nothing was stored" in forged.content
    assert not Instance.objects.exists() and not UploadBatch.objects.exists()
    search = client.get(reverse("studies:query"))
    assert search.status_code == 200
    assert UPLOAD_URL.encode() not in search.content


def test_uploader_sees_the_upload_link_and_page(uploader_client) -> None:
    search = uploader_client.get(reverse("studies:query"))
    assert f'href="{UPLOAD_URL}"'.encode() in search.content
    page = uploader_client.get(UPLOAD_URL)
    assert page.status_code == 200
    assert b"webkitdirectory" in page.content
    assert b"uploads/upload.js" in page.content


def test_mixed_files_each_get_their_outcome_on_the_result_page(uploader_client, uploader) -> None:
    first = dcm(patient_name="MIXED^ONE", patient_id="MIX1")
    broken = make_dataset(patient_id="MIX2")
    broken.file_meta.MediaStorageSOPClassUID = broken.SOPClassUID
    broken.file_meta.MediaStorageSOPInstanceUID = broken.SOPInstanceUID
    del broken.StudyInstanceUID
    orders = text(radis_orm(control_id="UPL001")) + text(
        without(radis_orm(control_id="UPL002", accession="ACC2"), "PID")
    )
    files = [
        ("first.dcm", first),
        ("second-copy.dcm", first),
        ("cd.zip", zip_of({"DICOM/IM1": dcm(patient_id="MIX3"), "README.TXT": b"cd"})),
        ("notes.pdf", b"%PDF-1.4 not an image"),
        ("broken.dcm", to_bytes(broken)),
        ("orders.hl7", orders.encode("latin-1")),
        ("DICOMDIR", b"whatever the index holds"),
    ]
    response = post(uploader_client, files)
    assert response.status_code == 302
    batch = UploadBatch.objects.get()
    assert response["Location"] == reverse("uploads:result", args=[batch.pk])
    assert (batch.files, batch.stored, batch.duplicates, batch.rejected, batch.skipped) == (
        7,
        3,  # first.dcm, cd.zip/DICOM/IM1 and the first HL7 message.
        1,
        2,  # broken.dcm and the HL7 message without PID.
        3,  # cd.zip/README.TXT, notes.pdf and DICOMDIR.
    )
    outcome = {row["name"]: (row["status"], row["reason"]) for row in batch.results}
    assert outcome["first.dcm"] == ("stored", "")
    assert outcome["second-copy.dcm"] == ("duplicate", "already in the archive")
    assert outcome["cd.zip/DICOM/IM1"] == ("stored", "")
    assert outcome["cd.zip/README.TXT"][0] == "skipped"
    assert outcome["broken.dcm"] == ("rejected", "StudyInstanceUID is missing")
    assert outcome["orders.hl7 · message 1 (UPL001)"] == ("stored", "")
    status, reason = outcome["orders.hl7 · message 2 (UPL002)"]
    assert status == "rejected" and "PID" in reason
    assert (
        outcome["DICOMDIR"][0] == "skipped"
        and "the CD's index (DICOMDIR)" in outcome["DICOMDIR"][1]
    )

    assert Instance.objects.count() == 2
    assert set(Instance.objects.values_list("source", "source_detail")) == {("upload", "uploader")}
    assert Order.objects.filter(accession_number="ACC1001").exists()
    event = Event.objects.get(kind="upload")
    assert event.detail == {
        "batch": batch.pk,
        "files": 7,
        "stored": 3,
        "duplicates": 1,
        "rejected": 2,
        "skipped": 3,
        "failed": 0,
    }

    page = uploader_client.get(response["Location"])
    assert page.status_code == 200
    body = page.content.decode()
    assert "Upload finished, with problems" in body
    assert "StudyInstanceUID is missing" in body
    assert "Already in the archive" in body
    problems = uploader_client.get(response["Location"] + "?show=problems").content.decode()
    assert "broken.dcm" in problems and "first.dcm" not in problems


def test_folder_paths_from_the_page_script_name_the_files(uploader_client) -> None:
    names = ["CD/DICOM/IM1", "CD/DICOM/IM2"]
    response = post(
        uploader_client,
        [("IM1", dcm(patient_id="P1")), ("IM2", dcm(patient_id="P2"))],
        paths=json.dumps(names),
    )
    assert response.status_code == 302
    assert [row["name"] for row in UploadBatch.objects.get().results] == names


def test_paths_that_do_not_match_the_files_are_ignored(uploader_client) -> None:
    post(uploader_client, [("IM1", dcm())], paths=json.dumps(["a", "b"]))
    assert [row["name"] for row in UploadBatch.objects.get().results] == ["IM1"]


def test_zip_bomb_is_refused_and_the_other_files_are_stored(uploader_client) -> None:
    bait = dcm(patient_name="BOMB^PARTIAL", patient_id="BOMB")
    bomb = zip_of({"first.dcm": bait} | {f"zero{n}": b"\0" * 5_000_000 for n in range(3)})
    response = post(uploader_client, [("bomb.zip", bomb), ("good.dcm", dcm(patient_id="GOOD"))])
    assert response.status_code == 302
    batch = UploadBatch.objects.get()
    outcome = {row["name"]: (row["status"], row["reason"]) for row in batch.results}
    status, reason = outcome["bomb.zip"]
    assert status == "rejected"
    assert "zip refused" in reason and "zip bombs" in reason and "nothing in it" in reason
    assert outcome["good.dcm"] == ("stored", "")
    assert not Patient.objects.filter(name="BOMB^PARTIAL").exists()
    assert Instance.objects.count() == 1


def test_csrf_token_is_required(uploader) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(uploader)
    refused = post(client, [("a.dcm", dcm())])
    assert refused.status_code == 403
    assert not Instance.objects.exists() and not UploadBatch.objects.exists()
    client.get(UPLOAD_URL)
    token = client.cookies["csrftoken"].value
    accepted = post(client, [("a.dcm", dcm())], csrfmiddlewaretoken=token)
    assert accepted.status_code == 302
    assert Instance.objects.count() == 1


def test_result_page_belongs_to_its_owner(uploader_client, django_user_model) -> None:
    post(uploader_client, [("a.dcm", dcm())])
    batch = UploadBatch.objects.get()
    colleague = django_user_model.objects.create_user(username="colleague", can_upload=True)
    other = Client()
    other.force_login(colleague)
    assert other.get(reverse("uploads:result", args=[batch.pk])).status_code == 404
    assert Client().get(reverse("uploads:result", args=[batch.pk])).status_code == 302


def test_names_from_the_browser_are_shown_as_text(uploader_client) -> None:
    hostile = '<script>alert("x")</script>.dcm'
    post(uploader_client, [("x.dcm", b"junk")], paths=json.dumps([hostile]))
    batch = UploadBatch.objects.get()
    body = uploader_client.get(reverse("uploads:result", args=[batch.pk])).content.decode()
    assert "<script>alert" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.dcm" in body


def test_upload_over_the_size_limit_is_refused_whole(uploader_client, settings) -> None:
    settings.UPLOAD_MAX_BYTES = 50_000
    # Declared too big: refused from the Content-Length alone, before the body is read.
    big = post(uploader_client, [("big.dcm", dcm(rows=1500, columns=1500))])
    assert big.status_code == 413
    assert b"the limit for one upload" in big.content
    # Within the framing allowance, so only the streaming handler sees it is too big.
    over = post(uploader_client, [("a.dcm", dcm()), ("b.dcm", dcm(rows=200, columns=200))])
    assert over.status_code == 413
    assert not Instance.objects.exists() and not UploadBatch.objects.exists()


def test_too_many_files_is_refused_with_a_clear_message(uploader_client, settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = post(uploader_client, [(f"{n}.dcm", dcm()) for n in range(3)])
    assert response.status_code == 400
    assert b"more than 2 files in one upload" in response.content
    assert not Instance.objects.exists()


def test_posting_no_files_asks_for_some(uploader_client) -> None:
    response = uploader_client.post(UPLOAD_URL, {})
    assert response.status_code == 400
    assert b"Choose files or a folder" in response.content


def test_recent_uploads_are_listed_on_the_upload_page(uploader_client) -> None:
    post(uploader_client, [("a.dcm", dcm())])
    page = uploader_client.get(UPLOAD_URL).content.decode()
    batch = UploadBatch.objects.get()
    assert reverse("uploads:result", args=[batch.pk]) in page
    assert "1 stored" in page
