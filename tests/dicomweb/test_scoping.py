"""Who sees what: a patient's token reaches its one study on every route, and nothing else;
without a session every DICOMweb route answers 401 in JSON, never a redirect."""

import pytest

from studies.models import Instance
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


def routes(files) -> dict[str, str]:
    """Every DICOMweb and WADO-URI route for the first instance of ``files``."""
    st, se, sop = files.study.study_uid, files.series_uids[0], files.sop_uids[0]
    study = f"/dicomweb/studies/{st}"
    series = f"{study}/series/{se}"
    instance = f"{series}/instances/{sop}"
    return {
        "study": study,
        "study metadata": f"{study}/metadata",
        "study series": f"{study}/series",
        "study instances": f"{study}/instances",
        "series": series,
        "series metadata": f"{series}/metadata",
        "series instances": f"{series}/instances",
        "instance": instance,
        "instance metadata": f"{instance}/metadata",
        "frames": f"{instance}/frames/1",
        "bulk": f"{instance}/bulk/7FE00010",
        "wado": f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"
        "&contentType=application/dicom",
    }


@pytest.fixture
def two_studies(make_study):
    mine = make_study(series=(("CT", 2),), patient_id="MINE", patient_name="MINE^ONE")
    theirs = make_study(series=(("MR", 1),), patient_id="THEIRS", patient_name="THEIRS^TWO")
    return mine, theirs


def test_token_reaches_every_route_of_its_study(two_studies, patient_client) -> None:
    mine, _ = two_studies
    patient = patient_client(mine.study)
    for name, url in routes(mine).items():
        assert patient.get(url).status_code == 200, name


def test_token_gets_nothing_of_another_study(two_studies, patient_client) -> None:
    mine, theirs = two_studies
    patient = patient_client(mine.study)
    for name, url in routes(theirs).items():
        response = patient.get(url)
        assert response.status_code == 404, name
        assert theirs.study.study_uid.encode() not in response.content, name
    # A URL that mixes the granted study with another study's series or instance.
    mixed = f"/dicomweb/studies/{mine.study.study_uid}/series/{theirs.series_uids[0]}/metadata"
    assert patient.get(mixed).status_code == 404


def test_token_queries_at_the_root_see_only_its_study(two_studies, patient_client) -> None:
    mine, theirs = two_studies
    patient = patient_client(mine.study)
    for url in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"):
        body = patient.get(url).json()
        assert body and {item["0020000D"]["Value"][0] for item in body} == {mine.study.study_uid}
    other = theirs.study.study_uid
    for query in (f"StudyInstanceUID={other}", "PatientID=THEIRS", "PatientName=THEIRS*"):
        assert patient.get(f"/dicomweb/studies?{query}").json() == [], query
        assert patient.get(f"/dicomweb/series?{query}").json() == [], query
    sop = theirs.sop_uids[0]
    assert patient.get(f"/dicomweb/instances?SOPInstanceUID={sop}").json() == []


def test_a_physician_reaches_both(two_studies, physician) -> None:
    for files in two_studies:
        for name, url in routes(files).items():
            assert physician.get(url).status_code == 200, name
    assert len(physician.get("/dicomweb/studies").json()) == 2


def test_without_a_session_every_route_is_401_json(two_studies, client) -> None:
    mine, _ = two_studies
    urls = [*routes(mine).values(), "/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 401, url
        assert response["Content-Type"] == "application/json"
        assert "Log in" in response.json()["error"]


def test_a_revoked_link_stops_at_once(two_studies, patient_client) -> None:
    mine, _ = two_studies
    patient = patient_client(mine.study)
    assert patient.get(routes(mine)["study metadata"]).status_code == 200
    token_revoke(study=mine.study)
    assert patient.get(routes(mine)["study metadata"]).status_code == 401
    assert Instance.objects.count() == 3
