"""The physicians' "copy link" endpoint and the printable handout."""

import datetime

import pytest

from tokens import services


@pytest.fixture
def physician(django_user_model):
    return django_user_model.objects.create_user(username="drhouse", password="x")


@pytest.fixture
def study(clock, setup, make_study):
    clock.set(datetime.datetime(2024, 1, 20, 12, tzinfo=datetime.UTC))
    return make_study(patient_name="MÜLLER^ANNA", study_date="20240115", StudyDescription="CT HEAD")


def test_copy_link_gives_the_link_on_the_requests_address(client, physician, study):
    client.force_login(physician)
    response = client.get(
        f"/studies/study/{study.study_uid}/patient-link", HTTP_HOST="10.1.2.3:8000"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    _row, token = services.token_ensure(study=study)
    assert response.json() == {"link": f"http://10.1.2.3:8000/token?{token}"}


def test_copied_link_opens_the_study(client, physician, study):
    client.force_login(physician)
    link = client.get(f"/studies/study/{study.study_uid}/patient-link").json()["link"]
    client.logout()
    assert "MÜLLER, ANNA" in client.get(link.removeprefix("http://testserver")).text


def test_copy_link_of_an_unknown_study_is_404(client, physician, db):
    client.force_login(physician)
    assert client.get("/studies/study/1.2.3.999/patient-link").status_code == 404


def test_copy_link_needs_a_login(client, study):
    response = client.get(f"/studies/study/{study.study_uid}/patient-link")
    assert response.status_code == 404
    assert b"token" not in response.content


def test_copy_link_refuses_a_disabled_user(client, physician, study):
    physician.is_active = False
    physician.save()
    client.force_login(physician)
    assert client.get(f"/studies/study/{study.study_uid}/patient-link").status_code in (302, 404)


def test_handout_has_the_link_a_qr_code_and_how_to_open_it(client, physician, study):
    client.force_login(physician)
    response = client.get(f"/studies/study/{study.study_uid}/handout")
    assert response.status_code == 200
    _row, token = services.token_ensure(study=study)
    text = response.text
    # The setup's public address, not the front desk's local one.
    assert f"https://pacs.example.org:8443/token?{token}" in text
    for expected in (
        "St. Mary&#x27;s Clinic",
        "Radiology",
        "MÜLLER, ANNA",
        "15 January 2024",
        "CT HEAD",
        "until the end of 14 February 2024",
        "How to open it",
        "Scan the QR code",
    ):
        assert expected in text, expected
    assert '<svg viewBox="' in text and 'class="segno"' in text
    assert response["Referrer-Policy"] == "no-referrer"


def test_handout_qr_code_encodes_the_link(client, physician, study):
    """The QR code holds exactly the printed link (decoded by re-encoding and comparing)."""
    import segno

    client.force_login(physician)
    text = client.get(f"/studies/study/{study.study_uid}/handout").text
    _row, token = services.token_ensure(study=study)
    expected = segno.make(f"https://pacs.example.org:8443/token?{token}", error="m").svg_inline(
        scale=4, border=2, omitsize=True, light="#fff"
    )
    assert expected in text


def test_handout_of_a_revoked_link_warns(client, physician, study):
    services.token_revoke(study=study)
    client.force_login(physician)
    assert "has been withdrawn" in client.get(f"/studies/study/{study.study_uid}/handout").text


def test_handout_escapes_dicom_values(client, physician, clock, setup, make_study):
    study = make_study(patient_name="<b>X</b>^Y", StudyDescription="<i>desc</i>")
    client.force_login(physician)
    text = client.get(f"/studies/study/{study.study_uid}/handout").text
    assert "<b>X</b>" not in text and "<i>desc</i>" not in text
    assert "&lt;b&gt;X&lt;/b&gt;" in text


def test_handout_needs_a_login(client, study):
    response = client.get(f"/studies/study/{study.study_uid}/handout")
    assert response.status_code == 404
