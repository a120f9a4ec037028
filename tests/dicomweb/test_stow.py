"""STOW-RS: multipart bodies as OHIF and dicomweb-client send them, the standard response, refusals."""

import pytest
from pydicom.uid import generate_uid

from dicomweb import stow
from studies.models import Instance
from studies.services import IngestOutcome, Status
from tests.conftest import make_dataset, to_bytes

pytestmark = pytest.mark.django_db

URL = "/dicomweb/studies"


def body(files: list[bytes], boundary: str = "b0und", *, leading_crlf=True, trailing=b"") -> bytes:
    out = b"\r\n" if leading_crlf else b""
    for data in files:
        out += f"--{boundary}\r\n".encode()
        out += b"Content-Type: application/dicom\r\n\r\n" + data + b"\r\n"
    return out + f"--{boundary}--".encode() + trailing


def post(client, data: bytes, *, boundary='"b0und"', url=URL, **headers):
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return client.post(url, data=data, content_type=content_type, **headers)


def referenced(response) -> list[str]:
    items = response.json().get("00081199", {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def failures(response) -> list[int]:
    items = response.json().get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in items]


def test_ohif_style_body_quoted_boundary_and_trailing_zeros(uploader) -> None:
    first, second = make_dataset(), make_dataset()
    data = body([to_bytes(first), to_bytes(second)], trailing=b"\x00" * 7)
    response = post(uploader, data)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    assert sorted(referenced(response)) == sorted([first.SOPInstanceUID, second.SOPInstanceUID])
    item = response.json()["00081199"]["Value"][0]
    assert item["00081190"]["Value"][0].startswith("http://testserver/dicomweb/studies/")
    stored = Instance.objects.get(sop_uid=first.SOPInstanceUID)
    assert (stored.source, stored.source_detail) == (Instance.Source.STOW, "uploader")


def test_unquoted_boundary_without_preamble_and_large_parts(uploader) -> None:
    big = make_dataset(rows=512, columns=512)  # 512 KiB: spans several reads of the body.
    data = body([to_bytes(big)], "xyz", leading_crlf=False) + b"\r\n"
    response = post(uploader, data, boundary="xyz")
    assert response.status_code == 200, response.content
    assert referenced(response) == [big.SOPInstanceUID]
    assert Instance.objects.get(sop_uid=big.SOPInstanceUID).size > 512 * 512 * 2


def test_partial_failure_is_202_and_total_failure_409(uploader) -> None:
    good = make_dataset()
    response = post(uploader, body([to_bytes(good), b"not dicom at all" * 10]))
    assert response.status_code == 202
    assert referenced(response) == [good.SOPInstanceUID]
    assert failures(response) == [stow.CANNOT_UNDERSTAND]
    assert "Warning" in response
    response = post(uploader, body([b"junk" * 100]))
    assert response.status_code == 409 and failures(response) == [stow.CANNOT_UNDERSTAND]


def test_identical_resend_counts_as_stored(uploader) -> None:
    data = to_bytes(make_dataset())
    assert post(uploader, body([data])).status_code == 200
    assert post(uploader, body([data])).status_code == 200
    assert Instance.objects.count() == 1


def test_other_study_in_a_study_url_is_refused(uploader) -> None:
    study_uid = generate_uid()
    inside, outside = make_dataset(study_uid=study_uid), make_dataset()
    response = post(uploader, body([to_bytes(inside), to_bytes(outside)]), url=f"{URL}/{study_uid}")
    assert response.status_code == 202
    assert referenced(response) == [inside.SOPInstanceUID]
    assert failures(response) == [stow.DOES_NOT_MATCH]
    assert response.json()["00081190"]["Value"] == [f"http://testserver{URL}/{study_uid}"]
    assert not Instance.objects.filter(sop_uid=outside.SOPInstanceUID).exists()


def test_failure_reasons_follow_the_ingest_outcome() -> None:
    full = IngestOutcome(Status.FAILED, "the archive's disk is full", out_of_space=True)
    assert stow._failure(full) == stow.OUT_OF_RESOURCES
    assert stow._failure(IngestOutcome(Status.REJECTED, "bad")) == stow.CANNOT_UNDERSTAND
    assert stow._failure(IngestOutcome(Status.FAILED, "db down")) == stow.PROCESSING_FAILURE


def test_who_may_store(physician, client, patient_client, make_study) -> None:
    data = body([to_bytes(make_dataset())])
    assert post(client, data).status_code == 401
    response = post(physician, data)
    assert response.status_code == 403 and "may not upload" in response.json()["error"]
    patient = patient_client(make_study().study)
    assert post(patient, data).status_code == 403
    assert Instance.objects.filter(source=Instance.Source.STOW).count() == 0


def test_cross_site_origin_is_refused(uploader) -> None:
    data = body([to_bytes(make_dataset())])
    assert post(uploader, data, HTTP_ORIGIN="https://evil.example").status_code == 403
    assert post(uploader, data, HTTP_ORIGIN="null").status_code == 403
    assert post(uploader, data, HTTP_ORIGIN="http://testserver").status_code == 200


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("application/dicom", b"x", 415),
        ('multipart/related; type="application/dicom+json"; boundary=b', b"x", 415),
        ('multipart/related; type="application/dicom"; boundary=b', b"no boundary here", 400),
        ('multipart/related; type="application/dicom"', b"--b\r\n", 400),
        (
            'multipart/related; type="application/dicom"; boundary=b',
            b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM",
            400,
        ),
    ],
)
def test_malformed_requests(uploader, content_type, data, status) -> None:
    response = uploader.post(URL, data=data, content_type=content_type)
    assert response.status_code == status
    assert response.json()["error"]
