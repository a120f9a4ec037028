"""The admin's "HTTP server users" and "HTTP server setup" pages, driven through the admin itself."""

import datetime
import errno
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import User
from pacsweb.lib import public_address as public_address_module
from pacsweb.lib.public_address import outbound_address, public_address
from pacsweb.models import ServerSetup

SETUP_URL = "/admin/pacsweb/serversetup/1/change/"


@pytest.fixture
def admin_client(client, db):
    admin = User.objects.create_superuser(username="admin", password="Admin-Pass-1")
    client.force_login(admin)
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# Web users ------------------------------------------------------------------------------------


def add_user(admin_client, **fields: str):
    data = {
        "username": "drwho",
        "password1": "Tardis-Blue-63",
        "password2": "Tardis-Blue-63",
        "real_name": "Dr Who",
        "contact": "+44 20 0000 0000",
        "is_active": "on",
        **fields,
    }
    return admin_client.post("/admin/accounts/user/add/", data, follow=True)


def test_admin_adds_a_web_user_with_details(admin_client):
    response = add_user(admin_client, can_upload="on")
    assert response.status_code == 200
    user = User.objects.get(username="drwho")
    assert user.real_name == "Dr Who" and user.contact == "+44 20 0000 0000"
    assert user.is_active and user.can_upload and not user.is_staff
    assert user.check_password("Tardis-Blue-63")
    assert not any("weak" in m for m in messages_of(response))


def test_username_must_be_unique(admin_client):
    add_user(admin_client)
    response = add_user(admin_client, real_name="Another")
    assert b"A user with that username already exists." in response.content
    assert User.objects.filter(username="drwho").count() == 1


def test_password_shorter_than_eight_characters_is_refused(admin_client):
    response = add_user(admin_client, password1="Ab1!xyz", password2="Ab1!xyz")
    assert b"at least 8 characters" in response.content
    assert not User.objects.filter(username="drwho").exists()


@pytest.mark.parametrize(
    ("password", "missing"),
    [
        ("tardisblue", "no upper-case letter, no digit, no symbol"),
        ("TARDIS-BLUE", "no lower-case letter, no digit"),
        ("Tardisblue7", "no symbol"),
    ],
)
def test_weak_password_is_accepted_and_the_admin_is_told(admin_client, password, missing):
    response = add_user(admin_client, password1=password, password2=password)
    assert User.objects.get(username="drwho").check_password(password)
    assert any("weak" in m and missing in m for m in messages_of(response))


