"""A physician in a real browser: log in, search, walk patient -> study -> series, attach a PDF.

Screenshots of every main page at desktop and phone sizes go to ``screenshot_dir`` (set
``PACSWEB_SCREENSHOT_DIR`` to keep them).
"""

import io
import re
from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import expect
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pypdf import PdfWriter

from pacsweb.models import ServerSetup
from studies.models import Instance, StudyReport
from studies.services import instance_ingest
from tests.conftest import make_dataset, to_bytes
from tests.e2e.conftest import DESKTOP, PHONE


def real_image(name: str, **attributes: object) -> bytes:
    """One of pydicom's bundled images, re-identified as a patient of ours."""
    ds = dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return to_bytes(ds)


def ingest(data: bytes) -> None:
    outcome = instance_ingest(file=data, source=Instance.Source.IMPORT)
    assert outcome.ok, outcome.reason


@pytest.fixture
def archive(transactional_db) -> dict[str, str]:
    """Three patients; John Doe has a CT study (two series of real images) and an older MR."""
    ServerSetup.objects.update_or_create(
        pk=1, defaults={"institution": "St. Mary's Hospital", "department": "Radiology"}
    )
    ct, mr = generate_uid(), generate_uid()
    ct_axial, ct_scout, mr_series = generate_uid(), generate_uid(), generate_uid()
    john = {
        "PatientName": "DOE^JOHN",
        "PatientID": "PAT-1001",
        "PatientBirthDate": "19640312",
        "PatientSex": "M",
        "ReferringPhysicianName": "HOUSE^GREGORY",
        "InstitutionName": "General Hospital",
    }
    for number in range(1, 4):
        ingest(
            real_image(
                "CT_small.dcm",
                StudyInstanceUID=ct,
                SeriesInstanceUID=ct_axial,
                StudyDate="20240115",
                StudyTime="101500",
                StudyDescription="CT CHEST WITH CONTRAST",
                AccessionNumber="ACC-2024-0042",
                SeriesNumber=2,
                SeriesDescription="AXIAL 5mm",
                InstanceNumber=number,
                **john,
            )
        )
    ingest(
        real_image(
            "CT_small.dcm",
            StudyInstanceUID=ct,
            SeriesInstanceUID=ct_scout,
            StudyDate="20240115",
            StudyDescription="CT CHEST WITH CONTRAST",
            AccessionNumber="ACC-2024-0042",
            SeriesNumber=1,
            SeriesDescription="SCOUT",
            InstanceNumber=1,
            **john,
        )
    )
    ingest(
        real_image(
            "MR_small.dcm",
            StudyInstanceUID=mr,
            SeriesInstanceUID=mr_series,
            StudyDate="20230602",
            StudyDescription="MR KNEE LEFT",
            AccessionNumber="ACC-2023-0917",
            SeriesNumber=1,
            SeriesDescription="T1 SAG",
            **john,
        )
    )
    ingest(
        to_bytes(
            make_dataset(
                patient_name="MÜLLER^ANNA",
                patient_id="PAT-2002",
                study_date="20240301",
                modality="CR",
                StudyDescription="CHEST PA",
                PatientSex="F",
                PatientBirthDate="19881120",
            )
        )
    )
    ingest(
        to_bytes(
            make_dataset(
                patient_name="O'NEIL^<b>SEAN</b>",
                patient_id="PAT-3003",
                study_date="20240210",
                modality="US",
                StudyDescription='ABDOMEN "RUQ" <script>alert(1)</script>',
            )
        )
    )
    return {"ct": ct, "mr": mr, "ct_axial": ct_axial, "ct_scout": ct_scout}


