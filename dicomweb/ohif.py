"""The OHIF viewer (npm package ``@ohif/app``, prebuilt): install, patch for /ohif/, configure.

The package is fetched over plain HTTP from the npm registry that this machine is configured
for (no Node.js), checked against the pinned ``dist.integrity`` hash, extracted with path checks,
and copied into a folder of its own where every absolute ``/`` path that the build baked in is
rewritten to ``/ohif/`` (the dist is built for the site root). Each rewrite's count is asserted,
so a different dist fails loudly instead of half working.
"""

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
# ``npm view @ohif/app@3.13.2 dist.integrity``: the registry's own hash of the tarball.
INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
TARBALL_NAME = f"app-{VERSION}.tgz"
MARKER = ".pacsweb-installed"
MOUNT = "/ohif/"
MAX_TARBALL_BYTES = 200 * 1024**2
MAX_EXTRACTED_BYTES = 1024**3
COMPRESSIBLE = {".js", ".css", ".html", ".json", ".jsonc", ".wasm", ".svg", ".xml", ".txt"}
DOWNLOAD_CHUNK = 1024 * 1024


class OhifInstallError(Exception):
    """The viewer could not be installed; the message says what to do."""


def install_root() -> Path:
    return Path(settings.OHIF_DIR)


def dist_dir(root: Path | None = None) -> Path:
    return (root or install_root()) / VERSION


def is_installed(root: Path | None = None) -> bool:
    return (dist_dir(root) / MARKER).is_file()


# ---------------------------------------------------------------------------------------------
# Registry


def _npmrc_registry() -> str:
    npmrc = Path.home() / ".npmrc"
    try:
        lines = npmrc.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() == "registry":
            return value.strip()
    return ""


