"""A token for study A never serves anything of study B, on any URL of the app.

The URLs are taken from the URLconf itself, so every page, download, report, DICOMweb and WADO
route that exists when the suite runs is tried, with study B's identifiers filled in, from a
session that opened study A's link. The known query-string forms (QIDO-RS filters, WADO-URI, the
viewer) are tried as well.
"""

import datetime
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from pacsweb.models import ServerSetup
from studies.models import Instance, Series
from tokens import services
from tokens.access import granted_study_uid

# Route converters (<str:name>) and regex groups ((?P<name>...)) of the URLconf.
ROUTE_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


@pytest.fixture
def two_studies(clock, setup, make_study, add_report):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    a = make_study(patient_name="DOE^ALICE", patient_id="PID-A", StudyDescription="STUDY ALPHA")
    b = make_study(patient_name="ROE^BORIS", patient_id="PID-B", StudyDescription="STUDY BRAVO")
    add_report(a, title="alpha.pdf", content=b"%PDF-1.4 alpha-report-body %%EOF")
    b_report = add_report(b, title="bravo.pdf", content=b"%PDF-1.4 bravo-report-body %%EOF")
    return a, b, b_report


def _identifiers(study, report) -> dict[str, str]:
    series = Series.objects.filter(study=study).order_by("pk").first()
    instance = Instance.objects.filter(series=series).order_by("pk").first()
    return {
        "study": study.study_uid,
        "series": series.series_uid,
        "instance": instance.sop_uid,
        "report": str(report.pk),
        "patient": str(study.patient.pk),
        "pk": str(study.pk),
    }


def _value(name: str, before: str, ids: dict[str, str]) -> str:
    """B's identifier for a URL parameter, judged by its name and the path segment before it."""
    segment = before.rstrip("/").rsplit("/", 1)[-1].lower()
    name = name.lower()
    if "series" in name or segment == "series":
        return ids["series"]
    if "sop" in name or "instance" in name or segment == "instances":
        return ids["instance"]
    if "report" in name or segment == "reports":
        return ids["report"]
    if "patient" in name or segment == "patient":
        return ids["patient"]
    if "study" in name or segment in ("study", "studies"):
        return ids["study"]
    if name.startswith("frame"):
        return "1"
    if name == "tag":
        return "7FE00010"
    if name == "path":
        return f"studies/{ids['study']}"
    return ids["pk"]


def _fill(pattern: str, ids: dict[str, str]) -> str | None:
    def replace(match: re.Match) -> str:
        return _value(match.group(1), match.string[: match.start()], ids)

    text = ROUTE_PARAMETER.sub(replace, pattern)
    text = REGEX_GROUP.sub(replace, text)
    text = text.lstrip("^").removesuffix("$").removesuffix(r"\Z").replace("\\", "")
    # A regex that still has alternatives or repetitions cannot be turned into one URL.
    return None if re.search(r"[()\[\]*+?|{}]", text) else text


def app_urls(ids: dict[str, str]) -> list[str]:
    urls: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            filled = _fill(str(pattern.pattern), ids)
            if filled is None:
                continue
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + filled)
            elif isinstance(pattern, URLPattern):
                urls.append("/" + prefix + filled)

    walk(get_resolver().url_patterns, "")
    study, series, sop = ids["study"], ids["series"], ids["instance"]
    urls += [
        f"/token/report/{ids['report']}",
        "/token/zip",
        "/token/zip?dicomdir=1",
        "/dicomweb/studies",
        f"/dicomweb/studies?StudyInstanceUID={study}",
        "/dicomweb/studies?PatientName=ROE*",
        f"/dicomweb/series?StudyInstanceUID={study}",
        f"/dicomweb/instances?StudyInstanceUID={study}",
        f"/dicomweb/studies/{study}/series",
        f"/dicomweb/studies/{study}/metadata",
        f"/dicomweb/studies/{study}/series/{series}/metadata",
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}",
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1",
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010",
        f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
        "&contentType=application/dicom",
        f"/ohif/viewer?StudyInstanceUIDs={study}",
        "/weasis/launch/token",
    ]
    return sorted(set(urls))


def _body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def _leaks(body: bytes, ids: dict[str, str]) -> list[str]:
    secrets = [
        ids["study"],
        ids["series"],
        ids["instance"],
        "ROE^BORIS",
        "ROE, BORIS",
        "STUDY BRAVO",
        "PID-B",
        "bravo-report-body",
    ]
    return [s for s in secrets if s.encode() in body]