def a_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_physician_searches_and_walks_down_to_a_series(
    live_server, archive, web_user, logged_in_page, screenshot
):
    page = logged_in_page(web_user(username="drhouse", real_name="Dr. Gregory House"))
    assert page.url == live_server.url + "/studies/"
    screenshot(page, "query-empty-desktop")

    page.get_by_label("Patient name").fill("doe")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"patient_name=doe"))
    results = page.locator(".patient-card")
    assert results.count() == 1
    assert "DOE, JOHN" in results.first.inner_text()
    assert page.locator("tbody.study").count() == 2
    screenshot(page, "query-results-desktop")

    page.get_by_role("link", name="Review studies ›").click()
    page.wait_for_url(re.compile(r"/studies/patient/\d+/$"))
    expect(page.get_by_role("heading", name="DOE, JOHN")).to_be_visible()
    screenshot(page, "patient-desktop")

    page.get_by_role("link", name="CT CHEST WITH CONTRAST").click()
    page.wait_for_url(re.compile(r"/studies/study/[0-9.]+/$"))
    series = page.locator("article.series")
    assert series.count() == 2
    assert "SCOUT" in series.first.inner_text()
    # Every thumbnail was rendered from real pixel data (a PNG, not the placeholder).
    for image in page.locator("article.series img").all():
        image.scroll_into_view_if_needed()
        expect(image).not_to_have_js_property("naturalWidth", 0)
    for source in page.locator("article.series img").evaluate_all("els => els.map(e => e.src)"):
        response = page.request.get(source)
        assert response.headers["content-type"] == "image/png"
    screenshot(page, "study-desktop")

    series.nth(1).locator("h3 a").click()
    page.wait_for_url(re.compile(r"/studies/series/[0-9.]+/$"))
    assert page.locator("table.instances tbody tr").count() == 3
    screenshot(page, "series-desktop")


