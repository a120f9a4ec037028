"""``GET /token?TOKEN``: what a patient sees, what they can reach, and every wrong input."""

import datetime
import re

import pytest
from django.test import override_settings

from activity.models import Connection, Event
from tokens import services
from tokens.derivation import derive_token
from tokens.selectors import ADDRESS_FAILURE_LIMIT, BIRTH_DATE_FAILURE_LIMIT

JAN_20 = datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC)
WEASIS_DOWNLOAD = "https://weasis.org/en/getting-started/download-dicom-viewer/"


@pytest.fixture
def study(clock, setup, make_study):
    clock.set(JAN_20)
    return make_study(
        patient_name="MÜLLER^ANNA", study_date="20240115", StudyDescription="CT THORAX"
    )


def test_page_shows_the_study(client, study, link_of, add_report):
    report = add_report(study, title="Findings.pdf")
    response = client.get(link_of(study))
    assert response.status_code == 200
    text = response.text
    for expected in (
        "St. Mary&#x27;s Clinic",
        "Radiology",
        "MÜLLER, ANNA",
        "15 January 2024",
        "CT THORAX",
        "CT, MR",
        "Findings.pdf",
        f"/token/report/{report.pk}",
        "/token/zip",
        "/token/zip?dicomdir=1",
        f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}",
        "/weasis/launch/token",
        WEASIS_DOWNLOAD,
        "until the end of 14 February 2024",
    ):
        assert expected in text, expected


def test_page_links_to_nothing_else(client, study, link_of, add_report):
    """No other study, patient, search or admin page is reachable from the patient page."""
    add_report(study)
    text = client.get(link_of(study)).text
    targets = set(re.findall(r'(?:href|src|action)="([^"]*)"', text))
    allowed = re.compile(
        r"^(/static/.*"
        r"|/token/zip(\?dicomdir=1)?"
        r"|/token/report/\d+"
        rf"|/ohif/viewer\?StudyInstanceUIDs={re.escape(study.study_uid)}"
        r"|/weasis/launch/token"
        rf"|{re.escape(WEASIS_DOWNLOAD)})$"
    )
    assert targets, "the page has links"
    assert [t for t in targets if not allowed.match(t)] == []
    assert "Log in" not in text and "/admin/" not in text and "/studies/" not in text


def test_page_headers_keep_the_token_private(client, study, link_of):
    response = client.get(link_of(study))
    assert response["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in response.text
    assert "no-store" in response["Cache-Control"]
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert 'rel="noreferrer noopener"' in response.text


def test_dicom_values_are_escaped(client, clock, setup, make_study, link_of):
    clock.set(JAN_20)
    study = make_study(
        patient_name="<script>alert(1)</script>^X",
        StudyDescription='"><img src=x onerror=alert(2)>',
        study_date="20240115",
    )
    text = client.get(link_of(study)).text
    assert "<script>alert(1)" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_trailing_tracking_parameters_are_ignored(client, study, link_of):
    assert client.get(link_of(study) + "&fbclid=abc123").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "",
        "abc",
        "A" * 64,
        "A" * 63,
        "A" * 65,
        "A" * 63 + "-",
        "%00" * 64,
        "token=" + "A" * 64,
        "<script>" * 8,
    ],
)
def test_unknown_or_malformed_tokens_get_404(client, study, query):
    response = client.get(f"/token?{query}")
    assert response.status_code == 404
    assert "This link does not open anything" in response.text
    assert study.patient.name not in response.text and "MÜLLER" not in response.text


def test_expired_page_says_until_when_and_whom_to_contact(client, clock, study, link_of):
    path = link_of(study)
    clock.set(datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC))
    response = client.get(path)
    assert response.status_code == 410
    assert "worked until the end of <strong>14 February 2024</strong>" in response.text
    assert "contact St. Mary&#x27;s Clinic (Radiology)" in response.text
    assert "MÜLLER" not in response.text and "CT THORAX" not in response.text


def test_revoked_page_reveals_nothing_about_the_study(client, study, link_of):
    path = link_of(study)
    services.token_revoke(study=study)
    response = client.get(path)
    assert response.status_code == 410
    assert "MÜLLER" not in response.text and "CT THORAX" not in response.text


def test_visit_is_recorded_as_a_token_connection(client, study, link_of):
    client.get(link_of(study), REMOTE_ADDR="198.51.100.23", HTTP_USER_AGENT="PhoneBrowser/1.0")
    event = Event.objects.get(kind="token_page")
    assert event.study_uid == study.study_uid
    assert event.patient_name == "MÜLLER^ANNA"
    assert event.connection.kind == Connection.Kind.TOKEN
    assert event.connection.client_address == "198.51.100.23"


