"""The physicians' zip downloads: studies/download_views.py over studies/archive.py."""

import http.client
import io
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from django.urls import reverse
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from accounts.models import User
from activity.models import Event
from studies import archive, storage
from studies.models import Instance, Patient
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.subprocesses import database_url, free_port

pytestmark = pytest.mark.django_db


def ingest(**kwargs) -> None:
    outcome = instance_ingest(file=to_bytes(make_dataset(**kwargs)), source=Instance.Source.IMPORT)
    assert outcome.status == Status.STORED, outcome


@pytest.fixture
def archive_data() -> dict:
    """Two studies of one patient; the first has two series, one with two instances."""
    study_a, study_b = generate_uid(), generate_uid()
    series_1, series_2, series_3 = generate_uid(), generate_uid(), generate_uid()
    common = {"patient_name": "MÜLLER^ANNA", "patient_id": "PID-7"}
    ingest(**common, study_uid=study_a, series_uid=series_1, InstanceNumber=1, rows=32)
    ingest(**common, study_uid=study_a, series_uid=series_1, InstanceNumber=2, rows=16)
    ingest(
        **common,
        study_uid=study_a,
        series_uid=series_2,
        modality="MR",
        SeriesNumber=2,
        SeriesDescription="T1/T2 <b>",
        InstanceNumber=1,
    )
    ingest(
        **common,
        study_uid=study_b,
        series_uid=series_3,
        study_date="20230301",
        StudyDescription="CHEST",
    )
    return {
        "patient": Patient.objects.get(),
        "study_a": study_a,
        "study_b": study_b,
        "series_1": series_1,
    }


@pytest.fixture
def user_client(client):
    user = User.objects.create_user("doctor", password="correct horse battery")
    client.force_login(user)
    return client


def study_url(uid: str, **query: str) -> str:
    url = reverse("studies:download_study", args=[uid])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def stored_by_sop() -> dict[str, bytes]:
    return {i.sop_uid: storage.absolute(i.path).read_bytes() for i in Instance.objects.all()}


def test_study_zip_holds_the_stored_files_byte_for_byte(user_client, archive_data) -> None:
    response = user_client.get(study_url(archive_data["study_a"]))
    assert response.status_code == 200
    data = body(response)
    assert int(response["Content-Length"]) == len(data)
    assert response["Content-Type"] == "application/zip"
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"].startswith('"') and len(response["ETag"]) > 20
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="MULLER, ANNA 2024-01-15 CT HEAD.zip"')
    assert "filename*=UTF-8''M%C3%9CLLER%2C%20ANNA%202024-01-15%20CT%20HEAD.zip" in disposition
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names == [
            "MÜLLER, ANNA (PID-7)/2024-01-15 CT HEAD/001 CT AXIAL/00001.dcm",
            "MÜLLER, ANNA (PID-7)/2024-01-15 CT HEAD/001 CT AXIAL/00002.dcm",
            "MÜLLER, ANNA (PID-7)/2024-01-15 CT HEAD/002 MR T1_T2 _b_/00001.dcm",
        ]
        stored = stored_by_sop()
        for name in names:
            content = zf.read(name)
            sop_uid = pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID
            assert content == stored[sop_uid]
            assert zf.getinfo(name).compress_type == zipfile.ZIP_STORED


def test_patient_zip_holds_every_study_and_series_zip_one_series(user_client, archive_data):
    patient = archive_data["patient"]
    response = user_client.get(reverse("studies:download_patient", args=[patient.pk]))
    with zipfile.ZipFile(io.BytesIO(body(response))) as zf:
        folders = sorted({name.rsplit("/", 2)[0] for name in zf.namelist()})
        assert folders == [
            "MÜLLER, ANNA (PID-7)/2023-03-01 CHEST",
            "MÜLLER, ANNA (PID-7)/2024-01-15 CT HEAD",
        ]
        assert len(zf.namelist()) == 4
    response = user_client.get(reverse("studies:download_series", args=[archive_data["series_1"]]))
    with zipfile.ZipFile(io.BytesIO(body(response))) as zf:
        sops = {pydicom.dcmread(zf.open(n)).SOPInstanceUID for n in zf.namelist()}
    assert sops == set(
        Instance.objects.filter(series__series_uid=archive_data["series_1"]).values_list(
            "sop_uid", flat=True
        )
    )


