"""Serving the patched OHIF viewer under /ohif/ and its generated configuration."""

import re
from pathlib import Path

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET

from activity.services import record
from dicomweb import ohif
from dicomweb.access import scope_for
from dicomweb.multipart import parse_accept
from pacsweb.models import ServerSetup

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
# Webpack names bundles, chunks, fonts and codecs by their content hash: safe to cache for good.
HASHED = re.compile(r"(^|[.])[0-9a-f]{16}[.][a-z0-9]+$")
SPA_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@require_GET
def ohif_root_redirect(request: HttpRequest) -> HttpResponse:
    query = request.META.get("QUERY_STRING", "")
    return HttpResponseRedirect("/ohif/" + (f"?{query}" if query else ""), status=301)


@require_GET
def app_config(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        ohif.app_config(institution=ServerSetup.get().institution),
        content_type="text/javascript; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    return response


def _accepts_gzip(request: HttpRequest) -> bool:
    # Accept-Encoding has the Accept header's syntax; ranges with q=0 are already dropped.
    ranges = parse_accept(request.headers.get("Accept-Encoding", ""))
    return any(r.type in ("gzip", "*") for r in ranges)


def _file_response(request: HttpRequest, path: Path, cache: str) -> FileResponse:
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    compressed = Path(str(path) + ".gz")
    if _accepts_gzip(request) and compressed.is_file():
        response = FileResponse(open(compressed, "rb"), content_type=content_type)  # noqa: SIM115 - FileResponse closes it.
        response["Content-Encoding"] = "gzip"
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)  # noqa: SIM115 - FileResponse closes it.
    if compressed.is_file():
        response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = cache
    return response


def _viewer_page(request: HttpRequest, dist: Path) -> HttpResponse:
    scope = scope_for(request)
    if scope is None:
        return redirect_to_login(request.get_full_path())
    uids = [
        uid
        for value in request.GET.getlist("StudyInstanceUIDs")
        for uid in value.replace("\\", ",").split(",")
        if uid.strip()
    ]
    for uid in uids[:20]:
        if scope.allows_study(uid.strip()):
            record(request, "viewer_opened", study_uid=uid.strip(), detail={"viewer": "ohif"})
    return _file_response(request, dist / "index.html", SPA_CACHE)


@require_GET
def ohif_file(request: HttpRequest, path: str) -> HttpResponse:
    """A file of the viewer, or its index.html for the viewer's own routes (no file extension)."""
    if not ohif.is_installed():
        return render(request, "dicomweb/ohif_missing.html", status=503)
    dist = ohif.dist_dir().resolve()
    parts = [part for part in path.split("/") if part]
    if not parts or "." not in parts[-1]:
        return _viewer_page(request, dist)
    if any(part.startswith(".") for part in parts):
        raise Http404
    target = dist.joinpath(*parts).resolve()
    if not target.is_relative_to(dist) or not target.is_file() or target.suffix == ".gz":
        # A missing chunk must fail as a 404, never come back as the HTML page.
        raise Http404
    cache = IMMUTABLE if HASHED.search(target.name) else SPA_CACHE
    return _file_response(request, target, cache)
