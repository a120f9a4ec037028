"""QIDO-RS: matching on every supported attribute and range form, includefield, paging, errors."""

import pytest

from tests.dicomweb.dicom_json import check_array

pytestmark = pytest.mark.django_db

STUDIES = {
    "A": dict(
        patient_name="DOE^JOHN", patient_id="PAT001", study_date="20240115", StudyTime="101500",
        AccessionNumber="ACC001", StudyDescription="CT HEAD", ReferringPhysicianName="HOUSE^GREGORY",
        InstitutionName="General Hospital", PatientBirthDate="19700101", PatientSex="M", StudyID="1",
        SeriesDate="20240115", SeriesTime="101600", Manufacturer="ACME",
        series=(("CT", 2), ("MR", 1)),
    ),
    "B": dict(
        patient_name="MÜLLER^ANNA", patient_id="PAT002", study_date="20240620", StudyTime="143000",
        AccessionNumber="ACC777", StudyDescription="MR KNEE", ReferringPhysicianName="WILSON^JAMES",
        InstitutionName="Klinik Süd", PatientBirthDate="19851224", PatientSex="F", StudyID="77",
        SeriesDate="20240621", SeriesTime="150000", Manufacturer="OTHER",
        series=(("MR", 1),),
    ),
    "C": dict(
        patient_name="SMITH^ALEX", patient_id="X-PAT-3", study_date="20230301", StudyTime="080000",
        AccessionNumber="A3", StudyDescription="CHEST", ReferringPhysicianName="CUDDY^LISA",
        InstitutionName="General Hospital", PatientBirthDate="20000229", PatientSex="O", StudyID="3",
        SeriesDate="20230301", SeriesTime="080500", Manufacturer="ACME",
        series=(("CR", 1), ("SR", 1)),
    ),
}  # fmt: skip


@pytest.fixture
def archive(make_study) -> dict:
    return {letter: make_study(**attrs) for letter, attrs in STUDIES.items()}


def _letters(archive: dict, body: list, key: str = "0020000D") -> set[str]:
    by_uid = {files.study.study_uid: letter for letter, files in archive.items()}
    return {by_uid[item[key]["Value"][0]] for item in body}


def _get(client, url: str, **params):
    response = client.get(url, params, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    body = response.json()
    check_array(body)
    return body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "ABC"),
        ({"PatientName": "doe"}, "A"),
        ({"PatientName": "*Test*"}, ""),
        ({"PatientName": "*ll*"}, "B"),
        ({"PatientName": "muller^anna"}, "B"),
        ({"00100010": "S?ITH*"}, "C"),
        ({"PatientID": "PAT00*"}, "AB"),
        ({"00100020": "X-PAT-3"}, "C"),
        ({"PatientSex": "F"}, "B"),
        ({"PatientBirthDate": "19700101-19860101"}, "AB"),
        ({"AccessionNumber": "ACC*"}, "AB"),
        ({"00080050": "A3"}, "C"),
        ({"StudyDescription": "*KNEE*"}, "B"),
        ({"StudyDescription": "chest"}, "C"),
        ({"ReferringPhysicianName": "house"}, "A"),
        ({"InstitutionName": "klinik sud"}, "B"),
        ({"StudyID": "77"}, "B"),
        ({"StudyDate": "20240115"}, "A"),
        ({"StudyDate": "20240101-20241231"}, "AB"),
        ({"StudyDate": "20240201-"}, "B"),
        ({"StudyDate": "-20240115"}, "AC"),
        ({"StudyDate": "19700102-20240131"}, "AC"),
        ({"StudyTime": "1000-1200"}, "A"),
        ({"StudyTime": "14-"}, "B"),
        ({"StudyTime": "-08"}, "C"),
        ({"ModalitiesInStudy": "CT"}, "A"),
        ({"ModalitiesInStudy": "CR,MR"}, "ABC"),
        ({"ModalitiesInStudy": "SR\\CT"}, "AC"),
        ({"00080061": "MR"}, "AB"),
        ({"PatientName": "*", "ModalitiesInStudy": "MR", "StudyDate": "20240601-"}, "B"),
        ({"fuzzymatching": "true", "PatientName": "Doe"}, "A"),
    ],
)
def test_study_matching(archive, physician, params, expected) -> None:
    body = _get(physician, "/dicomweb/studies", **params)
    assert _letters(archive, body) == set(expected)


def test_study_uid_lists_by_backslash_comma_or_repetition(archive, physician) -> None:
    a, c = archive["A"].study.study_uid, archive["C"].study.study_uid
    for query in (f"StudyInstanceUID={a}\\{c}", f"0020000D={a},{c}"):
        response = physician.get("/dicomweb/studies?" + query)
        assert _letters(archive, response.json()) == {"A", "C"}