def test_a_token_for_a_never_serves_b(client, two_studies, link_of):
    a, b, b_report = two_studies
    assert client.get(link_of(a)).status_code == 200
    ids = _identifiers(b, b_report)
    urls = app_urls(ids)
    assert len(urls) > 30, "the URLconf was walked"
    leaked = {}
    for url in urls:
        for method in (client.get, client.head):
            response = method(url)
            found = _leaks(_body(response), ids)
            if found:
                leaked[f"{method.__name__.upper()} {url} -> {response.status_code}"] = found
    assert leaked == {}
    # The session still reaches A's own data, so the check above was made with a live grant.
    assert b"alpha-report-body" in _body(client.get(f"/token/report/{a.reports.get().pk}"))
    assert a.study_uid.encode() in _body(client.get("/dicomweb/studies"))


def test_the_leak_check_detects_b_when_it_is_shown(client, django_user_model, two_studies):
    """Control: the same check flags B's data where a logged-in physician may see it."""
    _a, b, b_report = two_studies
    client.force_login(django_user_model.objects.create_user(username="doc", password="x"))
    ids = _identifiers(b, b_report)
    assert _leaks(_body(client.get(f"/studies/study/{b.study_uid}/handout")), ids)


def test_report_of_another_study_is_404(client, two_studies, link_of):
    a, _b, b_report = two_studies
    client.get(link_of(a))
    assert client.get(f"/token/report/{b_report.pk}").status_code == 404


def test_without_a_visit_nothing_is_served(client, two_studies):
    a, _b, _report = two_studies
    for url in ("/token/zip", f"/token/report/{a.reports.get().pk}"):
        assert client.get(url).status_code == 404


def test_staff_link_pages_need_a_login(client, two_studies, link_of):
    a, _b, _report = two_studies
    client.get(link_of(a))
    for url in (
        f"/studies/study/{a.study_uid}/patient-link",
        f"/studies/study/{a.study_uid}/handout",
    ):
        response = client.get(url)
        assert response.status_code in (302, 404)
        assert b"token?" not in _body(response)


def test_opening_b_replaces_the_grant_for_a(client, two_studies, link_of, rf):
    a, b, _report = two_studies
    client.get(link_of(a))
    client.get(link_of(b))
    assert b"alpha-report-body" not in _body(client.get(f"/token/report/{a.reports.get().pk}"))


class TestGrantedStudyUid:
    """``granted_study_uid`` re-checks the link on every call (the DICOMweb scope relies on it)."""

    @pytest.fixture
    def request_of(self, client, two_studies, link_of, rf):
        a, _b, _report = two_studies
        client.get(link_of(a))

        def make():
            request = rf.get("/dicomweb/studies")
            request.session = client.session
            return request

        return make

    def test_the_visited_study(self, request_of, two_studies):
        assert granted_study_uid(request_of()) == two_studies[0].study_uid

    def test_none_without_a_visit(self, db, rf, client):
        request = rf.get("/")
        request.session = client.session
        assert granted_study_uid(request) is None

    def test_none_once_revoked(self, request_of, two_studies):
        services.token_revoke(study=two_studies[0])
        assert granted_study_uid(request_of()) is None

    def test_none_once_regenerated(self, request_of, two_studies):
        services.token_regenerate(study=two_studies[0])
        assert granted_study_uid(request_of()) is None

    def test_none_once_expired(self, request_of, clock):
        clock.set(datetime.datetime(2024, 2, 15, 0, 0, tzinfo=datetime.UTC))
        assert granted_study_uid(request_of()) is None

    def test_none_when_the_birth_date_question_is_switched_on(self, request_of):
        setup = ServerSetup.get()
        setup.patient_link_asks_birth_date = True
        setup.save()
        assert granted_study_uid(request_of()) is None

    def test_one_primary_key_read_per_row_per_check(self, request_of, django_assert_num_queries):
        request = request_of()
        # The session is loaded by the middleware before any view runs.
        request.session.keys()
        # The setup, the token, its study and the patient, each by primary key (no querysets).
        with django_assert_num_queries(4) as context:
            granted_study_uid(request)
        assert all(" WHERE " in q["sql"] and " JOIN " not in q["sql"] for q in context)
