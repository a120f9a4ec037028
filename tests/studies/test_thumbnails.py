"""Series thumbnails: the middle image, windowed, scaled, cached, and a placeholder otherwise."""

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from accounts.models import User
from studies import thumbnails
from studies.models import Instance, Series
from studies.selectors import series_middle_instance
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes

SERIES_UID = "1.2.826.0.1.3680043.8.498.400"


def ingest_bytes(data: bytes) -> None:
    outcome = instance_ingest(file=data, source=Instance.Source.IMPORT)
    assert outcome.ok, outcome.reason


def bundled(name: str, **attributes: object) -> bytes:
    """A pydicom test file as a new instance of our series."""
    ds = dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = SERIES_UID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def series() -> Series:
    return Series.objects.get(series_uid=SERIES_UID)


def gradient(**attributes: object) -> bytes:
    """A 64 x 64 MONOCHROME2 image whose values run from 0 (left) to 4032 (right)."""
    ds = make_dataset(series_uid=SERIES_UID, rows=64, columns=64, **attributes)
    ds.PixelData = np.tile(np.arange(64, dtype=np.uint16) * 64, (64, 1)).tobytes()
    return to_bytes(ds)


def rendered(data: bytes) -> np.ndarray:
    ingest_bytes(data)
    path = thumbnails.series_thumbnail(series())
    assert path is not None
    return np.asarray(Image.open(path))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # Native 16-bit, with a window in the header.
        "MR_small_RLE.dcm",  # RLE Lossless.
        "JPEG2000.dcm",  # JPEG 2000, through pylibjpeg.
        "SC_rgb_jpeg_dcmtk.dcm",  # Colour JPEG baseline.
        "examples_palette.dcm",  # Palette colour.
    ],
)
def test_real_images_render_as_small_pngs(db, name):
    ingest_bytes(bundled(name))
    path = thumbnails.series_thumbnail(series())
    assert path is not None and path.suffix == ".png"
    image = Image.open(path)
    assert max(image.size) <= thumbnails.SIZE
    pixels = np.asarray(image)
    assert pixels.std() > 5, "the preview shows an image, not a flat square"


def test_the_middle_instance_of_the_series_is_shown(db):
    for number in (5, 1, 3, 4, 2):
        ingest_bytes(gradient(InstanceNumber=number))
    assert series_middle_instance(series()).instance_number == 3


def test_window_from_the_header_is_applied(db):
    pixels = rendered(gradient(WindowCenter=2048, WindowWidth=1024))
    # Left of the window is black, right of it white, the middle grey.
    assert pixels[:, :8].max() == 0
    assert pixels[:, -8:].min() == 255
    assert 100 < pixels[32, 32] < 160


def test_without_a_window_most_of_the_range_is_shown(db):
    pixels = rendered(gradient())
    assert pixels[:, 0].max() <= 5 and pixels[:, -1].min() >= 250
    assert np.all(np.diff(pixels[32].astype(int)) >= 0)


def test_monochrome1_is_inverted(db):
    pixels = rendered(gradient(PhotometricInterpretation="MONOCHROME1"))
    assert pixels[32, 0] >= 250 and pixels[32, -1] <= 5


def test_thumbnail_is_cached(db, monkeypatch):
    ingest_bytes(bundled("CT_small.dcm"))
    first = thumbnails.series_thumbnail(series())

    def must_not_render(*args, **kwargs):
        raise AssertionError("rendered twice")

    monkeypatch.setattr(thumbnails, "render", must_not_render)
    assert thumbnails.series_thumbnail(series()) == first
    assert first.parent == thumbnails.cache_folder()


def test_image_without_pixel_data_gets_no_thumbnail_and_is_not_retried(db, monkeypatch):
    ds = make_dataset(series_uid=SERIES_UID)
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(ds, keyword)
    ingest_bytes(to_bytes(ds))
    assert thumbnails.series_thumbnail(series()) is None
    monkeypatch.setattr(thumbnails, "render", lambda *a, **k: pytest.fail("retried"))
    assert thumbnails.series_thumbnail(series()) is None


def test_undecodable_pixel_data_gets_no_thumbnail(db):
    # pydicom's own example of a JPEG stream that no decoder can read.
    ingest_bytes(bundled("JPEG-lossy.dcm"))
    assert thumbnails.series_thumbnail(series()) is None


def test_view_serves_the_png_privately_or_the_placeholder(client, db):
    client.force_login(User.objects.create_user(username="dr", password="Sound-Pass-2024"))
    ingest_bytes(bundled("CT_small.dcm"))
    response = client.get(f"/studies/series/{SERIES_UID}/thumbnail")
    assert response["Content-Type"] == "image/png"
    assert "private" in response["Cache-Control"]
    Image.open(io.BytesIO(b"".join(response.streaming_content))).verify()

    other = "1.2.826.0.1.3680043.8.498.401"
    ds = make_dataset(series_uid=other)
    del ds.PixelData
    ingest_bytes(to_bytes(ds))
    response = client.get(f"/studies/series/{other}/thumbnail")
    assert response["Content-Type"] == "image/svg+xml"
    assert b"No preview" in response.content