def test_study_attributes_and_shapes(archive, physician) -> None:
    (item,) = _get(physician, "/dicomweb/studies", PatientID="PAT001")
    for tag in (
        "00080020", "00080030", "00080050", "00080061", "00080090", "00081030", "00100010",
        "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
    ):  # fmt: skip
        assert tag in item, tag
    assert item["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}]}
    assert item["00201206"]["Value"] == [2] and item["00201208"]["Value"] == [3]
    assert item["00080020"]["Value"] == ["20240115"]
    assert "00081190" not in item  # No RetrieveURL: Weasis would prefer it to its own URLs.


def test_includefield_list_comma_repeated_and_all(archive, physician) -> None:
    url = "/dicomweb/studies?PatientID=PAT001"
    plain = physician.get(url).json()[0]
    assert "00080080" not in plain and "00100021" not in plain
    listed = physician.get(url + "&includefield=00080080%2CIssuerOfPatientID").json()[0]
    repeated = physician.get(url + "&includefield=InstitutionName&includefield=00100021").json()[0]
    assert listed == repeated
    assert listed["00080080"] == {"vr": "LO", "Value": ["General Hospital"]}
    assert listed["00100021"] == {"vr": "LO"}
    everything = physician.get(url + "&includefield=all").json()[0]
    assert set(listed) <= set(everything)


def test_includefield_beyond_the_index_comes_from_stored_metadata(archive, physician) -> None:
    (study,) = _get(physician, "/dicomweb/studies", PatientID="PAT002", includefield="00080070")
    assert study["00080070"] == {"vr": "LO", "Value": ["OTHER"]}
    series = _get(physician, "/dicomweb/series", PatientID="PAT001", includefield="Manufacturer")
    assert [s["00080070"]["Value"] for s in series] == [["ACME"], ["ACME"]]
    instances = _get(
        physician, "/dicomweb/instances", PatientID="PAT001", includefield="00280100,00100010"
    )
    assert len(instances) == 3
    assert {i["00280100"]["Value"][0] for i in instances} == {16}
    unknown = _get(physician, "/dicomweb/studies", PatientID="PAT002", includefield="00181030")
    assert unknown[0]["00181030"] == {"vr": "LO"}


def test_limit_and_offset_page_through_newest_first(archive, physician) -> None:
    everything = _get(physician, "/dicomweb/studies")
    assert _letters(archive, everything[:1]) == {"B"}  # The newest study first.
    pages = [_get(physician, "/dicomweb/studies", limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 1, 0]
    assert [i["0020000D"] for p in pages for i in p] == [i["0020000D"] for i in everything]


def test_limit_above_the_maximum_is_capped_with_a_warning(archive, physician) -> None:
    response = physician.get("/dicomweb/studies?limit=999999")
    assert response.status_code == 200 and len(response.json()) == 3
    assert "limited to 1000" in response["Warning"]


def test_series_of_a_study_and_their_matching(archive, physician) -> None:
    uid = archive["A"].study.study_uid
    series = _get(physician, f"/dicomweb/studies/{uid}/series")
    assert [s["00080060"]["Value"] for s in series] == [["CT"], ["MR"]]
    first = series[0]
    for tag in ("00080060", "0008103E", "0020000E", "00200011", "00201209", "00080021"):
        assert tag in first, tag
    assert first["00201209"]["Value"] == [2]
    assert len(_get(physician, f"/dicomweb/studies/{uid}/series", Modality="MR")) == 1
    assert len(_get(physician, f"/dicomweb/studies/{uid}/series", SeriesNumber="1")) == 1
    assert len(_get(physician, f"/dicomweb/studies/{uid}/series", SeriesDescription="CT*")) == 1
    one = archive["A"].series_uids[1]
    assert _get(physician, f"/dicomweb/studies/{uid}/series", SeriesInstanceUID=one)[0]["0020000E"][
        "Value"
    ] == [one]


def test_series_at_the_root_match_study_and_series_keys(archive, physician) -> None:
    series = _get(physician, "/dicomweb/series", Modality="MR")
    assert _letters(archive, series) == {"A", "B"}
    assert "00100010" in series[0]  # Study attributes come with series found across studies.
    assert _letters(archive, _get(physician, "/dicomweb/series", SeriesDate="20240601-")) == {"B"}
    assert _letters(
        archive, _get(physician, "/dicomweb/series", SeriesTime="0800-0900", PatientSex="O")
    ) == {"C"}
    assert _get(physician, "/dicomweb/series", Modality="MR", PatientName="smith") == []


def test_instances_at_every_level(archive, physician) -> None:
    files = archive["A"]
    uid, series_uid = files.study.study_uid, files.series_uids[0]
    instances = _get(physician, f"/dicomweb/studies/{uid}/series/{series_uid}/instances")
    assert [i["00200013"]["Value"] for i in instances] == [[1], [2]]
    item = instances[0]
    for tag in ("00080016", "00080018", "00200013", "00280010", "00280011", "00083002"):
        assert tag in item, tag
    assert len(_get(physician, f"/dicomweb/studies/{uid}/instances")) == 3
    assert len(_get(physician, f"/dicomweb/studies/{uid}/instances", Modality="MR")) == 1
    sop = files.sop_uids[1]
    found = _get(physician, "/dicomweb/instances", SOPInstanceUID=sop)
    assert [i["00080018"]["Value"] for i in found] == [[sop]]
    assert len(_get(physician, "/dicomweb/instances", InstanceNumber="2")) == 1
    assert len(_get(physician, "/dicomweb/instances", SOPClassUID="1.2.840.10008.5.1.4.1.1.2")) == 6
    assert _letters(archive, _get(physician, "/dicomweb/instances", PatientID="PAT002")) == {"B"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("StudyDate=2024-13-45", "date"),
        ("StudyDate=yesterday", "date"),
        ("StudyTime=25h", "time"),
        ("NotAKeyword=1", "neither a DICOM keyword"),
        ("00081250.0020000D=1", "sequences"),
        ("PatientName=A&PatientName=B", "more than once"),
        ("limit=-1", "limit"),
        ("offset=x", "offset"),
        ("fuzzymatching=maybe", "fuzzymatching"),
        ("includefield=NoSuchThing", "neither a DICOM keyword"),
        ("SeriesNumber=1", "cannot be matched"),
    ],
)
def test_bad_parameters_get_400_with_a_clear_message(archive, physician, query, message) -> None:
    response = physician.get("/dicomweb/studies?" + query)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_bad_series_number_is_400(archive, physician) -> None:
    response = physician.get("/dicomweb/series?SeriesNumber=one")
    assert response.status_code == 400 and "integer" in response.json()["error"]


def test_unknown_study_is_404(archive, physician) -> None:
    assert physician.get("/dicomweb/studies/1.2.3/series").status_code == 404


def test_xml_only_accept_is_406(archive, physician) -> None:
    response = physician.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+xml")
    assert response.status_code == 406


def test_no_n_plus_one(make_study, physician, django_assert_max_num_queries) -> None:
    for _ in range(2):
        make_study(series=(("CT", 1),))
    url = "/dicomweb/studies?includefield=00080070"
    # The session's first request writes it once (its idle refresh); measure the ones after.
    physician.get(url)
    with django_assert_max_num_queries(12) as small:
        physician.get(url)
    for _ in range(6):
        make_study(series=(("CT", 1), ("MR", 1)))
    with django_assert_max_num_queries(12) as large:
        assert len(physician.get(url).json()) == 8
    assert len(large.captured_queries) == len(small.captured_queries)
    with django_assert_max_num_queries(12) as series_queries:
        assert len(physician.get("/dicomweb/series?includefield=00080070").json()) == 14
    with django_assert_max_num_queries(12):
        assert len(physician.get("/dicomweb/instances?includefield=00280100").json()) == 14
    assert series_queries.captured_queries


def test_weasis_queries_get_no_retrieve_url(archive, physician) -> None:
    uid = archive["A"].study.study_uid
    series = _get(
        physician,
        f"/dicomweb/studies/{uid}/series",
        includefield="0008103E,00080060,0020000E,00200011,00081190",
    )
    assert len(series) == 2 and all("00081190" not in item for item in series)


def test_ohif_study_list_query(archive, physician, django_assert_max_num_queries) -> None:
    url = (
        "/dicomweb/studies?limit=101&offset=0&fuzzymatching=false"
        "&includefield=00081030%2C00080060%2C00080090%2C00100030&PatientName=*OE*"
    )
    with django_assert_max_num_queries(8):
        response = physician.get(url, HTTP_ACCEPT="application/dicom+json")
    (item,) = response.json()
    for tag in ("0020000D", "00080020", "00080030", "00080050", "00100020", "00100010",
                "00100030", "00201208", "00081030", "00080090", "00080061"):  # fmt: skip
        assert tag in item, tag
    # Modality is a series attribute: not guessed from one instance at study level.
    assert "00080060" not in item