def test_the_same_zip_is_byte_identical_on_every_request(user_client, archive_data) -> None:
    first = user_client.get(study_url(archive_data["study_a"]))
    second = user_client.get(study_url(archive_data["study_a"]))
    assert first["ETag"] == second["ETag"]
    assert body(first) == body(second)
    other = user_client.get(study_url(archive_data["study_a"], dicomdir="1"))
    assert other["ETag"] != first["ETag"]


def test_a_resumed_download_completes_the_zip(user_client, archive_data) -> None:
    full_response = user_client.get(study_url(archive_data["study_a"]))
    full = body(full_response)
    etag, half = full_response["ETag"], len(full) // 2
    head = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE=f"bytes=0-{half - 1}")
    assert head.status_code == 206
    assert head["Content-Range"] == f"bytes 0-{half - 1}/{len(full)}"
    first_part = body(head)
    assert len(first_part) == int(head["Content-Length"]) == half
    rest = user_client.get(
        study_url(archive_data["study_a"]), HTTP_RANGE=f"bytes={half}-", HTTP_IF_RANGE=etag
    )
    assert rest.status_code == 206
    assert rest["Content-Range"] == f"bytes {half}-{len(full) - 1}/{len(full)}"
    joined = first_part + body(rest)
    assert joined == full
    with zipfile.ZipFile(io.BytesIO(joined)) as zf:
        assert zf.testzip() is None


def test_every_range_boundary_matches_the_full_zip(user_client, archive_data) -> None:
    full = body(user_client.get(study_url(archive_data["study_a"])))
    size = len(full)
    for first, last in [
        (0, 0),
        (1, 200),
        (29, 31),
        (size - 22, size - 1),
        (size // 3, size // 3 + 5000),
    ]:
        response = user_client.get(
            study_url(archive_data["study_a"]), HTTP_RANGE=f"bytes={first}-{last}"
        )
        assert response.status_code == 206
        assert body(response) == full[first : last + 1]
    suffix = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE="bytes=-100")
    assert suffix["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
    assert body(suffix) == full[-100:]
    beyond = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE=f"bytes=10-{size * 2}")
    assert body(beyond) == full[10:]


def test_if_range_with_another_etag_sends_the_whole_zip(user_client, archive_data) -> None:
    response = user_client.get(
        study_url(archive_data["study_a"]), HTTP_RANGE="bytes=100-", HTTP_IF_RANGE='"stale"'
    )
    assert response.status_code == 200
    data = body(response)
    assert len(data) == int(response["Content-Length"])
    assert "Content-Range" not in response
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None


def test_unsatisfiable_range_is_416(user_client, archive_data) -> None:
    size = int(user_client.head(study_url(archive_data["study_a"]))["Content-Length"])
    response = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE=f"bytes={size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert (
        user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE="bytes=-0").status_code
        == 416
    )


def test_several_ranges_or_garbage_send_the_whole_zip(user_client, archive_data) -> None:
    for header in ["bytes=0-1,5-9", "bytes=9-5", "items=0-5", "bytes=-"]:
        response = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE=header)
        assert response.status_code == 200, header
        assert len(body(response)) == int(response["Content-Length"])


def test_if_none_match_with_the_etag_is_304(user_client, archive_data) -> None:
    etag = user_client.head(study_url(archive_data["study_a"]))["ETag"]
    response = user_client.get(study_url(archive_data["study_a"]), HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert not Event.objects.filter(kind=Event.Kind.DOWNLOAD).exists()


def test_head_gives_the_headers_and_records_nothing(user_client, archive_data) -> None:
    full = user_client.get(study_url(archive_data["study_a"]))
    size = len(body(full))
    Event.objects.all().delete()
    response = user_client.head(study_url(archive_data["study_a"]))
    assert response.status_code == 200
    assert int(response["Content-Length"]) == size
    assert response["ETag"] == full["ETag"]
    assert not Event.objects.filter(kind=Event.Kind.DOWNLOAD).exists()


def test_a_missing_file_leaves_a_truncated_download(user_client, archive_data) -> None:
    second = Instance.objects.filter(series__series_uid=archive_data["series_1"]).order_by(
        "instance_number"
    )[1]
    storage.delete(second.path)
    response = user_client.get(study_url(archive_data["study_a"]))
    expected = int(response["Content-Length"])
    received = []
    with pytest.raises(archive.ArchiveReadError, match="cannot open the stored file"):
        for chunk in response.streaming_content:
            received.append(chunk)
    got = b"".join(received)
    assert 0 < len(got) < expected
    event = Event.objects.get(kind=Event.Kind.DOWNLOAD)
    assert event.completed is False
    assert event.bytes_sent == len(got)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(got))