def test_pages_on_a_phone(live_server, archive, web_user, logged_in_page, screenshot):
    page = logged_in_page(web_user(username="drphone"), viewport=PHONE)
    screenshot(page, "query-empty-phone")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"\?"))
    assert page.locator(".patient-card").count() == 3
    # The search form folds to one line above the results, and opens again on a tap.
    expect(page.get_by_label("Patient name")).to_be_hidden()
    page.get_by_text("Search criteria").click()
    expect(page.get_by_label("Patient name")).to_be_visible()
    page.get_by_text("Search criteria").click()
    # No sideways scrolling on a phone: the page is as wide as the screen.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    screenshot(page, "query-results-phone")
    page.goto(f"{live_server.url}/studies/study/{archive['ct']}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for image in page.locator("article.series img").all():
        image.scroll_into_view_if_needed()
        expect(image).not_to_have_js_property("naturalWidth", 0)
    screenshot(page, "study-phone")
    page.goto(f"{live_server.url}/studies/series/{archive['ct_axial']}/")
    screenshot(page, "series-phone")


def test_landing_and_login_pages(live_server, transactional_db, new_page, screenshot):
    ServerSetup.objects.update_or_create(
        pk=1, defaults={"institution": "St. Mary's Hospital", "department": "Radiology"}
    )
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(viewport=viewport)
        page.goto(live_server.url + "/")
        expect(page.get_by_role("link", name="Log in")).to_be_visible()
        assert page.get_by_role("link", name="Download Weasis").get_attribute("href") == (
            "https://weasis.org/en/getting-started/download-dicom-viewer/"
        )
        screenshot(page, f"landing-{name}")
        page.get_by_role("link", name="Log in").click()
        page.get_by_label("Username").fill("nobody")
        page.get_by_label("Password").fill("wrong-password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("The username or password is not correct.")).to_be_visible()
        screenshot(page, f"login-error-{name}")


def test_physician_attaches_a_pdf_report(
    live_server, archive, web_user, logged_in_page, screenshot, tmp_path: Path
):
    page = logged_in_page(web_user(username="drreport"))
    page.goto(f"{live_server.url}/studies/study/{archive['ct']}/")
    pdf = tmp_path / "Report CT chest.pdf"
    pdf.write_bytes(a_pdf())
    page.get_by_label("PDF report for this study").set_input_files(str(pdf))
    page.get_by_role("button", name="Attach", exact=True).click()
    expect(page.get_by_text("is attached to the study")).to_be_visible()
    report = StudyReport.objects.get(study__study_uid=archive["ct"])
    assert report.title == "Report CT chest.pdf"
    screenshot(page, "study-with-report-desktop")

    with page.expect_download() as download_info:
        page.locator(".study-reports").get_by_role(
            "link", name=re.compile("Report CT chest")
        ).click()
    download = download_info.value
    assert download.suggested_filename == "Report CT chest.pdf"
    assert Path(download.path()).read_bytes() == pdf.read_bytes()

    # A text file named .pdf is refused with a reason, and nothing is stored.
    fake = tmp_path / "notes.pdf"
    fake.write_text("just some notes")
    page.get_by_label("PDF report for this study").set_input_files(str(fake))
    page.get_by_role("button", name="Attach", exact=True).click()
    expect(page.get_by_text("This is not a PDF file.")).to_be_visible()
    assert StudyReport.objects.count() == 1


def test_physician_attaches_a_pdf_from_the_results(
    live_server, archive, web_user, logged_in_page, screenshot, tmp_path: Path
):
    page = logged_in_page(web_user(username="drlist"))
    page.goto(live_server.url + "/studies/?patient_name=doe^john")
    row = page.locator("tbody.study", has_text="MR KNEE LEFT")
    row.get_by_role("link", name="Attach PDF").click()
    dialog = page.get_by_role("dialog")
    assert "MR KNEE LEFT" in dialog.inner_text()
    pdf = tmp_path / "knee.pdf"
    pdf.write_bytes(a_pdf())
    dialog.get_by_label("PDF report for this study").set_input_files(str(pdf))
    screenshot(page, "attach-dialog-desktop")
    dialog.get_by_role("button", name="Attach").click()
    page.wait_for_url(re.compile(r"patient_name="))
    report = StudyReport.objects.get()
    assert report.study.study_uid == archive["mr"]
    # Back on the same results, the report is listed on its study's row.
    row = page.locator("tbody.study", has_text="MR KNEE LEFT")
    expect(row.get_by_role("link", name=re.compile("knee.pdf"))).to_be_visible()


def test_copy_patient_link(live_server, archive, web_user, logged_in_page, browser):
    user = web_user(username="drcopy")
    page = logged_in_page(user)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/studies/study/{archive['ct']}/")
    page.get_by_role("button", name="Copy patient link").click()
    page.get_by_role("button", name="Link copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("http") and "/token?" in copied


def test_copy_patient_link_falls_back_to_a_selectable_field(
    live_server, archive, web_user, logged_in_page
):
    page = logged_in_page(web_user(username="drnoclip"))
    page.goto(f"{live_server.url}/studies/study/{archive['ct']}/")
    # The browser refuses the clipboard (as it may for a page without the permission).
    page.evaluate(
        "() => { navigator.clipboard.writeText = () => Promise.reject(new Error('denied')); }"
    )
    page.get_by_role("button", name="Copy patient link").click()
    field = page.get_by_label("Patient link")
    field.wait_for()
    assert "/token?" in field.input_value()
    expect(page.get_by_text("The browser refused to copy")).to_be_visible()
    # The endpoint failing is reported in the same place.
    page.route("**/patient-link", lambda route: route.fulfill(status=500, body="broken"))
    page.get_by_role("button", name="Copy patient link").click()
    page.get_by_text("The patient link could not be made: the server answered 500.").wait_for()


def test_user_without_upload_right_sees_no_upload_section(
    live_server, transactional_db, web_user, logged_in_page
):
    uploader = logged_in_page(web_user(username="uploader", can_upload=True))
    reader = logged_in_page(web_user(username="reader", can_upload=False))
    for page in (uploader, reader):
        page.goto(live_server.url + "/studies/")
    assert reader.get_by_role("link", name="Upload").count() == 0
    assert reader.locator("input[type=file][multiple]").count() == 0
    link = uploader.get_by_role("link", name="Upload")
    assert link.get_attribute("href") == reverse("uploads:upload")
