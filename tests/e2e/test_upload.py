"""Uploading a CD copy folder in Chromium: the progress bar, then the per-file result page."""

import re
import zipfile
from pathlib import Path

from playwright.sync_api import expect
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from studies.models import Instance
from tests.conftest import make_dataset, to_bytes
from uploads.models import UploadBatch

IMAGES = 6
# Chromium's network emulation slows the upload down enough to watch the bar move.
UPLOAD_BYTES_PER_SECOND = 300 * 1024


def make_cd_folder(root: Path) -> Path:
    """A patient's CD as copied to disk: DICOMDIR, images, a README and a zip of two more."""
    cd = root / "PATIENT_CD"
    fs = FileSet()
    study = generate_uid()
    for number in range(IMAGES):
        ds = make_dataset(
            study_uid=study,
            patient_name="LEFÈVRE^FRANÇOISE",
            patient_id="E2E-UP",
            rows=256,
            columns=256,
            InstanceNumber=number + 1,
        )
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fs.add(ds)
    fs.write(cd)
    (cd / "README.TXT").write_text("Viewer software on this CD: run VIEWER.EXE")
    with zipfile.ZipFile(cd / "EXTRA.ZIP", "w", zipfile.ZIP_DEFLATED) as zf:
        for number in range(2):
            zf.writestr(f"SC/IM{number}", to_bytes(make_dataset(study_uid=study, modality="SC")))
    return cd


def test_folder_upload_shows_progress_and_the_result(
    live_server, web_user, logged_in_page, screenshot, tmp_path
) -> None:
    cd = make_cd_folder(tmp_path)
    user = web_user(username="drupload", can_upload=True, real_name="Dr. Ana Upload")
    page = logged_in_page(user)

    page.get_by_role("link", name="Upload").click()
    page.wait_for_url(re.compile(r"/upload/$"))
    page.locator("#id_folder").set_input_files(cd)
    files = IMAGES + 3  # The images, DICOMDIR, README.TXT and EXTRA.ZIP.
    assert page.locator("#upload-selection").inner_text().startswith(f"{files} files chosen")
    screenshot(page, "upload-chosen")

    cdp = page.context.new_cdp_session(page)
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 20,
            "downloadThroughput": -1,
            "uploadThroughput": UPLOAD_BYTES_PER_SECOND,
        },
    )
    page.get_by_role("button", name="Upload").click()
    progress = page.locator("#upload-progress")
    progress.wait_for(state="visible")
    page.wait_for_function(
        "() => { const bar = document.getElementById('upload-bar');"
        " return bar.hasAttribute('value') && bar.value > 0 && bar.value < 100; }"
    )
    assert re.match(r"Uploading: .+ of .+ \(\d+%\)", page.locator("#upload-status").inner_text())
    assert page.get_by_role("button", name="Uploading…").is_disabled()
    screenshot(page, "upload-progress")

    page.wait_for_url(re.compile(r"/upload/\d+/$"), timeout=60_000)
    page.get_by_role("heading", name="Upload finished").wait_for()
    rows = page.locator("table.upload-results tbody tr")
    assert rows.count() == IMAGES + 2 + 2  # Images, two zip members, DICOMDIR, README.TXT.
    stored = page.locator("table.upload-results .badge-stored")
    assert stored.count() == IMAGES + 2
    expect(page.get_by_text("PATIENT_CD/EXTRA.ZIP/SC/IM1")).to_be_visible()
    expect(page.get_by_text("PATIENT_CD/README.TXT")).to_be_visible()
    tally = page.locator(".tally-stored").inner_text()
    assert tally.replace("\n", " ").startswith(f"{IMAGES + 2} stored")
    shot = screenshot(page, "upload-result")
    assert shot.stat().st_size > 10_000

    batch = UploadBatch.objects.get(user=user)
    assert (batch.stored, batch.skipped, batch.rejected) == (IMAGES + 2, 2, 0)
    assert Instance.objects.filter(source="upload", source_detail="drupload").count() == IMAGES + 2

    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "upload-result-phone")


def test_user_without_upload_right_has_no_upload_section(
    live_server, web_user, logged_in_page
) -> None:
    user = web_user(username="drreadonly", can_upload=False)
    page = logged_in_page(user)
    page.goto(live_server.url + "/studies/")
    expect(page.get_by_role("link", name="Search")).to_be_visible()
    assert page.get_by_role("link", name="Upload").count() == 0
    response = page.goto(live_server.url + "/upload/")
    assert response.status == 403
    expect(
        page.get_by_role("heading", name="Uploads are not enabled for your account")
    ).to_be_visible()


def test_too_many_files_are_refused_in_the_page_before_sending(
    live_server, web_user, logged_in_page, settings, tmp_path
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    for number in range(3):
        (tmp_path / f"IM{number}").write_bytes(to_bytes(make_dataset()))
    page = logged_in_page(web_user(username="drmany", can_upload=True))
    page.goto(live_server.url + "/upload/")
    page.locator("#id_files").set_input_files(sorted(tmp_path.glob("IM*")))
    error = page.locator("#upload-error")
    assert "one upload takes at most 2" in error.inner_text()
    page.get_by_role("button", name="Upload").click()
    assert page.url.endswith("/upload/")
    assert error.is_visible() and page.locator("#upload-progress").is_hidden()
    assert not UploadBatch.objects.exists()
