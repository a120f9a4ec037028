"""Weasis: launch pages, manifests valid against schema 2.5, and every URL in them working."""

import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from django.core import signing
from django.test import Client
from lxml import etree

from activity.models import Event
from dicomweb.access import weasis_credential
from studies import storage
from studies.models import Instance
from tests.dicomweb.multipart_reader import body_of

pytestmark = pytest.mark.django_db

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("weasis_manifest_2.5.xsd"))))
NS = {"w": "http://www.weasis.org/xsd/2.5"}


def manifest_url_from(page: bytes) -> str:
    """The manifest URL inside the page's weasis:// link, decoded as Weasis decodes it."""
    match = re.search(rb'href="(weasis://\?[^"]+)"', page)
    assert match, page[:2000]
    command = unquote(match.group(1).decode()).split("$", 1)[1]
    found = re.fullmatch(r'dicom:get -w "(?P<url>[^"$]+)"', command)
    assert found, command
    return found.group("url")


def fetch_manifest(url: str) -> etree._Element:
    """Weasis fetches the manifest without the browser's cookies."""
    response = Client().get(urlsplit(url).path, HTTP_ACCEPT="application/xml")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/xml")
    root = etree.fromstring(response.content)
    SCHEMA.assertValid(root)
    return root


def instance_urls(root: etree._Element) -> list[str]:
    """The WADO-URI requests Weasis makes for each instance (SeriesDownloadManager)."""
    (query,) = root.findall("w:arcQuery", NS)
    base, extra = query.get("baseUrl"), query.get("additionnalParameters")
    urls = []
    for study in query.iterfind(".//w:Study", NS):
        for series in study.iterfind("w:Series", NS):
            for instance in series.iterfind("w:Instance", NS):
                urls.append(
                    f"{base}?requestType=WADO&studyUID={study.get('StudyInstanceUID')}"
                    f"&seriesUID={series.get('SeriesInstanceUID')}"
                    f"&objectUID={instance.get('SOPInstanceUID')}"
                    f"&contentType=application%2Fdicom{extra}"
                )
    return urls


def check_every_url(urls: list[str]) -> set[str]:
    fetched = set()
    for url in urls:
        parts = urlsplit(url)
        response = Client().get(f"{parts.path}?{parts.query}")
        assert response.status_code == 200, (url, response.content[:300])
        sop = re.search(r"objectUID=([0-9.]+)", url).group(1)
        assert (
            body_of(response)
            == storage.absolute(Instance.objects.get(sop_uid=sop).path).read_bytes()
        )
        fetched.add(sop)
    return fetched


def test_study_launch_manifest_is_valid_and_every_url_works(make_study, physician) -> None:
    files = make_study(
        series=(("CT", 2), ("MR", 1)),
        patient_name="O'BRIEN^<JANE>&\x01CO",
        PatientSex="X",
    )
    page = physician.get(f"/weasis/launch/study/{files.study.study_uid}")
    assert page.status_code == 200
    assert b"weasis.org" in page.content and b"Open in Weasis" in page.content
    url = manifest_url_from(page.content)
    assert url.startswith("http://testserver/weasis/manifest/")
    root = fetch_manifest(url)
    patient = root.find(".//w:Patient", NS)
    assert patient.get("PatientName") == "O'BRIEN^<JANE>&CO"
    assert patient.get("PatientSex") is None  # Only M, F or O are allowed.
    (query,) = root.findall("w:arcQuery", NS)
    assert query.get("baseUrl") == "http://testserver/wado"
    assert query.get("additionnalParameters").startswith("&credential=")
    assert check_every_url(instance_urls(root)) == set(files.sop_uids)
    event = Event.objects.get(kind="viewer_opened")
    assert event.study_uid == files.study.study_uid and event.detail["viewer"] == "weasis"


def test_series_launch_lists_and_allows_only_that_series(make_study, physician) -> None:
    files = make_study(series=(("CT", 2), ("MR", 1)))
    page = physician.get(f"/weasis/launch/series/{files.series_uids[1]}")
    root = fetch_manifest(manifest_url_from(page.content))
    urls = instance_urls(root)
    assert check_every_url(urls) == {files.sop_uids[2]}
    other = (
        urls[0]
        .replace(files.series_uids[1], files.series_uids[0])
        .replace(files.sop_uids[2], files.sop_uids[0])
    )
    parts = urlsplit(other)
    assert Client().get(f"{parts.path}?{parts.query}").status_code == 404


def test_patient_launch_lists_all_the_patients_studies(make_study, physician) -> None:
    first = make_study(series=(("CT", 1),), patient_id="P-7")
    second = make_study(series=(("MR", 2),), patient_id="P-7", study_date="20240301")
    make_study(series=(("CR", 1),), patient_id="SOMEONE-ELSE")
    page = physician.get(f"/weasis/launch/patient/{first.study.patient_id}")
    root = fetch_manifest(manifest_url_from(page.content))
    assert len(root.findall(".//w:Patient", NS)) == 1
    assert check_every_url(instance_urls(root)) == set(first.sop_uids + second.sop_uids)
    assert Event.objects.filter(kind="viewer_opened").count() == 2


def test_token_launch_opens_the_tokens_study_only(make_study, patient_client) -> None:
    mine, other = make_study(series=(("CT", 1),)), make_study(series=(("CT", 1),), patient_id="B")
    patient = patient_client(mine.study)
    page = patient.get("/weasis/launch/token")
    assert page.status_code == 200
    root = fetch_manifest(manifest_url_from(page.content))
    assert check_every_url(instance_urls(root)) == set(mine.sop_uids)
    assert patient.get(f"/weasis/launch/study/{mine.study.study_uid}").status_code == 200
    assert patient.get(f"/weasis/launch/study/{other.study.study_uid}").status_code == 404
    assert patient.get(f"/weasis/launch/series/{other.series_uids[0]}").status_code == 404
    assert patient.get(f"/weasis/launch/patient/{other.study.patient_id}").status_code == 404


def test_launch_without_access(make_study, physician, client) -> None:
    files = make_study(series=(("CT", 1),))
    response = client.get(f"/weasis/launch/study/{files.study.study_uid}")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/weasis/launch/token").status_code == 404
    assert physician.get("/weasis/launch/token").status_code == 404
    assert physician.get("/weasis/launch/study/1.2.3").status_code == 404


def test_expired_or_forged_credentials_are_refused(make_study, physician, monkeypatch) -> None:
    files = make_study(series=(("CT", 1),))
    study_uid = files.study.study_uid
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now - 2 * 3600 - 5)
    old = weasis_credential(study_uids=[study_uid])
    monkeypatch.setattr(signing.time, "time", lambda: now)
    fresh = weasis_credential(study_uids=[study_uid])
    forged = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
    instance = Instance.objects.get()
    query = (
        f"requestType=WADO&studyUID={study_uid}&seriesUID={files.series_uids[0]}"
        f"&objectUID={instance.sop_uid}&contentType=application/dicom"
    )
    assert Client().get(f"/wado?{query}&credential={fresh}").status_code == 200
    for bad in (old, forged):
        assert Client().get(f"/weasis/manifest/{bad}").status_code == 403
        assert Client().get(f"/wado?{query}&credential={bad}").status_code == 403
    # The credential opens WADO-URI and the manifest only, never DICOMweb.
    response = Client().get(f"/dicomweb/studies/{study_uid}/metadata?credential={fresh}")
    assert response.status_code == 401