def test_a_changed_file_is_never_sent_whole(user_client, archive_data) -> None:
    first = Instance.objects.get(series__series_uid=archive_data["series_1"], instance_number=1)
    path = storage.absolute(first.path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    response = user_client.get(study_url(archive_data["study_a"]))
    received = []
    with pytest.raises(archive.ArchiveReadError, match="CRC-32"):
        for chunk in response.streaming_content:
            received.append(chunk)
    got = b"".join(received)
    # Nothing past the local header of the changed file's last chunk arrives.
    assert len(got) < first.size + 200
    assert bytes(data) not in got


def test_a_file_of_another_size_aborts_before_its_data(user_client, archive_data) -> None:
    first = Instance.objects.get(series__series_uid=archive_data["series_1"], instance_number=1)
    path = storage.absolute(first.path)
    path.write_bytes(path.read_bytes()[:-10])
    response = user_client.get(study_url(archive_data["study_a"]))
    with pytest.raises(archive.ArchiveReadError, match="were recorded"):
        b"".join(response.streaming_content)


def test_anonymous_gets_nothing(client, archive_data) -> None:
    urls = [
        study_url(archive_data["study_a"]),
        reverse("studies:download_series", args=[archive_data["series_1"]]),
        reverse("studies:download_patient", args=[archive_data["patient"].pk]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))
        assert not response.streaming


def test_an_inactive_user_gets_nothing(client, archive_data) -> None:
    user = User.objects.create_user("gone", password="correct horse battery", is_active=False)
    client.force_login(user)
    response = client.get(study_url(archive_data["study_a"]))
    assert response.status_code in (302, 404)
    assert not response.streaming


def test_unknown_uids_are_404(user_client, archive_data) -> None:
    assert user_client.get(study_url("1.2.3.4")).status_code == 404
    assert user_client.get(reverse("studies:download_series", args=["1.2.3"])).status_code == 404
    assert user_client.get(reverse("studies:download_patient", args=[999999])).status_code == 404


def test_post_is_refused(user_client, archive_data) -> None:
    assert user_client.post(study_url(archive_data["study_a"])).status_code == 405


def test_a_complete_download_is_recorded(user_client, archive_data) -> None:
    response = user_client.get(study_url(archive_data["study_a"]))
    event = Event.objects.get(kind=Event.Kind.DOWNLOAD)
    assert event.completed is None
    assert event.detail == {
        "level": "study",
        "dicomdir": False,
        "range": None,
        "bytes_total": int(response["Content-Length"]),
    }
    assert event.study_uid == archive_data["study_a"]
    assert event.patient_name == "MÜLLER^ANNA"
    data = body(response)
    event.refresh_from_db()
    assert (event.bytes_sent, event.completed) == (len(data), True)


@pytest.mark.django_db(transaction=True)
def test_a_cut_off_download_is_recorded_as_incomplete(user_client, archive_data) -> None:
    response = user_client.get(study_url(archive_data["study_a"]), HTTP_RANGE="bytes=10-")
    chunks = iter(response.streaming_content)
    first, second = next(chunks), next(chunks)
    # What the server does when the client goes away. The response's end closes the database
    # connection as after any request, hence the transactional_db of this test.
    response.close()
    event = Event.objects.get(kind=Event.Kind.DOWNLOAD)
    assert (
        event.detail["range"]
        == f"bytes 10-{int(response['Content-Length']) + 9}/{int(response['Content-Length']) + 10}"
    )
    # The second chunk was handed out but the server never came back for more.
    assert event.bytes_sent == len(first)
    assert event.completed is False
    assert len(first) + len(second) < int(response["Content-Length"])


def test_dicomdir_zip_opens_like_a_cd(user_client, archive_data, tmp_path) -> None:
    patient = archive_data["patient"]
    response = user_client.get(
        reverse("studies:download_patient", args=[patient.pk]) + "?dicomdir=1"
    )
    assert 'DICOMDIR.zip"' in response["Content-Disposition"]
    data = body(response)
    assert len(data) == int(response["Content-Length"])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        zf.extractall(tmp_path)
    assert names[0] == "DICOMDIR"
    assert all(n.startswith("DICOM/PA000001/ST00000") for n in names[1:])
    fs = FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))
    stored = stored_by_sop()
    assert {i.SOPInstanceUID for i in fs} == set(stored)
    for instance in fs:
        assert (
            instance.path
            and (tmp_path / instance.path).read_bytes() == stored[instance.SOPInstanceUID]
        )
    assert len(fs.find(PatientID="PID-7")) == 4
    assert Event.objects.get(kind=Event.Kind.DOWNLOAD).detail["dicomdir"] is True


