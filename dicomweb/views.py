"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS under /dicomweb) and WADO-URI (/wado) views.

Every view resolves its caller's scope first (``dicomweb.access``): an unauthenticated request
gets a 401 JSON answer, never a redirect; an object outside the scope is answered like a missing
one (404).
"""

import functools
import json
from collections.abc import Callable

from django.conf import settings
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from activity.services import record
from dicomweb import qido, stow, wado
from dicomweb.access import (
    Scope,
    frame_source_in_scope,
    instance_in_scope,
    json_error,
    not_found,
    scope_for,
    scope_from_weasis_credential,
    series_in_scope,
    study_in_scope,
    unauthenticated,
)
from dicomweb.multipart import MultipartError, new_boundary, parse_accept, parse_media_type
from studies import storage
from studies.models import Instance
from studies.selectors import instances_of_series

DICOM_JSON = "application/dicom+json"


def with_scope(view: Callable) -> Callable:
    """Resolve the caller's scope (or answer 401) and pass it to the view."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        scope = scope_for(request)
        if scope is None:
            return unauthenticated()
        return view(request, scope, *args, **kwargs)

    return wrapper


def _dicom_json(data, *, warnings: list[str] | None = None, status: int = 200) -> HttpResponse:
    response = HttpResponse(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        content_type=DICOM_JSON,
        status=status,
    )
    if warnings:
        response.headers["Warning"] = ", ".join(warnings)
    return response


def _accepts_json(request: HttpRequest) -> bool:
    ranges = parse_accept(request.headers.get("Accept", ""))
    return not ranges or any(
        r.type in (DICOM_JSON, "application/json", "application/*", "*/*") for r in ranges
    )


def _not_acceptable(message: str) -> JsonResponse:
    return json_error(406, message)