def test_the_session_id_changes_when_access_is_granted(client, study, link_of):
    client.get("/token?" + "B" * 64)
    before = client.session.session_key
    client.get(link_of(study))
    assert client.session.session_key != before


def test_wrong_tokens_from_one_address_are_throttled(client, clock, study, link_of):
    valid = link_of(study)
    for n in range(ADDRESS_FAILURE_LIMIT):
        assert client.get(f"/token?{'x' * 63}{n % 10}").status_code == 404
    # Blocked: even a valid token gets the same answer, so guessing learns nothing.
    blocked = client.get(valid)
    assert blocked.status_code == 429
    assert "Too many" in blocked.text
    assert int(blocked["Retry-After"]) > 0
    # Another address is not affected.
    assert client.get(valid, REMOTE_ADDR="192.0.2.99").status_code == 200
    clock.advance(minutes=16)
    assert client.get(valid).status_code == 200


def test_revoked_and_expired_links_do_not_count_as_wrong_guesses(client, clock, study, link_of):
    path = link_of(study)
    services.token_revoke(study=study)
    for _ in range(ADDRESS_FAILURE_LIMIT + 2):
        assert client.get(path).status_code == 410


def test_post_without_a_question_redirects_to_the_page(client, study, link_of):
    path = link_of(study)
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == path


class TestBirthDateCheck:
    @pytest.fixture(autouse=True)
    def _ask(self, setup):
        setup.patient_link_asks_birth_date = True
        setup.save()

    def test_page_asks_first_then_opens(self, client, study, link_of):
        path = link_of(study)
        form = client.get(path)
        assert form.status_code == 200
        assert "Confirm your date of birth" in form.text
        assert "MÜLLER" not in form.text and "CT THORAX" not in form.text
        assert client.get("/token/zip").status_code == 404
        response = client.post(path, {"birth_date": "1970-01-01"})
        assert response.status_code == 302 and response["Location"] == path
        page = client.get(path)
        assert "MÜLLER, ANNA" in page.text

    def test_wrong_answers_lock_the_link_for_a_while(self, client, clock, study, link_of):
        path = link_of(study)
        for _ in range(BIRTH_DATE_FAILURE_LIMIT - 1):
            wrong = client.post(path, {"birth_date": "1980-02-02"})
            assert wrong.status_code == 200
            assert "not the date of birth" in wrong.text
        locked = client.post(path, {"birth_date": "1980-02-02"})
        assert locked.status_code == 429
        # Locked: even the right answer, from any address, waits.
        assert client.post(path, {"birth_date": "1970-01-01"}).status_code == 429
        assert client.get(path, REMOTE_ADDR="192.0.2.50").status_code == 429
        clock.advance(minutes=16)
        assert client.post(path, {"birth_date": "1970-01-01"}).status_code == 302
        assert "MÜLLER, ANNA" in client.get(path).text

    def test_unreadable_answer_is_an_error_not_a_crash(self, client, study, link_of):
        response = client.post(link_of(study), {"birth_date": "yesterday"})
        assert response.status_code == 200
        assert "Enter a valid date" in response.text

    def test_patient_without_birth_date_is_not_asked(self, client, clock, make_study, link_of):
        clock.set(JAN_20)
        study = make_study(study_date="20240115", PatientBirthDate="")
        assert "DOE, JANE" in client.get(link_of(study)).text


def test_token_of_another_key_opens_nothing(client, study, link_of):
    """A token derived without the server's key (as from a leaked database) is unknown."""
    assert client.get(link_of(study)).status_code == 200
    with override_settings(TOKEN_KEY="someone-elses-key-" + "z" * 30):
        guess = derive_token(study_uid=study.study_uid, generation=1)
    assert client.get(f"/token?{guess}").status_code == 404


def test_report_downloads_as_a_file_and_is_recorded(client, study, link_of, add_report):
    report = add_report(study, title="Befund Müller", content=b"%PDF-1.4 body %%EOF")
    client.get(link_of(study))
    response = client.get(f"/token/report/{report.pk}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "Befund%20M%C3%BCller.pdf" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == b"%PDF-1.4 body %%EOF"
    event = Event.objects.get(kind="download")
    assert event.detail == {"what": "report", "title": "Befund Müller"}
    assert event.completed is True and event.bytes_sent == len(b"%PDF-1.4 body %%EOF")
