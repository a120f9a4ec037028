"""The real ``dicomweb-client`` against pacsweb's live server, logged in with a session cookie."""

from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.test import Client
from pydicom.encaps import generate_frames

from studies import storage
from studies.models import Instance
from studies.services import instance_ingest
from tests.conftest import make_dataset

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture
def dicomweb(transactional_db, live_server, django_user_model):
    user = django_user_model.objects.create_user(username="client", can_upload=True)
    browser = Client()
    browser.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", browser.cookies["sessionid"].value)
    return DICOMwebClient(url=live_server.url + "/dicomweb", session=session)


def test_search_retrieve_and_store(dicomweb, make_study) -> None:
    files = make_study(series=(("CT", 3), ("MR", 1)), patient_name="CLIENT^TEST")
    uid = files.study.study_uid
    outcome = instance_ingest(
        file=TEST_FILES / "SC_rgb_rle_2frame.dcm", source=Instance.Source.IMPORT
    )

    studies = dicomweb.search_for_studies(search_filters={"PatientName": "client*"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [uid]
    series = dicomweb.search_for_series(uid, fields=["SeriesDescription"])
    assert [s["0008103E"]["Value"][0] for s in series] == ["CT series 1", "MR series 2"]
    instances = dicomweb.search_for_instances(uid, files.series_uids[0])
    assert len(instances) == 3

    metadata = dicomweb.retrieve_study_metadata(uid)
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(files.sop_uids)
    series_metadata = dicomweb.retrieve_series_metadata(uid, files.series_uids[1])
    assert len(series_metadata) == 1

    sop = files.sop_uids[0]
    stored = Instance.objects.get(sop_uid=sop)
    ds = dicomweb.retrieve_instance(uid, files.series_uids[0], sop)
    assert ds.SOPInstanceUID == sop
    assert ds.PixelData == pydicom.dcmread(storage.absolute(stored.path)).PixelData
    (frame,) = dicomweb.retrieve_instance_frames(uid, files.series_uids[0], sop, frame_numbers=[1])
    assert frame == ds.PixelData

    rle = Instance.objects.select_related("series__study").get(sop_uid=outcome.sop_uid)
    frames = dicomweb.retrieve_instance_frames(
        rle.series.study.study_uid,
        rle.series.series_uid,
        rle.sop_uid,
        frame_numbers=[1, 2],
        media_types=(("image/x-dicom-rle", "1.2.840.10008.1.2.5"),),
    )
    original = pydicom.dcmread(TEST_FILES / "SC_rgb_rle_2frame.dcm")
    assert frames == list(generate_frames(original.PixelData, number_of_frames=2))
    decoded = dicomweb.retrieve_instance_frames(
        rle.series.study.study_uid, rle.series.series_uid, rle.sop_uid, frame_numbers=[2]
    )
    assert decoded == [original.pixel_array[1].tobytes()]

    new = make_dataset(patient_name="STOW^NEW", patient_id="NEW-1")
    response = dicomweb.store_instances([new])
    assert response.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == new.SOPInstanceUID
    assert Instance.objects.get(sop_uid=new.SOPInstanceUID).source == Instance.Source.STOW
    found = dicomweb.search_for_studies(search_filters={"PatientName": "STOW^NEW"})
    assert [s["0020000D"]["Value"][0] for s in found] == [new.StudyInstanceUID]


def test_without_a_session_the_client_gets_401(transactional_db, live_server) -> None:
    client = DICOMwebClient(url=live_server.url + "/dicomweb")
    with pytest.raises(requests.HTTPError) as raised:
        client.search_for_studies()
    assert raised.value.response.status_code == 401
    assert raised.value.response.headers["Content-Type"] == "application/json"
