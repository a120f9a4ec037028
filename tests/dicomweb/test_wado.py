"""WADO-RS and WADO-URI: instances byte for byte, metadata, frames in every stored syntax, bulk data."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array

from activity.models import Event
from studies import storage
from studies.models import Instance
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.dicomweb.dicom_json import check_array
from tests.dicomweb.multipart_reader import body_of, read_parts

pytestmark = pytest.mark.django_db

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ANY_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def ingest_file(name: str) -> Instance:
    outcome = instance_ingest(file=TEST_FILES / name, source=Instance.Source.IMPORT)
    assert outcome.status == Status.STORED, outcome
    return Instance.objects.select_related("series__study").get(sop_uid=outcome.sop_uid)


def base(instance: Instance) -> str:
    series = instance.series
    return (
        f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}"
        f"/instances/{instance.sop_uid}"
    )


def stored_bytes(instance: Instance) -> bytes:
    return storage.absolute(instance.path).read_bytes()


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        'multipart/related; type="application/dicom"',
        "multipart/related; type=application/dicom; transfer-syntax=*",
        'multipart/related;type="application/dicom";transfer-syntax=*',
    ],
)
def test_instance_retrieve_is_byte_identical(physician, accept) -> None:
    instance = ingest_file("MR_small_RLE.dcm")
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = physician.get(base(instance), **headers)
    assert response.status_code == 200
    assert 'type="application/dicom"' in response["Content-Type"]
    ((part_headers, content),) = read_parts(response["Content-Type"], body_of(response))
    assert part_headers["content-type"] == "application/dicom"
    assert content == stored_bytes(instance)


def test_series_and_study_retrieve_stream_every_file(make_study, physician) -> None:
    files = make_study(series=(("CT", 3), ("MR", 2)))
    uid = files.study.study_uid
    expected = {i.sop_uid: stored_bytes(i) for i in Instance.objects.all()}
    response = physician.get(f"/dicomweb/studies/{uid}")
    parts = read_parts(response["Content-Type"], body_of(response))
    assert sorted(content for _, content in parts) == sorted(expected.values())
    response = physician.get(f"/dicomweb/studies/{uid}/series/{files.series_uids[1]}")
    assert len(read_parts(response["Content-Type"], body_of(response))) == 2


def test_plain_application_dicom_gives_the_file(physician) -> None:
    instance = ingest_file("CT_small.dcm")
    response = physician.get(base(instance), HTTP_ACCEPT="application/dicom")
    assert response["Content-Type"] == "application/dicom"
    assert body_of(response) == stored_bytes(instance)


def test_other_transfer_syntax_is_406(physician) -> None:
    instance = ingest_file("CT_small.dcm")
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    response = physician.get(base(instance), HTTP_ACCEPT=accept)
    assert response.status_code == 406 and "transfer-syntax=*" in response.json()["error"]
    response = physician.get(base(instance), HTTP_ACCEPT="image/png")
    assert response.status_code == 406


def _frames(physician, instance, numbers: str, accept: str | None = ANY_FRAMES):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = physician.get(base(instance) + f"/frames/{numbers}", **headers)
    assert response.status_code == 200, response.content
    return response, read_parts(response["Content-Type"], body_of(response))


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg"),
        ("SC_rgb_jpeg_gdcm.dcm", "image/jpeg"),
        ("JPEG2000.dcm", "image/jp2"),
        ("examples_jpeg2k.dcm", "image/jp2"),
        ("MR_small_RLE.dcm", "image/x-dicom-rle"),
        ("SC_rgb_rle_2frame.dcm", "image/x-dicom-rle"),
        ("rtdose_rle.dcm", "image/x-dicom-rle"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
    ],
)
def test_encapsulated_frames_equal_pydicoms_in_their_stored_syntax(
    physician, name, media_type
) -> None:
    instance = ingest_file(name)
    ds = pydicom.dcmread(TEST_FILES / name)
    count = int(ds.get("NumberOfFrames") or 1)
    expected = list(generate_frames(ds.PixelData, number_of_frames=count))
    numbers = ",".join(str(n) for n in range(1, count + 1))
    response, parts = _frames(physician, instance, numbers)
    assert response["Content-Type"].startswith(f'multipart/related; type="{media_type}"')
    assert [content for _, content in parts] == expected
    syntax = str(ds.file_meta.TransferSyntaxUID)
    for headers, _ in parts:
        # The exact header line OHIF's parser reads the transfer syntax from.
        assert headers["content-type"] == f"{media_type}; transfer-syntax={syntax}"


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "rtdose.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"]
)
def test_native_frames_equal_pydicoms_little_endian(physician, name) -> None:
    instance = ingest_file(name)
    arrays = pydicom.dcmread(TEST_FILES / name).pixel_array
    count = int(
        pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True).get("NumberOfFrames") or 1
    )
    if count == 1:
        arrays = arrays[np.newaxis]
    numbers = ",".join(str(n) for n in range(count, 0, -1))
    _, parts = _frames(physician, instance, numbers)
    expected = [
        arrays[n - 1].astype(arrays.dtype.newbyteorder("<")).tobytes() for n in range(count, 0, -1)
    ]
    assert [content for _, content in parts] == expected
    assert {headers["content-type"] for headers, _ in parts} == {
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    }


def test_bit_packed_frames_are_repacked(physician) -> None:
    instance = ingest_file("liver_1frame.dcm")
    ds = pydicom.dcmread(TEST_FILES / "liver_1frame.dcm")
    _, ((_, content),) = _frames(physician, instance, "1")
    assert content == bytes(ds.PixelData)[: 512 * 512 // 8]


@pytest.mark.parametrize(
    "accept",
    [
        None,
        'multipart/related; type="application/octet-stream"',
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
    ],
)
def test_compressed_frames_are_decoded_when_uncompressed_is_asked_for(physician, accept) -> None:
    instance = ingest_file("JPEG2000.dcm")
    _, ((headers, content),) = _frames(physician, instance, "1", accept)
    assert (
        headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    array = pixel_array(TEST_FILES / "JPEG2000.dcm")
    assert content == array.astype(array.dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/octet-stream"; transfer-syntax="*"',
        "multipart/related;type=application/octet-stream;transfer-syntax=*",
        "multipart/related; type=image/jpeg",
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50',
        "text/html, multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.5",
        "*/*",
    ],
)
def test_accept_is_parsed_quoted_or_not(physician, accept) -> None:
    instance = ingest_file("SC_rgb_jpeg_dcmtk.dcm")
    _, ((headers, _),) = _frames(physician, instance, "1", accept)
    assert headers["content-type"] == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=image/jp2",
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.90",
        "image/png",
    ],
)
def test_unservable_frame_media_types_are_406(physician, accept) -> None:
    instance = ingest_file("SC_rgb_jpeg_dcmtk.dcm")
    response = physician.get(base(instance) + "/frames/1", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["error"]


@pytest.mark.parametrize(("numbers", "status"), [("0", 400), ("1,x", 400), ("", 404), ("2", 404)])
def test_bad_frame_numbers(physician, numbers, status) -> None:
    instance = ingest_file("CT_small.dcm")
    assert physician.get(base(instance) + f"/frames/{numbers}").status_code == status


def test_series_and_study_metadata(make_study, physician) -> None:
    files = make_study(series=(("CT", 3), ("MR", 2)))
    uid = files.study.study_uid
    response = physician.get(
        f"/dicomweb/studies/{uid}/metadata", HTTP_ACCEPT="application/dicom+json"
    )
    assert response["Content-Type"] == "application/dicom+json"
    study = response.json()
    check_array(study)
    assert sorted(i["00080018"]["Value"][0] for i in study) == sorted(files.sop_uids)
    series = physician.get(f"/dicomweb/studies/{uid}/series/{files.series_uids[0]}/metadata").json()
    check_array(series)
    assert [i["00200013"]["Value"] for i in series] == [[1], [2], [3]]
    for item in study:
        pixel = item["7FE00010"]
        assert set(pixel) == {"vr", "BulkDataURI"}
        url = pixel["BulkDataURI"]
        assert url.startswith("http://testserver/dicomweb/studies/")
        sop = item["00080018"]["Value"][0]
        assert url.endswith(f"/instances/{sop}/bulk/7FE00010")
        got = physician.get(url.removeprefix("http://testserver"))
        instance = Instance.objects.get(sop_uid=sop)
        ((offset, length),) = instance.frames[0]
        assert got.content == stored_bytes(instance)[offset : offset + length]


def test_bulk_data_of_other_elements(physician) -> None:
    ds = make_dataset(EncapsulatedDocument=b"%PDF-1" + bytes(range(256)) * 20)
    outcome = instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT)
    instance = Instance.objects.select_related("series__study").get(sop_uid=outcome.sop_uid)
    metadata = json.loads(physician.get(base(instance) + "/metadata").content)[0]
    url = metadata["00420011"]["BulkDataURI"].removeprefix("http://testserver")
    assert physician.get(url).content == ds.EncapsulatedDocument
    response = physician.get(url, HTTP_ACCEPT="multipart/related; type=application/octet-stream")
    ((_, content),) = read_parts(response["Content-Type"], body_of(response))
    assert content == ds.EncapsulatedDocument
    assert physician.get(base(instance) + "/bulk/00100010").status_code == 404


def test_binary_values_inside_sequences_are_inline_not_top_level_bulk_uris(physician) -> None:
    # An icon's pixel data has the main image's tag: a bulk data URI for it would name (and
    # serve) the main image's pixel data instead.
    icon = pydicom.Dataset()
    icon.Rows, icon.Columns, icon.BitsAllocated = 64, 64, 8
    icon.PixelData = bytes(range(256)) * 16
    ds = make_dataset(IconImageSequence=pydicom.Sequence([icon]))
    outcome = instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT)
    instance = Instance.objects.select_related("series__study").get(sop_uid=outcome.sop_uid)
    metadata = json.loads(physician.get(base(instance) + "/metadata").content)
    check_array(metadata)
    (item,) = metadata[0]["00880200"]["Value"]
    assert base64.b64decode(item["7FE00010"]["InlineBinary"]) == icon.PixelData
    assert "BulkDataURI" in metadata[0]["7FE00010"]


def test_encapsulated_pixel_bulk_data_is_one_part_per_frame(physician) -> None:
    instance = ingest_file("SC_rgb_rle_2frame.dcm")
    response = physician.get(base(instance) + "/bulk/7FE00010")
    assert len(read_parts(response["Content-Type"], body_of(response))) == 2


def _wado(instance: Instance, **params) -> dict:
    series = instance.series
    return {
        "requestType": "WADO",
        "studyUID": series.study.study_uid,
        "seriesUID": series.series_uid,
        "objectUID": instance.sop_uid,
        **params,
    }


def test_wado_uri_dicom_and_jpeg(physician) -> None:
    instance = ingest_file("CT_small.dcm")
    response = physician.get("/wado", _wado(instance, contentType="application/dicom"))
    assert response["Content-Type"] == "application/dicom"
    assert body_of(response) == stored_bytes(instance)
    response = physician.get(
        "/wado", _wado(instance, contentType="application/dicom", transferSyntax="*")
    )
    assert body_of(response) == stored_bytes(instance)
    response = physician.get("/wado", _wado(instance))
    assert response["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (128, 128)
    assert np.asarray(image).std() > 10  # A real picture, not a blank frame.
    color = ingest_file("SC_rgb_jpeg_dcmtk.dcm")
    assert Image.open(io.BytesIO(physician.get("/wado", _wado(color)).content)).mode == "RGB"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"requestType": "OTHER"}, 400),
        ({"objectUID": ""}, 400),
        ({"seriesUID": "1.2.3"}, 404),
        ({"contentType": "application/pdf"}, 406),
        ({"contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.50"}, 406),
        ({"frameNumber": "9"}, 400),
    ],
)
def test_wado_uri_errors(physician, change, status) -> None:
    instance = ingest_file("CT_small.dcm")
    assert physician.get("/wado", {**_wado(instance), **change}).status_code == status


def test_retrieves_are_recorded_once_per_request_not_per_frame(make_study, physician) -> None:
    files = make_study(series=(("CT", 2),))
    uid = files.study.study_uid
    physician.get(f"/dicomweb/studies/{uid}/metadata")
    instance = Instance.objects.select_related("series__study").first()
    for _ in range(3):
        body_of(physician.get(base(instance) + "/frames/1", HTTP_ACCEPT=ANY_FRAMES))
    body_of(physician.get(f"/dicomweb/studies/{uid}"))
    events = list(Event.objects.filter(kind="dicomweb").values_list("study_uid", "detail"))
    assert events == [
        (uid, {"metadata": "study"}),
        (uid, {"retrieve": "study", "instances": 2}),
    ]


def test_frame_requests_read_the_instance_row_once(
    physician, django_assert_max_num_queries
) -> None:
    instance = ingest_file("MR_small_RLE.dcm")
    url = base(instance) + "/frames/1"
    # The session's first request writes it once (its idle refresh); measure the ones after.
    physician.get("/dicomweb/studies")
    with django_assert_max_num_queries(20) as first:
        assert body_of(physician.get(url, HTTP_ACCEPT=ANY_FRAMES))
    with django_assert_max_num_queries(20) as second:
        assert body_of(physician.get(url, HTTP_ACCEPT=ANY_FRAMES))
    assert len(second.captured_queries) == len(first.captured_queries) - 1
    # A file that has gone (the instance was deleted) is looked up again: no stale answer.
    storage.delete(instance.path)
    Instance.objects.filter(pk=instance.pk).delete()
    assert physician.get(url, HTTP_ACCEPT=ANY_FRAMES).status_code == 404


@pytest.mark.parametrize("path", sorted(TEST_FILES.glob("*.dcm")), ids=lambda p: p.name)
def test_metadata_of_every_pydicom_test_file_follows_the_json_model(physician, path) -> None:
    outcome = instance_ingest(file=path, source=Instance.Source.IMPORT)
    if not outcome.ok:
        # Files that are not archivable (tested in tests/studies/test_ingest.py) have no metadata.
        assert outcome.status == "rejected" and not Instance.objects.exists()
        return
    instance = Instance.objects.select_related("series__study").get(sop_uid=outcome.sop_uid)
    response = physician.get(base(instance) + "/metadata")
    assert response.status_code == 200
    body = response.json()
    check_array(body)
    assert "InlineBinary" not in body[0].get("7FE00010", {})