def _npm_registry() -> str:
    npm = shutil.which("npm")
    if not npm:
        return ""
    try:
        done = subprocess.run(
            [npm, "config", "get", "registry"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    value = done.stdout.strip()
    return value if done.returncode == 0 and value.startswith(("http://", "https://")) else ""


def registry_base() -> str:
    """The npm registry's base URL, as this machine is configured (never a built-in address)."""
    base = (
        os.environ.get("NPM_CONFIG_REGISTRY")
        or os.environ.get("npm_config_registry")
        or _npmrc_registry()
        or _npm_registry()
    )
    if not base:
        raise OhifInstallError(
            "No npm registry is configured. Set NPM_CONFIG_REGISTRY to your npm registry's URL "
            "(for example: NPM_CONFIG_REGISTRY=https://<your npm registry>/ python manage.py "
            "install_ohif), or add a 'registry=' line to ~/.npmrc."
        )
    if not base.startswith(("http://", "https://")):
        raise OhifInstallError(f"The npm registry URL {base!r} is not an http(s) URL.")
    return base.rstrip("/") + "/"


def tarball_url(base: str) -> str:
    return f"{base}{PACKAGE}/-/{TARBALL_NAME}"


# ---------------------------------------------------------------------------------------------
# Download and verify


def _integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as fp:
        while chunk := fp.read(DOWNLOAD_CHUNK):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def fetch_tarball(folder: Path, progress: Callable[[str], None]) -> Path:
    """The verified tarball in ``folder``, downloaded unless a verified copy is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / TARBALL_NAME
    if final.is_file() and _integrity_of(final) == INTEGRITY:
        progress(f"Using the downloaded {final.name} (integrity verified).")
        return final
    url = tarball_url(registry_base())
    partial = folder / (TARBALL_NAME + ".part")
    progress(f"Downloading {PACKAGE}@{VERSION} from {url} ...")
    request = urllib.request.Request(url, headers={"User-Agent": "pacsweb install_ohif"})  # noqa: S310 - the configured registry's http(s) URL.
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(partial, "wb") as out:  # noqa: S310 - as above.
            total = int(response.headers.get("Content-Length") or 0)
            received, shown = 0, -1
            while chunk := response.read(DOWNLOAD_CHUNK):
                received += len(chunk)
                if received > MAX_TARBALL_BYTES:
                    raise OhifInstallError(
                        f"The download is larger than {MAX_TARBALL_BYTES} bytes."
                    )
                out.write(chunk)
                percent = received * 100 // total if total else -1
                if total and percent // 10 != shown:
                    shown = percent // 10
                    progress(f"  {received // 1024**2} of {total // 1024**2} MB")
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OhifInstallError(
            f"Could not download {url} ({exc}). Check the network, or set NPM_CONFIG_REGISTRY "
            "to a reachable npm registry."
        ) from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    found = _integrity_of(partial)
    if found != INTEGRITY:
        partial.unlink(missing_ok=True)
        raise OhifInstallError(
            f"The downloaded tarball's integrity {found} is not the pinned {INTEGRITY}; "
            "nothing was installed."
        )
    partial.rename(final)
    progress("Integrity verified.")
    return final


def extract_dist(tarball: Path, into: Path) -> Path:
    """Extract ``package/dist/`` into ``into/dist``, refusing links and paths that escape."""
    target = into / "dist"
    target.mkdir(parents=True)
    total = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            name = member.name
            if not name.startswith("package/dist/"):
                continue
            relative = name[len("package/dist/") :]
            parts = Path(relative).parts
            if not relative or name.startswith("/") or ".." in parts:
                raise OhifInstallError(f"Refusing an unsafe path in the tarball: {name!r}")
            if member.isdir():
                continue
            if not member.isfile():
                raise OhifInstallError(f"Refusing a non-regular file in the tarball: {name!r}")
            total += member.size
            if total > MAX_EXTRACTED_BYTES:
                raise OhifInstallError("The tarball expands to more than 1 GiB; refusing it.")
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            with source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, DOWNLOAD_CHUNK)
    return target


# ---------------------------------------------------------------------------------------------
# Patch for /ohif/


def _replace(path: Path, pattern: str, replacement: str, expected: int) -> int:
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text)
    if count != expected:
        raise OhifInstallError(
            f"{path.name}: expected {expected} occurrence(s) of {pattern!r}, found {count}; "
            f"this is not the {PACKAGE}@{VERSION} dist pacsweb knows how to patch."
        )
    path.write_text(new, encoding="utf-8")
    return count


def patch_dist(dist: Path, mount: str = MOUNT) -> int:
    """Rewrite the dist's absolute ``/`` paths to ``mount``; return the number of replacements."""
    count = 0
    public_path = re.escape('__webpack_require__.p = "/";')
    hits = [
        p
        for p in sorted(dist.rglob("*.js"))
        if '__webpack_require__.p = "/";' in p.read_text(encoding="utf-8", errors="replace")
    ]
    if len(hits) != 8:
        raise OhifInstallError(
            f"expected the webpack public path in 8 files, found it in {len(hits)}; "
            f"this is not the {PACKAGE}@{VERSION} dist pacsweb knows how to patch."
        )
    for path in hits:
        count += _replace(path, public_path, f'__webpack_require__.p = "{mount}";', 1)
    index = dist / "index.html"
    count += _replace(index, re.escape('window.PUBLIC_URL="/"'), f'window.PUBLIC_URL="{mount}"', 2)
    count += _replace(index, r'(href|src|content)="/(?!/)', rf'\1="{mount}', 33)
    count += _replace(dist / "app.bundle.css", r"url\(/(?!/)", f"url({mount}", 5)
    count += _replace(
        dist / "manifest.json", re.escape('"src": "/assets'), f'"src": "{mount}assets', 9
    )
    app_bundles = sorted(dist.glob("app.bundle.*.js"))
    if len(app_bundles) != 1:
        raise OhifInstallError(f"expected one app bundle, found {len(app_bundles)}")
    count += _replace(
        app_bundles[0],
        re.escape("'/dicom-microscopy-viewer/"),
        f"'{mount}dicom-microscopy-viewer/",
        1,
    )
    # pacsweb generates its own app-config.js; the package's points at a public demo server.
    (dist / "app-config.js").unlink(missing_ok=True)
    return count


def _gzip_one(path: Path) -> None:
    with open(path, "rb") as source, gzip.open(str(path) + ".gz", "wb", compresslevel=6) as out:
        shutil.copyfileobj(source, out, DOWNLOAD_CHUNK)


def precompress(dist: Path) -> int:
    """Write a ``.gz`` beside every compressible file over 1 KiB (the JS alone is 40 MB)."""
    files = [
        p
        for p in dist.rglob("*")
        if p.is_file() and p.suffix in COMPRESSIBLE and p.stat().st_size > 1024
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_gzip_one, files))
    return len(files)


def install(
    *,
    root: Path | None = None,
    tarball_folder: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> Path:
    """Install the patched viewer under ``root`` (default settings.OHIF_DIR); return its folder.

    Nothing replaces a working install until the new one is complete: the copy is prepared in a
    staging folder and renamed into place with its marker already written.
    """
    root = root or install_root()
    final = dist_dir(root)
    if is_installed(root) and not force:
        progress(f"OHIF {VERSION} is already installed in {final}.")
        return final
    root.mkdir(parents=True, exist_ok=True)
    tarball = fetch_tarball(tarball_folder or root, progress)
    staging = root / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        progress("Extracting ...")
        dist = extract_dist(tarball, staging)
        progress("Patching the viewer for /ohif/ ...")
        count = patch_dist(dist)
        progress(f"  {count} replacements.")
        progress("Compressing the bundles ...")
        progress(f"  {precompress(dist)} files compressed.")
        (dist / MARKER).write_text(json.dumps({"package": PACKAGE, "version": VERSION}))
        if final.exists():
            shutil.rmtree(final)
        dist.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"OHIF {VERSION} is installed in {final}; it is served at {MOUNT}.")
    return final


# ---------------------------------------------------------------------------------------------
# The generated app-config.js


def app_config(*, institution: str) -> str:
    """``window.config`` for OHIF on pacsweb's own DICOMweb, same origin, cookie auth."""
    name = institution or "pacsweb"
    config = {
        "routerBasename": MOUNT,
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "investigationalUseDialog": {"option": "never"},
        "customizationService": {"global": {"ohif.tours": {"$set": []}}},
        "defaultDataSourceName": "dicomweb",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "dicomweb",
                "configuration": {
                    "name": "pacsweb",
                    "friendlyName": name,
                    "qidoRoot": "/dicomweb",
                    "wadoRoot": "/dicomweb",
                    "wadoUriRoot": "/wado",
                    "qidoSupportsIncludeField": True,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsWildcard": True,
                    "supportsFuzzyMatching": False,
                    "staticWado": False,
                    "singlepart": "bulkdata,video,pdf",
                    "omitQuotationForMultipartRequest": True,
                    "bulkDataURI": {"enabled": True, "relativeResolution": "series"},
                },
            }
        ],
    }
    text = json.dumps(config, indent=2, ensure_ascii=True)
    # The institution name is admin-entered text inside a script: escape what could end it.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = json.dumps(name, ensure_ascii=True).replace("<", "\\u003c").replace(">", "\\u003e")
    return (
        f"window.config = {text};\n"
        # The header shows the institution's name in place of the OHIF logo.
        "window.config.whiteLabeling = {\n"
        "  createLogoComponentFn: function (React) {\n"
        "    return React.createElement('a', {href: '/', className: 'text-primary-light text-lg',"
        f" title: {title}}}, {title});\n"
        "  },\n"
        "};\n"
    )
