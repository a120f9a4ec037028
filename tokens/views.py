"""The patient's pages (``/token?TOKEN`` and what it links to) and the staff's link helpers.

Patient pages need no login: the link itself is the credential, and a valid visit grants the
session that one study (``tokens.access``). They are never cached, never indexed and send no
``Referer`` anywhere, since the address bar holds the token.
"""

import datetime
from collections.abc import Callable
from functools import wraps

import segno
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_safe

from activity.services import record
from pacsweb.lib.client_address import client_address
from pacsweb.lib.person_names import display_person_name
from pacsweb.models import ServerSetup
from studies.access import study_for_request
from studies.download_views import study_zip
from studies.models import StudyReport
from tokens import services
from tokens.access import grant, granted_token_or_404, has_birth_date_check, needs_birth_date
from tokens.forms import BirthDateForm
from tokens.links import link_for_patients, link_from_request
from tokens.models import StudyToken
from tokens.selectors import (
    ADDRESS_FAILURE_LIMIT,
    BIRTH_DATE_FAILURE_LIMIT,
    FAILURE_WINDOW,
    blocked_until,
    token_lookup,
    token_window,
)
from tokens.window import LinkState

WEASIS_DOWNLOAD_URL = "https://weasis.org/en/getting-started/download-dicom-viewer/"


