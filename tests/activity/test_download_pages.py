"""Real zip downloads of the physicians' pages, as the activity log sees them.

The download views (``studies.download_views``) record the download when the body starts, report
progress while it streams and finish it when it ends or the client goes away; these tests drive
them through the test client and read the log.
"""

import re

import pytest
from pydicom.uid import generate_uid

from activity.models import Connection, Event
from studies.models import Instance
from studies.services import instance_ingest
from tests.activity.conftest import log_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def study_uid(dicom_bytes) -> str:
    """A study of three 512 x 512 images: a zip of a few chunks."""
    uid = generate_uid()
    series = generate_uid()
    for number in range(1, 4):
        data = dicom_bytes(
            study_uid=uid,
            series_uid=series,
            patient_name="MÜLLER^ANNA",
            rows=512,
            columns=512,
            InstanceNumber=number,
        )
        outcome = instance_ingest(file=data, source=Instance.Source.IMPORT)
        assert outcome.ok, outcome.reason
    return uid


def test_a_complete_download_is_recorded_with_every_byte(physician, study_uid):
    client = log_in(physician)
    response = client.get(f"/studies/study/{study_uid}/download")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body) == int(response["Content-Length"])

    event = Event.objects.get(kind=Event.Kind.DOWNLOAD)
    assert event.completed is True
    assert event.bytes_sent == len(body)
    assert event.study_uid == study_uid and event.patient_name == "MÜLLER^ANNA"
    assert event.detail["level"] == "study"
    assert event.connection.username == "drhouse"
    assert Connection.objects.get(username="drhouse").bytes_sent >= len(body)


# Committed data, as in a server: closing the response ends the request, and Django then closes
# the database connection, which a test transaction would not survive.
@pytest.mark.django_db(transaction=True)
def test_a_download_cut_off_mid_way_is_incomplete_with_the_bytes_sent(
    physician, study_uid, admin_client
):
    client = log_in(physician)
    response = client.get(f"/studies/study/{study_uid}/download")
    total = int(response["Content-Length"])
    stream = response.streaming_content
    received = len(next(stream)) + len(next(stream))
    assert received < total

    # While the body is on its way, the admin's live list shows the running download.
    live = admin_client.get("/admin/activity/activeconnection/live/").content.decode()
    assert "Downloading MÜLLER, ANNA (study)" in live
    assert re.search(r"sent of \d", live)

    # The client goes away: the server closes the response, which ends the request.
    response.close()

    event = Event.objects.get(kind=Event.Kind.DOWNLOAD)
    assert event.completed is False
    assert 0 < event.bytes_sent <= received < total
    assert Connection.objects.get(username="drhouse").bytes_sent >= event.bytes_sent
    detail = admin_client.get(f"/admin/activity/connection/{event.connection_id}/change/")
    assert "cut off" in detail.content.decode()
    assert (
        "Downloading"
        not in admin_client.get("/admin/activity/activeconnection/live/").content.decode()
    )
