"""OHIF in Chromium on pacsweb's own DICOMweb: a physician from the study page, a patient from
the token page. The viewport must show the image (pixels read back from its canvas) and the
series panel its thumbnails."""

import numpy as np
import pytest
from playwright.sync_api import expect
from pydicom.uid import generate_uid

from pacsweb.models import ServerSetup
from studies.models import Instance, Study
from studies.services import Status, instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.dicomweb.ohif_cache import installed_ohif
from tokens.services import token_ensure

# Cornerstone draws each viewport into a 2D canvas of this class.
VIEWPORT_CANVAS = ".cornerstone-canvas"
OHIF_TIMEOUT_MS = 90_000

CANVAS_STATS = """(selector) => {
  const canvas = document.querySelector(selector);
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
  let lit = 0, sum = 0, sumSquares = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
    sum += v; sumSquares += v * v; if (v > 16) lit++;
  }
  const n = data.length / 4, mean = sum / n;
  return {width: canvas.width, height: canvas.height, lit: lit / n,
          std: Math.sqrt(sumSquares / n - mean * mean)};
}"""


THUMBNAIL_STATS = """(() => {
  const img = document.querySelector('img[src^="data:image/"]');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const {data} = context.getImageData(0, 0, canvas.width, canvas.height);
  let sum = 0, sumSquares = 0;
  for (let i = 0; i < data.length; i += 4) { sum += data[i]; sumSquares += data[i] * data[i]; }
  const n = data.length / 4, mean = sum / n;
  return {width: canvas.width, std: Math.sqrt(sumSquares / n - mean * mean)};
})"""


def ct_phantom(slices: int = 4, size: int = 512) -> list:
    """A head-like CT phantom: skull ring, brain, ventricles and a lesion that moves per slice."""
    study_uid, series_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2
    radius = np.hypot((x - centre) / 0.85, y - centre)
    datasets = []
    for index in range(slices):
        hu = np.full((size, size), -1000.0, dtype=np.float32)  # Air.
        hu[radius < size * 0.42] = 1200.0  # Skull.
        hu[radius < size * 0.38] = 35.0  # Brain.
        ventricles = (np.hypot(x - centre + 30, (y - centre) / 2.2) < 14) | (
            np.hypot(x - centre - 30, (y - centre) / 2.2) < 14
        )
        hu[ventricles] = 5.0
        lesion = np.hypot(x - centre - 70 + 10 * index, y - centre + 60) < 18 + 3 * index
        hu[lesion] = 75.0
        hu += np.random.default_rng(index).normal(0, 6, hu.shape)
        stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
        ds = make_dataset(
            patient_name="PHANTOM^HEAD",
            patient_id="PHANTOM-1",
            study_uid=study_uid,
            series_uid=series_uid,
            rows=size,
            columns=size,
            StudyDescription="CT HEAD PHANTOM",
            SeriesDescription="AXIAL 5MM",
            InstanceNumber=index + 1,
            ImagePositionPatient=[-125.0, -125.0, 5.0 * index],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
            PixelSpacing=[250 / size, 250 / size],
            SliceThickness=5.0,
            SliceLocation=5.0 * index,
            FrameOfReferenceUID=frame_of_reference,
            RescaleIntercept=-1024,
            RescaleSlope=1,
            RescaleType="HU",
            WindowCenter=40,
            WindowWidth=120,
        )
        ds.PixelData = stored.tobytes()
        datasets.append(ds)
    return datasets


@pytest.fixture
def ct_study(transactional_db, settings) -> Study:
    settings.OHIF_DIR = installed_ohif()
    for ds in ct_phantom():
        outcome = instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT)
        assert outcome.status == Status.STORED, outcome
    return Study.objects.get()


def check_viewer_shows_the_study(page, screenshot, name: str) -> None:
    page.wait_for_selector(VIEWPORT_CANVAS, timeout=OHIF_TIMEOUT_MS)
    # The canvas exists before the first frame is drawn: wait until it has a picture.
    page.wait_for_function(
        f"(() => {{ const s = ({CANVAS_STATS})('{VIEWPORT_CANVAS}'); return s.lit > 0.2 && s.std > 20; }})()",
        timeout=OHIF_TIMEOUT_MS,
    )
    stats = page.evaluate(CANVAS_STATS, VIEWPORT_CANVAS)
    assert stats["width"] > 100 and stats["height"] > 100, stats
    assert stats["lit"] > 0.2 and stats["std"] > 20, stats
    # The series panel's thumbnails are images rendered from the frames (PNG data URLs).
    page.wait_for_function(THUMBNAIL_STATS + "() !== null", timeout=OHIF_TIMEOUT_MS)
    thumbnail = page.evaluate(THUMBNAIL_STATS + "()")
    assert thumbnail["width"] >= 64 and thumbnail["std"] > 20, thumbnail
    expect(page.get_by_text("AXIAL 5MM").first).to_be_visible()
    screenshot(page, name)


def test_physician_opens_a_ct_study_in_ohif(
    ct_study, live_server, web_user, logged_in_page, screenshot
) -> None:
    page = logged_in_page(web_user(username="drhouse"))
    page.goto(f"{live_server.url}/studies/study/{ct_study.study_uid}/")
    page.get_by_role("link", name="Web viewer").first.click()
    page.wait_for_url(f"**/ohif/viewer?StudyInstanceUIDs={ct_study.study_uid}*")
    check_viewer_shows_the_study(page, screenshot, "ohif-physician")


def test_patient_opens_the_study_from_the_token_page(
    ct_study, live_server, new_page, screenshot
) -> None:
    setup = ServerSetup.get()
    setup.access_period_days = ServerSetup.AccessPeriod.UNLIMITED
    setup.institution = "St. Mary's Clinic"
    setup.save()
    _token, text = token_ensure(study=ct_study)
    page = new_page()
    page.goto(f"{live_server.url}/token?{text}")
    page.get_by_role("link", name="Open in the web viewer").click()
    check_viewer_shows_the_study(page, screenshot, "ohif-patient")
    # The generated app-config shows the institution in place of OHIF's logo.
    expect(page.get_by_title("St. Mary's Clinic")).to_be_visible()


def test_weasis_launch_page(ct_study, live_server, web_user, logged_in_page, screenshot) -> None:
    page = logged_in_page(web_user(username="drwilson"))
    # Chromium has no handler for weasis://: the automatic redirect is ignored, the page stays.
    page.goto(f"{live_server.url}/weasis/launch/study/{ct_study.study_uid}")
    link = page.get_by_role("link", name="Open in Weasis")
    assert link.get_attribute("href").startswith("weasis://?%24dicom%3Aget%20-w%20%22http")
    expect(page.get_by_text("free desktop DICOM viewer")).to_be_visible()
    screenshot(page, "weasis-launch")
