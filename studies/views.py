"""The physicians' pages: the query page, a patient's studies, a study's series, PDF reports.

Every view that touches a patient, study or series starts with a ``studies.access`` helper, and
reads through ``studies.selectors`` (a fixed number of queries per page, whatever it lists).
Zip downloads are ``studies.download_views``; viewers, patient links and uploads are other apps'.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST, require_safe

from activity import services as activity
from activity.models import Event
from studies import access, selectors, services, thumbnails
from studies.forms import QueryForm, ReportForm
from studies.models import Study, StudyReport

PATIENTS_PER_PAGE = 20
# The most recent matching studies shown under a patient; the patient's page lists them all.
STUDIES_PER_PATIENT = 5
INSTANCES_PER_PAGE = 100
# Room for the multipart envelope around the largest report accepted.
REPORT_REQUEST_MAX_BYTES = services.REPORT_MAX_BYTES + 64 * 1024
# What the report forms tell the browser (and the person) about the size limit.
REPORT_LIMITS = {
    "report_max_bytes": services.REPORT_MAX_BYTES,
    "report_max_mb": services.REPORT_MAX_BYTES // 1024**2,
}


@login_required
@require_safe
def query(request: HttpRequest) -> HttpResponse:
    submitted = bool(request.GET)
    form = QueryForm(request.GET if submitted else None)
    context: dict = {"form": form, "submitted": submitted, **REPORT_LIMITS}
    if submitted and form.is_valid():
        try:
            page, results = selectors.results_page(
                form.to_query(timezone.localdate()),
                page=request.GET.get("page") or 1,
                per_page=PATIENTS_PER_PAGE,
                studies_per_patient=STUDIES_PER_PATIENT,
            )
        except selectors.InvalidQuery as exc:
            form.add_error(None, str(exc))
        else:
            context.update(
                searched=True,
                page=page,
                results=results,
                dates_ignored=form.dates_ignored(),
                criteria_summary=form.summary(),
            )
            detail = form.criteria()
            if page.number > 1:
                detail["page"] = page.number
            activity.record(request, Event.Kind.SEARCH, detail=detail)
    return render(request, "studies/query.html", context)


@login_required
@require_safe
def patient(request: HttpRequest, pk: int) -> HttpResponse:
    patient = access.patient_for_request(request, pk)
    studies = list(selectors.studies_of_patient(patient))
    activity.record(
        request,
        Event.Kind.PATIENT_VIEWED,
        patient_name=patient.name,
        detail={"patient_id": patient.patient_id},
    )
    return render(
        request,
        "studies/patient.html",
        {
            "patient": patient,
            "studies": studies,
            "study_uids": [study.study_uid for study in studies],
            **REPORT_LIMITS,
        },
    )


@login_required
@require_safe
def study(request: HttpRequest, uid: str) -> HttpResponse:
    study = access.study_for_request(request, uid)
    series = list(selectors.series_of_study(study))
    reports = list(study.reports.order_by("uploaded_at", "pk"))
    activity.record(
        request,
        Event.Kind.STUDY_VIEWED,
        study_uid=study.study_uid,
        patient_name=study.patient.name,
    )
    return render(
        request,
        "studies/study.html",
        {
            "study": study,
            "patient": study.patient,
            "series_list": series,
            "reports": reports,
            **REPORT_LIMITS,
        },
    )


@login_required
@require_safe
def series(request: HttpRequest, uid: str) -> HttpResponse:
    series = access.series_for_request(request, uid)
    study = series.study
    page = Paginator(selectors.instances_of_series(series), INSTANCES_PER_PAGE).get_page(
        request.GET.get("page") or 1
    )
    activity.record(
        request,
        Event.Kind.SERIES_VIEWED,
        study_uid=study.study_uid,
        patient_name=study.patient.name,
        detail={"series_uid": series.series_uid},
    )
    return render(
        request,
        "studies/series.html",
        {"series": series, "study": study, "patient": study.patient, "page": page},
    )


@login_required
@require_safe
def series_thumbnail(request: HttpRequest, uid: str) -> HttpResponse:
    series = access.series_for_request(request, uid)
    path = thumbnails.series_thumbnail(series)
    if path is None:
        response = HttpResponse(thumbnails.PLACEHOLDER_SVG, content_type="image/svg+xml")
    else:
        response = FileResponse(open(path, "rb"), content_type="image/png")
    # Private: only logged-in users may see it, so no shared cache may keep it.
    patch_cache_control(response, private=True, max_age=3600)
    return response


def _back_to(request: HttpRequest, fallback: str) -> str:
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


# The CSRF check reads the whole body; an oversized one is refused before that, so nothing of it
# is written to disk. _attach then checks CSRF (Django's documented pattern for upload limits).
@csrf_exempt
@login_required
@require_POST
def report_attach(request: HttpRequest, uid: str) -> HttpResponse:
    study = access.study_for_request(request, uid)
    back = _back_to(request, reverse("studies:study", args=[study.study_uid]))
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > REPORT_REQUEST_MAX_BYTES:
        limit = services.REPORT_MAX_BYTES // 1024**2
        messages.error(request, f"The report was not attached: it is larger than {limit} MB.")
        return redirect(back)
    return _attach(request, study, back)


@csrf_protect
def _attach(request: HttpRequest, study: Study, back: str) -> HttpResponse:
    form = ReportForm(request.POST, request.FILES)
    if not form.is_valid():
        problem = form.errors["file"][0] if "file" in form.errors else "choose a PDF file."
        messages.error(request, f"The report was not attached: {problem}")
        return redirect(back)
    upload = form.cleaned_data["file"]
    try:
        report = services.study_report_attach(
            study=study, file=upload, filename=upload.name, user=request.user
        )
    except services.ReportRejected as exc:
        messages.error(request, f"The report was not attached: {exc}")
        return redirect(back)
    activity.record(
        request,
        Event.Kind.REPORT_ATTACHED,
        study_uid=study.study_uid,
        patient_name=study.patient.name,
        detail={"report": report.title, "bytes": report.size},
    )
    messages.success(request, f"The report “{report.title}” is attached to the study.")
    return redirect(back)


@login_required
@require_safe
def report_download(request: HttpRequest, uid: str, pk: int) -> HttpResponse:
    study = access.study_for_request(request, uid)
    report = get_object_or_404(StudyReport, study=study, pk=pk)
    filename = report.title if report.title.lower().endswith(".pdf") else f"{report.title}.pdf"
    return FileResponse(
        report.file.open("rb"),
        as_attachment=True,
        filename=filename,
        content_type="application/pdf",
    )