def test_zip_names_are_safe_for_every_system(user_client) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    hostile = {
        "patient_name": "CON",
        "patient_id": "",
        "SpecificCharacterSet": "ISO_IR 192",
        "study_uid": study_uid,
        "series_uid": series_uid,
        "StudyDescription": 'a/b\\c:d*e?f"g<h>i|j\x01 . ',
        "SeriesDescription": "\u202egpj.exe",
        "SeriesNumber": None,
        "InstanceNumber": None,
    }
    ingest(**hostile)
    ingest(**hostile)
    data = body(user_client.get(study_url(study_uid)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
    folder = "_CON/2024-01-15 a_b_c_d_e_f_g_h_i_j/CT gpj.exe"
    assert names == [f"{folder}/instance (2).dcm", f"{folder}/instance.dcm"]


# -- Through a real server ------------------------------------------------------------------------


@pytest.fixture
def gunicorn(transactional_db, settings, tmp_path):
    """gunicorn (one worker, one thread) on this test's database and storage; yields its port."""
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        # The server's storage folder is <data dir>/storage: the one this test writes to.
        "PACSWEB_TEST_DATA_DIR": str(Path(settings.STORAGE_DIR).parent),
        "SECRET_KEY": settings.SECRET_KEY,
    }
    gunicorn_bin = Path(sys.executable).parent / "gunicorn"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(gunicorn_bin), "pacsweb.wsgi", "-b", f"127.0.0.1:{port}", "-k", "gthread"]
            + ["--workers", "1", "--threads", "1"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not open its port"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def session_cookie(client) -> str:
    user = User.objects.create_user("remote", password="correct horse battery")
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def wait_for_finished_download() -> Event:
    deadline = time.monotonic() + 20
    while True:
        event = Event.objects.filter(kind=Event.Kind.DOWNLOAD).first()
        if event is not None and event.completed is not None:
            return event
        assert time.monotonic() < deadline, "the download was never finished in the activity log"
        time.sleep(0.05)


def test_over_http_a_missing_file_cuts_the_connection_short(gunicorn, client, archive_data):
    cookie = session_cookie(client)
    second = Instance.objects.filter(series__series_uid=archive_data["series_1"]).order_by(
        "instance_number"
    )[1]
    storage.delete(second.path)
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=20)
    conn.request("GET", study_url(archive_data["study_a"]), headers={"Cookie": cookie})
    response = conn.getresponse()
    assert response.status == 200
    expected = int(response.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert 0 < len(cut.value.partial) < expected
    conn.close()
    event = wait_for_finished_download()
    assert (event.completed, event.bytes_sent) == (False, len(cut.value.partial))


def test_over_http_a_client_that_leaves_frees_the_worker(gunicorn, client) -> None:
    cookie = session_cookie(client)
    study_uid, series_uid = generate_uid(), generate_uid()
    for number in range(6):
        # About 4 MB each: far more than the socket buffers hold once the client stops reading.
        ingest(
            study_uid=study_uid,
            series_uid=series_uid,
            InstanceNumber=number,
            rows=1024,
            columns=2048,
        )
    request = (
        f"GET {study_url(study_uid)} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
    ).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", gunicorn))
    sock.sendall(request)
    received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    total = int(re.search(rb"Content-Length: (\d+)", received).group(1))
    sock.close()
    event = wait_for_finished_download()
    assert event.completed is False
    assert 0 < event.bytes_sent < total
    # The server's only thread is free again: the next request is answered.
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
    conn.request("HEAD", study_url(study_uid), headers={"Cookie": cookie})
    assert conn.getresponse().status == 200
    conn.close()
