"""A patient in a real browser: the link that ``study_token`` prints, on a phone.

Opens the link, checks the page, downloads the zip and compares it with the stored files, fetches
the report, and screenshots the page at a phone's size (and a desktop's, and the handout).
"""

import hashlib
import io
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pacsweb.models import ServerSetup
from studies import storage
from studies.models import Instance, Study, StudyReport
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.e2e.conftest import DESKTOP, PHONE

REPORT = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def study(transactional_db, live_server) -> Study:
    """A CT study of today (so its link works now) with real images, an MR series and a report."""
    today = timezone.localdate().strftime("%Y%m%d")
    study_uid, ct_series, mr_series = generate_uid(), generate_uid(), generate_uid()
    patient = {
        "PatientName": "GARCÍA^MARÍA JOSÉ",
        "PatientID": "PAT-7781",
        "PatientBirthDate": "19810923",
        "StudyInstanceUID": study_uid,
        "StudyDate": today,
        "StudyDescription": "CT CHEST WITH CONTRAST",
    }
    for number in range(1, 4):
        ds = dcmread(get_testdata_file("CT_small.dcm"))
        for keyword, value in patient.items():
            setattr(ds, keyword, value)
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = ct_series
        ds.InstanceNumber = number
        assert instance_ingest(file=to_bytes(ds), source=Instance.Source.IMPORT).ok
    mr = make_dataset(
        patient_name=patient["PatientName"],
        patient_id=patient["PatientID"],
        study_uid=study_uid,
        series_uid=mr_series,
        modality="MR",
        study_date=today,
        StudyDescription=patient["StudyDescription"],
    )
    assert instance_ingest(file=to_bytes(mr), source=Instance.Source.IMPORT).ok
    study = Study.objects.select_related("patient").get(study_uid=study_uid)
    StudyReport.objects.create(
        study=study,
        title="Radiology report.pdf",
        file=ContentFile(REPORT, name="report.pdf"),
        size=len(REPORT),
    )
    setup = ServerSetup.get()
    setup.institution = "St. Mary's Clinic"
    setup.department = "Radiology"
    setup.web_server_name = "localhost"
    setup.web_port = int(live_server.url.rsplit(":", 1)[1])
    setup.ssl_enabled = False
    setup.access_period_days = ServerSetup.AccessPeriod.ONE_MONTH
    setup.save()
    return study


def _printed_link(study: Study) -> str:
    out = io.StringIO()
    call_command("study_token", study.study_uid, stdout=out)
    return out.getvalue().strip()


def test_patient_opens_the_link_on_a_phone_and_downloads_the_study(
    live_server, new_page, screenshot, study
):
    link = _printed_link(study)
    assert link.startswith(f"{live_server.url}/token?")
    page = new_page(viewport=PHONE)
    response = page.goto(link)
    assert response.status == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    expect(page.get_by_role("heading", level=1)).to_have_text("GARCÍA, MARÍA JOSÉ")
    expect(page.get_by_text("CT CHEST WITH CONTRAST")).to_be_visible()
    expect(page.get_by_text("CT, MR")).to_be_visible()
    expect(page.get_by_role("link", name="Radiology report.pdf")).to_be_visible()
    viewer = page.get_by_role("link", name="Open in the web viewer")
    assert viewer.get_attribute("href") == f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}"
    screenshot(page, "patient-link-phone")
    # Nothing on the page is wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the images (zip)").click()
    download = info.value
    archive = zipfile.ZipFile(download.path())
    assert archive.testzip() is None
    zipped = sorted(hashlib.sha256(archive.read(n)).hexdigest() for n in archive.namelist())
    stored = sorted(
        hashlib.sha256(storage.absolute(path).read_bytes()).hexdigest()
        for path in Instance.objects.filter(series__study=study).values_list("path", flat=True)
    )
    assert zipped == stored and len(zipped) == 4

    report = page.context.request.get(
        live_server.url
        + page.get_by_role("link", name="Radiology report.pdf").get_attribute("href")
    )
    assert report.status == 200 and report.body() == REPORT


def test_patient_page_on_a_desktop_and_the_printed_handout(
    live_server, new_page, logged_in_page, web_user, screenshot, study
):
    page = new_page(viewport=DESKTOP)
    page.goto(_printed_link(study))
    expect(page.get_by_role("link", name="Open in the desktop viewer")).to_be_visible()
    screenshot(page, "patient-link-desktop")

    front_desk = logged_in_page(web_user(username="frontdesk"))
    front_desk.goto(f"{live_server.url}/studies/study/{study.study_uid}/handout")
    expect(front_desk.get_by_text(_printed_link(study))).to_be_visible()
    expect(front_desk.locator(".qr svg")).to_be_visible()
    front_desk.emulate_media(media="print")
    screenshot(front_desk, "patient-handout-print")


def test_wrong_link_on_a_phone(live_server, new_page, screenshot, study):
    page = new_page(viewport=PHONE)
    response = page.goto(f"{live_server.url}/token?{'x' * 64}")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not open anything")
    screenshot(page, "patient-link-unknown-phone")


def test_birth_date_question_in_a_real_browser(live_server, new_page, screenshot, study):
    """The form posts back through the CSRF check (the page's referrer policy must allow it)."""
    setup = ServerSetup.get()
    setup.patient_link_asks_birth_date = True
    setup.save()
    page = new_page(viewport=PHONE)
    page.goto(_printed_link(study))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your date of birth")
    field = page.get_by_label("Date of birth")
    field.fill("1981-09-24")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("This is not the date of birth we have")).to_be_visible()
    screenshot(page, "patient-link-birth-date-phone")
    page.get_by_label("Date of birth").fill("1981-09-23")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("GARCÍA, MARÍA JOSÉ")
