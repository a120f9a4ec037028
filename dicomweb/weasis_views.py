"""Launching Weasis, the desktop viewer, for a patient, a study, a series or a token's study."""

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from activity.services import record
from dicomweb import weasis
from dicomweb.access import (
    Scope,
    json_error,
    scope_for,
    scope_from_weasis_credential,
    token_study_uid,
    weasis_credential,
)
from studies.models import Instance, Patient, Series, Study


def _launch(
    request: HttpRequest, studies: list[Study], *, series: Series | None = None
) -> HttpResponse:
    credential = weasis_credential(
        study_uids=[s.study_uid for s in studies],
        series_uids=[series.series_uid] if series is not None else None,
    )
    manifest_url = request.build_absolute_uri(
        reverse("dicomweb:weasis_manifest", args=[credential])
    )
    for study in studies[:20]:
        record(
            request,
            "viewer_opened",
            study_uid=study.study_uid,
            patient_name=study.patient.name,
            detail={"viewer": "weasis", **({"series": series.series_uid} if series else {})},
        )
    return render(
        request,
        "dicomweb/weasis_launch.html",
        {
            "launch_url": weasis.launch_url(manifest_url),
            "studies": studies,
            "series": series,
            "patient": studies[0].patient,
        },
    )


def _scope_or_login(request: HttpRequest) -> Scope | HttpResponse:
    scope = scope_for(request)
    return redirect_to_login(request.get_full_path()) if scope is None else scope


@require_GET
def launch_patient(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope_or_login(request)
    if isinstance(scope, HttpResponse):
        return scope
    patient = get_object_or_404(Patient, pk=pk)
    studies = list(
        scope.studies(patient.studies.select_related("patient")).order_by("-study_date", "-pk")
    )
    if not studies:
        raise Http404
    return _launch(request, studies)


@require_GET
def launch_study(request: HttpRequest, study_uid: str) -> HttpResponse:
    scope = _scope_or_login(request)
    if isinstance(scope, HttpResponse):
        return scope
    study = (
        scope.studies(Study.objects.select_related("patient")).filter(study_uid=study_uid).first()
    )
    if study is None:
        raise Http404
    return _launch(request, [study])


@require_GET
def launch_series(request: HttpRequest, series_uid: str) -> HttpResponse:
    scope = _scope_or_login(request)
    if isinstance(scope, HttpResponse):
        return scope
    series = get_object_or_404(
        Series.objects.select_related("study__patient"), series_uid=series_uid
    )
    if not scope.allows_study(series.study.study_uid):
        raise Http404
    return _launch(request, [series.study], series=series)


@require_GET
def launch_token(request: HttpRequest) -> HttpResponse:
    study_uid = token_study_uid(request)
    if not study_uid:
        raise Http404
    study = get_object_or_404(Study.objects.select_related("patient"), study_uid=study_uid)
    return _launch(request, [study])


@require_GET
def manifest(request: HttpRequest, credential: str) -> HttpResponse:
    scope = scope_from_weasis_credential(credential)
    if scope is None:
        return json_error(403, "This viewer link has expired; open the study again in pacsweb.")
    instances = Instance.objects.filter(series__study__study_uid__in=scope.study_uids)
    if scope.series_uids is not None:
        instances = instances.filter(series__series_uid__in=scope.series_uids)
    instances = (
        instances.select_related("series__study__patient")
        .defer("metadata", "frames")
        .order_by(
            "series__study__patient_id",
            "series__study__study_date",
            "series__study_id",
            "series__series_number",
            "series_id",
            "instance_number",
            "pk",
        )
    )
    body = weasis.manifest_xml(
        instances.iterator(chunk_size=1000),
        wado_url=request.build_absolute_uri(reverse("dicomweb:wado")),
        credential=credential,
    )
    response = HttpResponse(body, content_type="application/xml; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response
