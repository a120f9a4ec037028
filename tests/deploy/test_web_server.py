"""The web server as deployed: gunicorn started by run_web, its port and SSL from the server setup."""

import datetime
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.files.base import ContentFile

from pacsweb.models import ServerSetup
from tests.subprocesses import database_url, free_port

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)


def self_signed(name: str = "localhost") -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def setup(settings) -> ServerSetup:
    # The server runs in another process with the default private folder: use it here too.
    settings.PRIVATE_DIR = Path(settings.DATA_DIR) / "private"
    row = ServerSetup.get()
    row.web_port = free_port()
    row.save()
    return row


def start_web(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PACSWEB_BIND": "127.0.0.1",
        "PACSWEB_WEB_WORKERS": "1",
        "PACSWEB_WEB_THREADS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_web"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the web server did not open its port")


def stop(process: subprocess.Popen) -> None:
    # SIGINT is gunicorn's quick shutdown; SIGTERM would wait for idle keep-alive connections.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0].decode(errors="replace")
        raise AssertionError(f"the web server did not stop within 30 s:\n{output}") from None


def https_get(port: int, cafile: Path, path: str = "/health") -> int:
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def http_get(port: int, path: str = "/health") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def test_ssl_on_serves_https_only(setup: ServerSetup, tmp_path: Path) -> None:
    cert, key = self_signed()
    setup.ssl_enabled = True
    setup.web_server_name = "localhost"
    setup.ssl_certificate.save("server.crt", ContentFile(cert), save=False)
    setup.ssl_key.save("server.key", ContentFile(key), save=False)
    setup.save()
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(cert)
    process = start_web(setup.web_port)
    try:
        assert https_get(setup.web_port, cafile) == 200
        assert https_get(setup.web_port, cafile, "/login/") == 200
        with pytest.raises((http.client.HTTPException, OSError)):
            http_get(setup.web_port)
    finally:
        stop(process)


def test_ssl_off_serves_http_only(setup: ServerSetup, tmp_path: Path) -> None:
    cert, _ = self_signed()
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(cert)
    process = start_web(setup.web_port)
    try:
        assert http_get(setup.web_port) == 200
        with pytest.raises(ssl.SSLError):
            https_get(setup.web_port, cafile)
    finally:
        stop(process)


def test_port_zero_refuses_to_start(setup: ServerSetup) -> None:
    setup.web_port = 0
    setup.save()
    result = subprocess.run(
        [sys.executable, "manage.py", "run_web"],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "web module is disabled" in result.stderr


def test_ssl_without_certificate_refuses_to_start(setup: ServerSetup) -> None:
    setup.ssl_enabled = True
    setup.save()
    env = {**os.environ, "DATABASE_URL": database_url()}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no certificate and key" in result.stderr


def test_check_deploy_has_no_warnings_with_ssl() -> None:
    # The production settings, without what the test run adds to the environment (Playwright's
    # DJANGO_ALLOW_ASYNC_UNSAFE, which the check rightly refuses in a deployment).
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "pacsweb.settings",
        "PACSWEB_SSL": "1",
        "DEBUG": "0",
        "SECRET_KEY": "k" + os.urandom(40).hex(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
