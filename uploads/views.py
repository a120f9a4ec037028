"""The upload page (only for users who can upload) and each upload's result page (its owner's).

The upload view is exempt from the CSRF middleware only so that it can choose how the request
body is read (streamed to temporary files, bounded) before anything reads it; the token is then
checked by ``csrf_protect`` before any file is taken in.
"""

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from activity.services import record
from uploads.handlers import BoundedUploadHandler
from uploads.models import UploadBatch
from uploads.services import UploadedFile, upload_batch_create

# Room for the multipart framing (boundaries, part headers, the file list) around the files.
FRAMING_BYTES = 4 * 1024 * 1024
RESULTS_PER_PAGE = 200
RECENT_BATCHES = 5


def _page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    recent = UploadBatch.objects.filter(user=request.user).only(
        "pk", "created_at", "files", "stored", "duplicates", "rejected", "skipped", "failed"
    )[:RECENT_BATCHES]
    context = {
        "max_bytes": settings.UPLOAD_MAX_BYTES,
        "max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
        "error": error,
        "recent": recent,
    }
    return render(request, "uploads/upload.html", context, status=status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@login_required
def upload(request: HttpRequest) -> HttpResponse:
    if not request.user.can_upload:
        # Checked before the body is read: nothing a refused user sends is even stored in temp.
        return render(request, "uploads/refused.html", status=403)
    if request.method == "GET":
        return _page(request)
    limit = settings.UPLOAD_MAX_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit + FRAMING_BYTES:
        return _too_large(request, limit)
    handler = BoundedUploadHandler(request, limit=limit)
    request.upload_handlers = [handler]
    try:
        request.FILES  # noqa: B018 - reads the body now, through the handler set above.
    except TooManyFilesSent:
        return _page(
            request,
            error=f"That is more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES:,} files in one "
            "upload. Upload the folder in parts, or as a zip. Nothing was stored.",
            status=400,
        )
    except (TooManyFieldsSent, RequestDataTooBig, MultiPartParserError):
        return _page(
            request,
            error="The upload could not be read (it was cut off or malformed). Nothing was "
            "stored; please try again.",
            status=400,
        )
    if handler.exceeded:
        return _too_large(request, limit)
    return _take_in(request)


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    return _page(
        request,
        error=f"The upload is larger than {filesizeformat(limit)}, the limit for one upload. "
        "Upload fewer files at a time. Nothing was stored.",
        status=413,
    )


@csrf_protect
def _take_in(request: HttpRequest) -> HttpResponse:
    files = request.FILES.getlist("files")
    if not files:
        return _page(request, error="Choose files or a folder to upload first.", status=400)
    names = _names(request.POST.get("paths", ""), [f.name for f in files])
    # Browsers send a folder's files in no useful order; by name, a CD's series stay together.
    chosen = sorted(zip(names, files, strict=True), key=lambda pair: pair[0])
    batch = upload_batch_create(
        user=request.user, files=[UploadedFile(name, upload) for name, upload in chosen]
    )
    record(
        request,
        "upload",
        detail={
            "batch": batch.pk,
            "files": batch.files,
            "stored": batch.stored,
            "duplicates": batch.duplicates,
            "rejected": batch.rejected,
            "skipped": batch.skipped,
            "failed": batch.failed,
        },
    )
    return redirect("uploads:result", pk=batch.pk)


def _names(paths: str, fallback: list[str]) -> list[str]:
    """The names to show: a folder's relative paths as the page's script sends them, if sane."""
    try:
        names = json.loads(paths) if paths else None
    except ValueError:
        names = None
    if (
        isinstance(names, list)
        and len(names) == len(fallback)
        and all(isinstance(name, str) and name for name in names)
    ):
        return [name[:512] for name in names]
    return fallback


@login_required
def result(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(UploadBatch, pk=pk, user=request.user)
    only_problems = request.GET.get("show") == "problems"
    rows = batch.results
    if only_problems:
        rows = [row for row in rows if row["status"] in ("rejected", "failed")]
    page = Paginator(rows, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    labels = dict(UploadBatch.Status.choices)
    for row in page.object_list:
        row["label"] = labels.get(row["status"], row["status"])
    return render(
        request,
        "uploads/result.html",
        {"batch": batch, "page": page, "only_problems": only_problems},
    )