def _instance_url(request: HttpRequest) -> Callable[[str, str, str], str]:
    base = request.build_absolute_uri(reverse("dicomweb:studies"))

    def url(study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{base}/{study_uid}/series/{series_uid}/instances/{sop_uid}"

    return url


# ---------------------------------------------------------------------------------------------
# QIDO-RS


def _qido(
    request: HttpRequest, run: Callable[[qido.Request], list], *, level: str, levels
) -> HttpResponse:
    if not _accepts_json(request):
        return _not_acceptable(f"QIDO-RS answers {DICOM_JSON} only")
    try:
        req = qido.parse(request.GET, level=level, match_levels=levels)
        results = run(req)
    except qido.QueryError as exc:
        return json_error(400, str(exc))
    return _dicom_json(results, warnings=req.warnings)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@with_scope
def studies(request: HttpRequest, scope: Scope) -> HttpResponse:
    if request.method == "POST":
        return _stow(request, scope, study_uid=None)
    return _qido(
        request,
        lambda req: qido.search_studies(req, scope),
        level=qido.STUDY,
        levels=(qido.STUDY,),
    )


@require_GET
@with_scope
def all_series(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _qido(
        request,
        lambda req: qido.search_series(req, scope, study=None),
        level=qido.SERIES,
        levels=(qido.STUDY, qido.SERIES),
    )


@require_GET
@with_scope
def all_instances(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _qido(
        request,
        lambda req: qido.search_instances(req, scope, study=None, series=None),
        level=qido.INSTANCE,
        levels=(qido.STUDY, qido.SERIES, qido.INSTANCE),
    )


@require_GET
@with_scope
def study_series(request: HttpRequest, scope: Scope, study_uid: str) -> HttpResponse:
    study = study_in_scope(scope, study_uid)
    if study is None:
        return not_found()
    if scope.series_uids is not None:
        return not_found()
    return _qido(
        request,
        lambda req: qido.search_series(req, scope, study=study),
        level=qido.SERIES,
        levels=(qido.SERIES,),
    )


@require_GET
@with_scope
def study_instances(request: HttpRequest, scope: Scope, study_uid: str) -> HttpResponse:
    study = study_in_scope(scope, study_uid)
    if study is None:
        return not_found()
    return _qido(
        request,
        lambda req: qido.search_instances(req, scope, study=study, series=None),
        level=qido.INSTANCE,
        levels=(qido.SERIES, qido.INSTANCE),
    )


@require_GET
@with_scope
def series_instances(
    request: HttpRequest, scope: Scope, study_uid: str, series_uid: str
) -> HttpResponse:
    series = series_in_scope(scope, study_uid, series_uid)
    if series is None:
        return not_found()
    return _qido(
        request,
        lambda req: qido.search_instances(req, scope, study=series.study, series=series),
        level=qido.INSTANCE,
        levels=(qido.INSTANCE,),
    )


# ---------------------------------------------------------------------------------------------
# WADO-RS: instances


def _retrieve(request: HttpRequest, instances, *, study_uid: str, what: str) -> HttpResponse:
    ranges = parse_accept(request.headers.get("Accept", ""))
    rows = list(instances.values_list("path", "transfer_syntax_uid"))
    if not rows:
        return not_found()
    if not wado.dicom_ranges_acceptable(ranges, {syntax for _, syntax in rows}):
        return _not_acceptable(
            'instances are sent as multipart/related; type="application/dicom" in their stored '
            "transfer syntax (ask with transfer-syntax=*)"
        )
    record(
        request, "dicomweb", study_uid=study_uid, detail={"retrieve": what, "instances": len(rows)}
    )
    if len(rows) == 1 and what == "instance" and wado.wants_single_part(ranges):
        return FileResponse(storage.open_file(rows[0][0]), content_type=wado.DICOM)
    boundary = new_boundary()
    response = StreamingHttpResponse(
        wado.instances_multipart([path for path, _ in rows], boundary),
        content_type=f'multipart/related; type="{wado.DICOM}"; boundary={boundary}',
    )
    return response


@csrf_exempt
@require_http_methods(["GET", "POST"])
@with_scope
def study(request: HttpRequest, scope: Scope, study_uid: str) -> HttpResponse:
    if request.method == "POST":
        return _stow(request, scope, study_uid=study_uid)
    instances = _scoped_instances(scope, study_uid)
    if instances is None:
        return not_found()
    return _retrieve(request, instances, study_uid=study_uid, what="study")


def _scoped_instances(
    scope: Scope, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> QuerySet[Instance] | None:
    """The instances a WADO-RS path names, within the scope; None if it names nothing visible.

    A Weasis grant may cover some series of a study only, so a study's instances are filtered
    by the scope's series as well.
    """
    if sop_uid is not None:
        found = instance_in_scope(scope, study_uid, series_uid, sop_uid)
        return None if found is None else Instance.objects.filter(pk=found.pk)
    if series_uid is not None:
        series = series_in_scope(scope, study_uid, series_uid)
        return None if series is None else instances_of_series(series)
    study = study_in_scope(scope, study_uid)
    if study is None:
        return None
    instances = Instance.objects.filter(series__study=study)
    if scope.series_uids is not None:
        instances = instances.filter(series__series_uid__in=scope.series_uids)
    return instances.order_by("series__series_number", "series_id", "instance_number", "pk")


@require_GET
@with_scope
def series(request: HttpRequest, scope: Scope, study_uid: str, series_uid: str) -> HttpResponse:
    instances = _scoped_instances(scope, study_uid, series_uid)
    if instances is None:
        return not_found()
    return _retrieve(request, instances, study_uid=study_uid, what="series")


@require_GET
@with_scope
def instance(
    request: HttpRequest, scope: Scope, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    instances = _scoped_instances(scope, study_uid, series_uid, sop_uid)
    if instances is None:
        return not_found()
    return _retrieve(request, instances, study_uid=study_uid, what="instance")


# ---------------------------------------------------------------------------------------------
# WADO-RS: metadata


def _metadata(request: HttpRequest, instances, *, study_uid: str, what: str) -> HttpResponse:
    if not _accepts_json(request):
        return _not_acceptable(f"metadata is available as {DICOM_JSON} only")
    rows = instances.values_list(
        "series__study__study_uid", "series__series_uid", "sop_uid", "metadata"
    )
    texts = list(wado.metadata_array(rows.iterator(chunk_size=500), _instance_url(request)))
    if len(texts) == 2:
        return not_found()
    record(request, "dicomweb", study_uid=study_uid, detail={"metadata": what})
    return HttpResponse("".join(texts), content_type=DICOM_JSON)


@require_GET
@with_scope
def study_metadata(request: HttpRequest, scope: Scope, study_uid: str) -> HttpResponse:
    instances = _scoped_instances(scope, study_uid)
    if instances is None:
        return not_found()
    return _metadata(request, instances, study_uid=study_uid, what="study")


@require_GET
@with_scope
def series_metadata(
    request: HttpRequest, scope: Scope, study_uid: str, series_uid: str
) -> HttpResponse:
    instances = _scoped_instances(scope, study_uid, series_uid)
    if instances is None:
        return not_found()
    return _metadata(request, instances, study_uid=study_uid, what="series")


@require_GET
@with_scope
def instance_metadata(
    request: HttpRequest, scope: Scope, study_uid: str, series_uid: str, sop_uid: str
) -> HttpResponse:
    instances = _scoped_instances(scope, study_uid, series_uid, sop_uid)
    if instances is None:
        return not_found()
    return _metadata(request, instances, study_uid=study_uid, what="instance")


# ---------------------------------------------------------------------------------------------
# WADO-RS: frames and bulk data


@require_GET
@with_scope
def frames(
    request: HttpRequest,
    scope: Scope,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame_list: str,
) -> HttpResponse:
    found = frame_source_in_scope(scope, study_uid, series_uid, sop_uid, fields=wado.FRAME_FIELDS)
    if found is None:
        return not_found()
    try:
        numbers = wado.parse_frame_numbers(frame_list)
    except ValueError as exc:
        return json_error(400, str(exc))
    total = wado.frame_total(found)
    if total == 0:
        return not_found("This instance has no pixel data.")
    if max(numbers) > total:
        return not_found(f"This instance has {total} frame(s), numbered from 1.")
    try:
        plan = wado.plan_frames(
            parse_accept(request.headers.get("Accept", "")), found.transfer_syntax_uid
        )
    except wado.NotAcceptable as exc:
        return _not_acceptable(str(exc))
    boundary = new_boundary()
    body = wado.frames_multipart(wado.iter_frames(found, numbers, plan), boundary)
    content_type = f'multipart/related; type="{plan.content_type}"; boundary={boundary}'
    if len(numbers) == 1:
        # One frame (what viewers ask for): one buffer with a Content-Length, sent in one write.
        return HttpResponse(b"".join(body), content_type=content_type)
    return StreamingHttpResponse(body, content_type=content_type)


@require_GET
@with_scope
def bulk(
    request: HttpRequest,
    scope: Scope,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    tag: str,
) -> HttpResponse:
    found = instance_in_scope(scope, study_uid, series_uid, sop_uid)
    if found is None:
        return not_found()
    number = int(tag, 16)
    if number not in wado.bulk_metadata_tags(found):
        return not_found("This instance has no bulk data under that tag.")
    ranges = parse_accept(request.headers.get("Accept", ""))
    multipart = any(r.type == "multipart/related" for r in ranges)
    if (
        number == 0x7FE00010
        and found.frames is not None
        and (found.transfer_syntax_uid not in wado.NATIVE)
    ):
        # Encapsulated pixel data: one part per frame, in its stored transfer syntax.
        plan = wado.FramePlan(
            native=False, content_type=wado.frame_media_type(found.transfer_syntax_uid)
        )
        boundary = new_boundary()
        numbers = list(range(1, wado.frame_total(found) + 1))
        return StreamingHttpResponse(
            wado.frames_multipart(wado.iter_frames(found, numbers, plan), boundary),
            content_type=f'multipart/related; type="{plan.content_type}"; boundary={boundary}',
        )
    value = wado.bulk_value(found, number)
    if value is None:
        return not_found("This instance has no bulk data under that tag.")
    if not multipart:
        return HttpResponse(value, content_type=wado.OCTET)
    boundary = new_boundary()
    body = wado.frames_multipart(
        [(f"{wado.OCTET}; transfer-syntax=1.2.840.10008.1.2.1", value)], boundary
    )
    return HttpResponse(
        b"".join(body),
        content_type=f'multipart/related; type="{wado.OCTET}"; boundary={boundary}',
    )


# ---------------------------------------------------------------------------------------------
# STOW-RS


def _same_origin(request: HttpRequest) -> bool:
    """The CSRF defence for STOW (OHIF sends no CSRF token): any Origin must be this site's.

    Requests without an Origin header come from non-browser clients (dicomweb-client, storescu
    gateways); browsers always send it on cross-site POSTs, and the session cookie is SameSite.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {request.get_host(), *settings.CSRF_TRUSTED_ORIGINS}
    return origin != "null" and url_has_allowed_host_and_scheme(
        origin + "/", allowed_hosts=allowed, require_https=request.is_secure()
    )


def _stow(request: HttpRequest, scope: Scope, *, study_uid: str | None) -> HttpResponse:
    if not _same_origin(request):
        return json_error(403, "STOW-RS requests from another site are refused.")
    if not scope.can_upload:
        return json_error(403, "Your account may not upload studies.")
    content_type = parse_media_type(request.headers.get("Content-Type", ""))
    part_type = content_type.param("type", "application/dicom").lower()
    if content_type.type != "multipart/related" or part_type != "application/dicom":
        return json_error(
            415,
            'STOW-RS takes multipart/related; type="application/dicom" bodies (Part-10 files).',
        )
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.UPLOAD_MAX_BYTES:
        return json_error(413, f"The upload is larger than {settings.UPLOAD_MAX_BYTES} bytes.")
    try:
        result = stow.store_body(
            request,
            content_type.param("boundary"),
            username=scope.user.get_username(),
            study_uid=study_uid,
            max_bytes=settings.UPLOAD_MAX_BYTES,
            temp_dir=settings.FILE_UPLOAD_TEMP_DIR,
        )
    except MultipartError as exc:
        return json_error(400, f"The request body is not valid multipart/related: {exc}")
    studies_stored = sorted({uid for _, _, uid in result.stored})
    for uid in studies_stored:
        record(request, "dicomweb", study_uid=uid, detail={"stow": len(result.stored)})
    instance_url = _instance_url(request)
    series_of = dict(
        Instance.objects.filter(sop_uid__in=[sop for _, sop, _ in result.stored]).values_list(
            "sop_uid", "series__series_uid"
        )
    )
    body = stow.response_json(result, lambda st, sop: instance_url(st, series_of.get(sop, ""), sop))
    if study_uid is not None:
        body["00081190"] = {
            "vr": "UR",
            "Value": [request.build_absolute_uri(reverse("dicomweb:study", args=[study_uid]))],
        }
        body = dict(sorted(body.items()))
    # Each failure's reason in words, as Warning values (RFC 9111 5.5), quotes and lines removed.
    warnings = [
        '299 pacsweb "{}: {}"'.format(
            sop or "?", text.replace('"', "'").replace("\r", " ").replace("\n", " ")
        )
        for _, sop, _, text in result.failed[:20]
    ]
    return _dicom_json(body, status=result.http_status, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# WADO-URI


@require_GET
def wado_uri(request: HttpRequest) -> HttpResponse:
    """WADO-URI (PS3.18 9): what Weasis manifests and OHIF's ``wadouri`` mode fetch."""
    params = request.GET
    credential = params.get("credential")
    scope = scope_from_weasis_credential(credential) if credential else scope_for(request)
    if scope is None:
        if credential:
            return json_error(403, "This viewer link has expired; open the study again.")
        return unauthenticated()
    if params.get("requestType") != "WADO":
        return json_error(400, "requestType=WADO is required.")
    study_uid, series_uid, sop_uid = (
        params.get("studyUID", ""),
        params.get("seriesUID", ""),
        params.get("objectUID", ""),
    )
    if not (study_uid and series_uid and sop_uid):
        return json_error(400, "studyUID, seriesUID and objectUID are required.")
    found = instance_in_scope(scope, study_uid, series_uid, sop_uid)
    if found is None:
        return not_found()
    wanted = [t.strip().lower() for t in params.get("contentType", "image/jpeg").split(",")]
    syntax = params.get("transferSyntax", "*")
    for content_type in wanted:
        if content_type in (wado.DICOM, "application/*", "*/*"):
            if syntax not in ("*", "", found.transfer_syntax_uid):
                return _not_acceptable(
                    f"this instance is stored as {found.transfer_syntax_uid} and is not transcoded"
                )
            return FileResponse(storage.open_file(found.path), content_type=wado.DICOM)
        total = wado.frame_total(found)
        if content_type in ("image/jpeg", "image/*") and total:
            frame = params.get("frameNumber", "1")
            if not frame.isdigit() or not 1 <= int(frame) <= total:
                return json_error(400, f"frameNumber must be between 1 and {total}.")
            return HttpResponse(wado.render_jpeg(found, int(frame)), content_type="image/jpeg")
    return _not_acceptable("contentType may be application/dicom, or image/jpeg for images.")