def test_admin_changes_username_and_flags(admin_client):
    add_user(admin_client)
    user = User.objects.get(username="drwho")
    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {
            "username": "drsmith",
            "real_name": "Dr Smith",
            "contact": "",
            "date_joined_0": "2024-01-01",
            "date_joined_1": "10:00:00",
            "initial-date_joined_0": "2024-01-01",
            "initial-date_joined_1": "10:00:00",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.username == "drsmith" and user.real_name == "Dr Smith"
    assert not user.is_active and not user.can_upload


def test_admin_changes_a_password_and_is_told_when_it_is_weak(admin_client):
    add_user(admin_client)
    user = User.objects.get(username="drwho")
    url = f"/admin/accounts/user/{user.pk}/password/"
    response = admin_client.post(url, {"password1": "new", "password2": "new"})
    assert b"at least 8 characters" in response.content
    response = admin_client.post(
        url, {"password1": "plainlowercase", "password2": "plainlowercase"}, follow=True
    )
    user.refresh_from_db()
    assert user.check_password("plainlowercase")
    assert any("weak" in m for m in messages_of(response))
    response = admin_client.post(
        url, {"password1": "Strong-Pass-99", "password2": "Strong-Pass-99"}, follow=True
    )
    user.refresh_from_db()
    assert user.check_password("Strong-Pass-99")
    assert not any("weak" in m for m in messages_of(response))


def test_admin_deletes_a_user(admin_client):
    add_user(admin_client)
    user = User.objects.get(username="drwho")
    response = admin_client.post(f"/admin/accounts/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()


def test_can_upload_help_text_leaves_reports_to_every_user():
    help_text = User._meta.get_field("can_upload").help_text
    assert help_text == "May upload DICOM files, zips and HL7 orders."


# Server setup ---------------------------------------------------------------------------------


def make_pair(common_name: str = "pacs.example.org", *, days: int = 365):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(tz=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate_pem, key_pem


def setup_form(**fields):
    data = {
        "institution": "St. Mary's",
        "department": "Radiology",
        "web_server_name": "pacs.example.org",
        "web_port": "8443",
        "access_period_days": "30",
    }
    data.update(fields)
    return data


def test_setup_list_goes_straight_to_the_one_row(admin_client):
    response = admin_client.get("/admin/pacsweb/serversetup/")
    assert response.status_code == 302
    assert response["Location"] == SETUP_URL
    assert ServerSetup.objects.count() == 1
    page = admin_client.get(SETUP_URL)
    assert b"restarts" in page.content
    assert b"Delete" not in page.content
    assert admin_client.get("/admin/pacsweb/serversetup/add/").status_code == 403


def test_setup_is_never_deleted(admin_client):
    ServerSetup.get()
    response = admin_client.post("/admin/pacsweb/serversetup/1/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert ServerSetup.objects.count() == 1


def test_setup_saves_and_records_the_detected_address(admin_client, settings):
    settings.PUBLIC_IP = "203.0.113.10"
    ServerSetup.get()
    response = admin_client.post(SETUP_URL, setup_form(), follow=True)
    assert response.status_code == 200
    setup = ServerSetup.get()
    assert setup.institution == "St. Mary's" and setup.web_port == 8443
    assert setup.public_ip == "203.0.113.10"
    assert any("Restart the web server" in m for m in messages_of(response))
    assert b"203.0.113.10" in admin_client.get(SETUP_URL).content


def test_setup_refuses_a_port_above_65535(admin_client):
    ServerSetup.get()
    response = admin_client.post(SETUP_URL, setup_form(web_port="70000"))
    assert b"A port is a number from 1 to 65535" in response.content
    assert ServerSetup.get().web_port != 70000


def test_setup_accepts_a_matching_certificate_and_key(admin_client, settings):
    certificate, key = make_pair()
    ServerSetup.get()
    response = admin_client.post(
        SETUP_URL,
        setup_form(
            ssl_enabled="on",
            ssl_certificate=SimpleUploadedFile("../../evil name.crt", certificate),
            ssl_key=SimpleUploadedFile("mine.key", key),
        ),
    )
    assert response.status_code == 302
    setup = ServerSetup.get()
    assert setup.ssl_enabled
    # Kept under names of our own in the private folder, never in a served one.
    assert setup.ssl_certificate.name.startswith("server")
    assert setup.ssl_certificate.name.endswith(".crt")
    assert setup.ssl_key.name.startswith("server") and setup.ssl_key.name.endswith(".key")
    stored_key = Path(setup.ssl_key.path)
    assert stored_key.parent == Path(settings.DATA_DIR) / "private" / "ssl"
    assert stored_key.read_bytes() == key
    assert stored_key.stat().st_mode & 0o077 == 0


def test_replacing_the_pair_removes_the_old_key(admin_client):
    setup = ServerSetup.get()
    folder = Path(setup.ssl_key.storage.location)
    before = set(folder.iterdir()) if folder.exists() else set()
    stored = []
    for _ in range(2):
        certificate, key = make_pair()
        admin_client.post(
            SETUP_URL,
            setup_form(
                ssl_enabled="on",
                ssl_certificate=SimpleUploadedFile("a.crt", certificate),
                ssl_key=SimpleUploadedFile("a.key", key),
            ),
        )
        setup = ServerSetup.get()
        stored.append({Path(setup.ssl_certificate.path), Path(setup.ssl_key.path)})
    assert stored[0].isdisjoint(stored[1])
    assert set(folder.iterdir()) - before == stored[1]
    assert Path(setup.ssl_key.path).read_bytes() == key


def test_setup_refuses_a_key_of_another_certificate(admin_client):
    certificate, _ = make_pair()
    _, other_key = make_pair()
    ServerSetup.get()
    response = admin_client.post(
        SETUP_URL,
        setup_form(
            ssl_enabled="on",
            ssl_certificate=SimpleUploadedFile("a.crt", certificate),
            ssl_key=SimpleUploadedFile("a.key", other_key),
        ),
    )
    assert response.status_code == 200
    assert b"The private key does not belong to the certificate" in response.content
    assert not ServerSetup.get().ssl_enabled


@pytest.mark.parametrize(
    ("certificate", "key", "message"),
    [
        (b"hello", None, b"The certificate file is not a certificate"),
        (
            None,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"is not a private key",
        ),
    ],
)
def test_setup_refuses_files_that_are_not_what_they_claim(admin_client, certificate, key, message):
    good_certificate, good_key = make_pair()
    ServerSetup.get()
    response = admin_client.post(
        SETUP_URL,
        setup_form(
            ssl_enabled="on",
            ssl_certificate=SimpleUploadedFile("a.crt", certificate or good_certificate),
            ssl_key=SimpleUploadedFile("a.key", key or good_key),
        ),
    )
    assert message in response.content
    assert not ServerSetup.get().ssl_certificate


def test_setup_refuses_a_key_with_a_passphrase(admin_client):
    certificate, _ = make_pair()
    key = ec.generate_private_key(ec.SECP256R1())
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    ServerSetup.get()
    response = admin_client.post(
        SETUP_URL,
        setup_form(
            ssl_certificate=SimpleUploadedFile("a.crt", certificate),
            ssl_key=SimpleUploadedFile("a.key", locked),
        ),
    )
    assert b"protected by a passphrase" in response.content


def test_ssl_on_needs_both_files(admin_client):
    ServerSetup.get()
    response = admin_client.post(SETUP_URL, setup_form(ssl_enabled="on"))
    assert b"SSL needs both a certificate" in response.content
    certificate, _ = make_pair()
    response = admin_client.post(
        SETUP_URL, setup_form(ssl_certificate=SimpleUploadedFile("a.crt", certificate))
    )
    assert b"Upload the certificate and its private key together." in response.content


def test_expired_certificate_is_saved_with_a_warning(admin_client):
    certificate, key = make_pair(days=-1)
    ServerSetup.get()
    response = admin_client.post(
        SETUP_URL,
        setup_form(
            ssl_enabled="on",
            ssl_certificate=SimpleUploadedFile("a.crt", certificate),
            ssl_key=SimpleUploadedFile("a.key", key),
        ),
        follow=True,
    )
    assert any("expired" in m for m in messages_of(response))


def test_public_address_prefers_the_configured_one(settings):
    settings.PUBLIC_IP = " 198.51.100.7 "
    assert public_address() == "198.51.100.7"


def test_detected_address_is_a_local_interface_address(settings):
    settings.PUBLIC_IP = ""
    detected = outbound_address()
    if detected:
        # Binding proves the address belongs to this machine; nothing is sent anywhere.
        family = socket.AF_INET6 if ":" in detected else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((detected, 0))
    assert public_address() == detected


class UnroutedSocket(socket.socket):
    """A machine without a route to the internet: connecting fails as the kernel would fail it."""

    def connect(self, address) -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


def test_no_route_means_no_address(monkeypatch, settings):
    settings.PUBLIC_IP = ""
    monkeypatch.setattr(public_address_module.socket, "socket", UnroutedSocket)
    assert outbound_address() == ""
    assert public_address() == ""
