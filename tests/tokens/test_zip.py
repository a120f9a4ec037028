"""``/token/zip``: the study by token, byte-identical to the stored files, and recorded."""

import datetime
import hashlib
import io
import zipfile

import pytest

from activity.models import Event
from studies import storage
from studies.models import Instance
from tokens import services


@pytest.fixture
def study(clock, setup, make_study):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    return make_study(patient_name="DOE^ALICE", study_date="20240115", series=2, per_series=3)


def _stored_digests(study) -> list[str]:
    digests = []
    for path in Instance.objects.filter(series__study=study).values_list("path", flat=True):
        digests.append(hashlib.sha256(storage.absolute(path).read_bytes()).hexdigest())
    return sorted(digests)


def _zip(response) -> zipfile.ZipFile:
    body = b"".join(response.streaming_content)
    assert len(body) == int(response["Content-Length"])
    return zipfile.ZipFile(io.BytesIO(body))


def _dicom_digests(archive: zipfile.ZipFile) -> list[str]:
    return sorted(
        hashlib.sha256(archive.read(name)).hexdigest()
        for name in archive.namelist()
        if name != "DICOMDIR"
    )


def test_zip_by_token_is_byte_identical_to_the_stored_files(client, study, link_of):
    client.get(link_of(study))
    response = client.get("/token/zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    archive = _zip(response)
    assert archive.testzip() is None
    assert len(archive.namelist()) == 6
    assert _dicom_digests(archive) == _stored_digests(study)


def test_zip_with_dicomdir(client, study, link_of):
    client.get(link_of(study))
    archive = _zip(client.get("/token/zip?dicomdir=1"))
    assert "DICOMDIR" in archive.namelist()
    assert _dicom_digests(archive) == _stored_digests(study)


def test_download_is_recorded_with_its_bytes(client, study, link_of):
    client.get(link_of(study))
    response = client.get("/token/zip")
    event = Event.objects.get(kind="download")
    assert event.completed is None
    assert event.detail["bytes_total"] == int(response["Content-Length"])
    size = len(b"".join(response.streaming_content))
    event.refresh_from_db()
    assert event.study_uid == study.study_uid
    assert event.patient_name == "DOE^ALICE"
    assert event.connection.kind == "token"
    assert (event.completed, event.bytes_sent) == (True, size)


def test_zip_without_a_visit_is_404(client, study):
    assert client.get("/token/zip").status_code == 404


def test_zip_stops_as_soon_as_the_link_is_revoked(client, study, link_of):
    client.get(link_of(study))
    assert client.get("/token/zip").status_code == 200
    services.token_revoke(study=study)
    assert client.get("/token/zip").status_code == 404


def test_zip_stops_when_the_link_expires(client, clock, study, link_of):
    client.get(link_of(study))
    clock.set(datetime.datetime(2024, 3, 1, tzinfo=datetime.UTC))
    assert client.get("/token/zip").status_code == 404