def patient_headers(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """No caching, no search engines, and no Referer: the page's address holds the token."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.setdefault("Referrer-Policy", "no-referrer")
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return never_cache(wrapper)


def _token_text(request: HttpRequest) -> str:
    # The token is the whole query string (``/token?TOKEN``). Mail and chat apps sometimes append
    # their own tracking parameters (``&fbclid=...``), which are ignored.
    return request.META.get("QUERY_STRING", "").split("&", 1)[0]


@require_http_methods(["GET", "POST"])
@patient_headers
def patient_page(request: HttpRequest) -> HttpResponse:
    address_key = f"address:{client_address(request)}"
    until = blocked_until(key=address_key, limit=ADDRESS_FAILURE_LIMIT)
    if until is not None:
        # Blocked addresses get this page whatever they send, so that a valid token found by
        # guessing could not be told from a wrong one.
        return _problem(request, "throttled", 429, until=until)
    setup = ServerSetup.get()
    visit = token_lookup(_token_text(request), setup=setup)
    if visit.token is None:
        services.failure_record(key=address_key, window=FAILURE_WINDOW)
        return _problem(request, "unknown", 404)
    if visit.state is LinkState.REVOKED:
        return _problem(request, "revoked", 410)
    if visit.state is LinkState.EXPIRED:
        return _problem(request, "expired", 410, last_day=visit.window.last_day)
    if visit.state is LinkState.NOT_YET_VALID:
        return _problem(request, "not_yet_valid", 403, first_day=visit.window.first_day)
    token = visit.token
    asks_birth_date = needs_birth_date(setup, token)
    if asks_birth_date and not has_birth_date_check(request, token):
        return _birth_date_check(request, token)
    if request.method == "POST":
        return redirect(request.get_full_path())
    grant(request, token, birth_date_checked=asks_birth_date)
    study = token.study
    record(request, "token_page", study_uid=study.study_uid, patient_name=study.patient.name)
    context = {
        "study": study,
        "patient_name": display_person_name(study.patient.name),
        "reports": study.reports.all(),
        "window": visit.window,
        "weasis_download_url": WEASIS_DOWNLOAD_URL,
    }
    return render(request, "tokens/patient_page.html", context)


def _birth_date_check(request: HttpRequest, token: StudyToken) -> HttpResponse:
    key = f"birth:{token.pk}"
    until = blocked_until(key=key, limit=BIRTH_DATE_FAILURE_LIMIT)
    if until is not None:
        return _problem(request, "birth_date_locked", 429, until=until)
    form = BirthDateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        if form.cleaned_data["birth_date"] == token.study.patient.birth_date:
            services.failures_clear(key=key)
            grant(request, token, birth_date_checked=True)
            return redirect(request.get_full_path())
        services.failure_record(key=key, window=FAILURE_WINDOW)
        until = blocked_until(key=key, limit=BIRTH_DATE_FAILURE_LIMIT)
        if until is not None:
            return _problem(request, "birth_date_locked", 429, until=until)
        form.add_error("birth_date", "This is not the date of birth we have. Please try again.")
    response = render(request, "tokens/birth_date.html", {"form": form})
    # The form posts to this page; under "no-referrer" browsers would send "Origin: null", which
    # the CSRF check refuses. "same-origin" still sends nothing to other sites.
    response["Referrer-Policy"] = "same-origin"
    return response


PROBLEMS = {
    "unknown": "This link does not open anything",
    "revoked": "This link has been withdrawn",
    "expired": "This link has expired",
    "not_yet_valid": "This link does not work yet",
    "throttled": "Too many attempts",
    "birth_date_locked": "Too many attempts",
}


def _problem(request: HttpRequest, kind: str, status: int, **context: object) -> HttpResponse:
    response = render(
        request,
        "tokens/problem.html",
        {"kind": kind, "title": PROBLEMS[kind], **context},
        status=status,
    )
    until = context.get("until")
    if isinstance(until, datetime.datetime):
        response["Retry-After"] = str(max(1, int((until - timezone.now()).total_seconds())))
    return response


@require_safe
@patient_headers
def patient_zip(request: HttpRequest) -> HttpResponseBase:
    """The study as a zip (``?dicomdir=1``: a DICOMDIR file-set), for the session's link only."""
    return study_zip(request, granted_token_or_404(request).study)


@require_GET
@patient_headers
def patient_report(request: HttpRequest, report_id: int) -> HttpResponse:
    token = granted_token_or_404(request)
    report = get_object_or_404(StudyReport, pk=report_id, study=token.study)
    try:
        fp = report.file.open("rb")
    except FileNotFoundError as exc:
        raise Http404 from exc
    study = token.study
    record(
        request,
        "download",
        study_uid=study.study_uid,
        patient_name=study.patient.name,
        detail={"what": "report", "title": report.title},
        bytes_sent=report.size,
        completed=True,
    )
    filename = report.title if report.title.lower().endswith(".pdf") else f"{report.title}.pdf"
    # Saved, not shown inline: an uploaded PDF is not rendered in this site's own origin.
    return FileResponse(fp, as_attachment=True, content_type="application/pdf", filename=filename)


@require_GET
@never_cache
def patient_link(request: HttpRequest, study_uid: str) -> JsonResponse:
    """The study's patient link for the physicians' "copy link" button, from the request's address."""
    study = study_for_request(request, study_uid)
    _row, token = services.token_ensure(study=study)
    return JsonResponse({"link": link_from_request(request, token)})


@require_GET
@never_cache
def handout(request: HttpRequest, study_uid: str) -> HttpResponse:
    """A printable page that a front desk hands to the patient: the link, its QR code, how to open it."""
    study = study_for_request(request, study_uid)
    setup = ServerSetup.get()
    row, token = services.token_ensure(study=study)
    link = link_for_patients(request, setup, token)
    window = token_window(row, setup)
    # segno writes only the path data of the code's modules; no text of the link appears in the
    # markup, so it is safe to insert as it is.
    qr_svg = mark_safe(  # noqa: S308
        segno.make(link, error="m").svg_inline(scale=4, border=2, omitsize=True, light="#fff")
    )
    context = {
        "study": study,
        "patient_name": display_person_name(study.patient.name),
        "link": link,
        "qr_svg": qr_svg,
        "window": window,
        "revoked": row.revoked_at is not None,
        "state": window.state_at(timezone.now()),
        "asks_birth_date": needs_birth_date(setup, row),
    }
    response = render(request, "tokens/handout.html", context)
    response["Referrer-Policy"] = "no-referrer"
    return response
