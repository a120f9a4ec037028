"""The OHIF viewer: install (registry, integrity, safe extraction, patch counts) and serving."""

import gzip
import hashlib
import io
import re
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from activity.models import Event
from dicomweb import ohif
from tests.dicomweb.ohif_cache import installed_ohif

pytestmark = pytest.mark.django_db


@pytest.fixture
def ohif_dir(settings) -> Path:
    settings.OHIF_DIR = installed_ohif()
    return ohif.dist_dir()


@pytest.fixture
def no_registry(monkeypatch, tmp_path) -> None:
    for name in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """A local HTTP server standing in for a registry; returns the folder it serves."""
    folder = tmp_path / "registry"
    (folder / "@ohif" / "app" / "-").mkdir(parents=True)
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", f"http://127.0.0.1:{server.server_address[1]}")
    yield folder
    server.shutdown()
    server.server_close()


def test_registry_comes_from_the_environment_npmrc_or_npm(
    no_registry, monkeypatch, tmp_path
) -> None:
    with pytest.raises(ohif.OhifInstallError, match="NPM_CONFIG_REGISTRY"):
        ohif.registry_base()
    (tmp_path / ".npmrc").write_text("fund=false\nregistry = http://npm.internal:4873\n")
    assert ohif.registry_base() == "http://npm.internal:4873/"
    monkeypatch.setenv("npm_config_registry", "https://mirror.internal/npm")
    assert ohif.tarball_url(ohif.registry_base()) == (
        "https://mirror.internal/npm/@ohif/app/-/app-3.13.2.tgz"
    )
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "ftp://nope")
    with pytest.raises(ohif.OhifInstallError, match="not an http"):
        ohif.registry_base()


def test_a_tarball_with_the_wrong_hash_installs_nothing(fake_registry, tmp_path) -> None:
    (fake_registry / "@ohif" / "app" / "-" / ohif.TARBALL_NAME).write_bytes(b"not the viewer")
    with pytest.raises(ohif.OhifInstallError, match="integrity"):
        ohif.install(root=tmp_path / "ohif", progress=lambda _m: None)
    assert not ohif.is_installed(tmp_path / "ohif")
    assert list((tmp_path / "ohif").iterdir()) == []


def test_offline_start_up_warns_and_continues(settings, tmp_path, monkeypatch) -> None:
    settings.OHIF_DIR = tmp_path / "ohif"
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/")
    err = io.StringIO()
    call_command("install_ohif", "--if-missing", stderr=err, stdout=io.StringIO())
    assert "was not installed" in err.getvalue()
    with pytest.raises(CommandError, match="Could not download"):
        call_command("install_ohif", stdout=io.StringIO())


def _tarball(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "symlink", "message"),
    [
        ({"package/dist/../../escape.js": b"x"}, None, "unsafe path"),
        ({"package/dist/ok.js": b"x"}, "package/dist/link.js", "non-regular"),
    ],
)
def test_extraction_refuses_escaping_paths_and_links(tmp_path, members, symlink, message) -> None:
    tarball = _tarball(tmp_path / "evil.tgz", members, symlink)
    with pytest.raises(ohif.OhifInstallError, match=message):
        ohif.extract_dist(tarball, tmp_path / "out")
    assert not (tmp_path / "escape.js").exists()


def test_an_unknown_dist_fails_loudly(tmp_path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text('<script>window.PUBLIC_URL="/"</script>')
    (dist / "app.bundle.abc.js").write_text('__webpack_require__.p = "/";')
    with pytest.raises(ohif.OhifInstallError, match="8 files"):
        ohif.patch_dist(dist)


def test_the_installed_copy_is_patched_and_compressed(ohif_dir) -> None:
    index = (ohif_dir / "index.html").read_text()
    assert 'window.PUBLIC_URL="/"' not in index and index.count('window.PUBLIC_URL="/ohif/"') == 2
    assert not re.search(r'(href|src|content)="/(?!/|ohif/)', index)
    assert 'src="/ohif/app-config.js"' in index
    for path in ohif_dir.rglob("*.js"):
        assert '__webpack_require__.p = "/";' not in path.read_text(errors="replace"), path
    assert not (ohif_dir / "app-config.js").exists()
    bundle = next(ohif_dir.glob("app.bundle.*.js"))
    assert gzip.decompress(Path(str(bundle) + ".gz").read_bytes()) == bundle.read_bytes()


def test_ohif_redirects_to_its_folder(client) -> None:
    response = client.get("/ohif?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 301 and response["Location"] == "/ohif/?StudyInstanceUIDs=1.2.3"


def test_app_config_is_generated(client, unlimited_links) -> None:
    response = client.get("/ohif/app-config.js")
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    assert '"routerBasename": "/ohif/"' in text
    assert '"qidoRoot": "/dicomweb"' in text and '"wadoRoot": "/dicomweb"' in text
    assert '"option": "never"' in text
    # The institution name is escaped so that it cannot end the script or inject markup.
    assert "St. Mary's \\u003cClinic\\u003e" in text and "<Clinic>" not in text


def test_viewer_routes_serve_index_html(ohif_dir, physician, make_study) -> None:
    files = make_study(series=(("CT", 1),))
    uid = files.study.study_uid
    for path in (f"/ohif/viewer?StudyInstanceUIDs={uid}", "/ohif/", "/ohif/viewer/dicomweb"):
        response = physician.get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith("text/html")
        assert response["Cache-Control"] == "no-cache"
        assert b"".join(response.streaming_content) == (ohif_dir / "index.html").read_bytes()
    assert Event.objects.filter(kind="viewer_opened", study_uid=uid).count() == 1


def test_the_viewer_page_needs_a_session(ohif_dir, client) -> None:
    response = client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/ohif/app.bundle.css").status_code == 200  # The software itself is public.


def test_files_compressed_typed_and_cached(ohif_dir, client) -> None:
    bundle = next(ohif_dir.glob("app.bundle.*.js"))
    url = f"/ohif/{bundle.name}"
    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response["Content-Encoding"] == "gzip"
    assert response["Content-Type"] == "text/javascript"
    assert "Accept-Encoding" in response["Vary"]
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert gzip.decompress(b"".join(response.streaming_content)) == bundle.read_bytes()
    plain = client.get(url, HTTP_ACCEPT_ENCODING="gzip;q=0, identity")
    assert "Content-Encoding" not in plain
    digest = hashlib.sha256(b"".join(plain.streaming_content)).hexdigest()
    assert digest == hashlib.sha256(bundle.read_bytes()).hexdigest()
    wasm = next(ohif_dir.glob("*.wasm"))
    assert client.get(f"/ohif/{wasm.name}")["Content-Type"] == "application/wasm"
    assert client.get("/ohif/manifest.json")["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/ohif/missing-chunk.js",
        "/ohif/.pacsweb-installed",
        "/ohif/assets/nope.png",
        "/ohif/index.html.gz",
    ],
)
def test_missing_files_are_404_not_html(ohif_dir, client, path) -> None:
    assert client.get(path).status_code == 404


def test_not_installed_page_explains_the_command(settings, tmp_path, client) -> None:
    settings.OHIF_DIR = tmp_path / "none"
    response = client.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 503
    assert b"python manage.py install_ohif" in response.content


def test_the_install_never_names_a_registry_host() -> None:
    source = Path(ohif.__file__).read_text()
    assert not re.search(r"https?://[a-z]", source)
