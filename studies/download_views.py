"""The physicians' zip downloads of a patient, a study or a series (``?dicomdir=1``: like a CD).

Each view checks access first (``studies.access``), then hands the instances to
``studies.archive.zip_response``, which streams the zip with ranges and an ETag, and records the
download in the activity log when its body starts and when it ends or is cut off.
"""

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase
from django.views.decorators.http import require_safe

from activity import services as activity
from activity.models import Event
from pacsweb.lib.person_names import display_person_name
from studies import access, archive
from studies.models import Instance, Study


def _wants_dicomdir(request: HttpRequest) -> bool:
    return request.GET.get("dicomdir") == "1"


def recorded_zip(
    request: HttpRequest,
    *,
    instances: QuerySet[Instance],
    filename: str,
    level: str,
    study_uid: str,
    patient_name: str,
    detail: dict,
) -> HttpResponseBase:
    """The zip of ``instances``, recorded in the activity log as it starts, runs and ends."""
    dicomdir = _wants_dicomdir(request)
    plan = archive.plan_zip(instances, dicomdir=dicomdir)
    if not plan.entries:
        raise Http404("There is nothing to download here.")
    event: Event | None = None

    def start(served: archive.Served) -> None:
        nonlocal event
        event = activity.record(
            request,
            Event.Kind.DOWNLOAD,
            study_uid=study_uid,
            patient_name=patient_name,
            detail={
                **detail,
                "level": level,
                "dicomdir": dicomdir,
                "range": served.range_text,
                "bytes_total": served.length,
            },
        )

    def progress(bytes_sent: int) -> None:
        activity.event_progress(event, bytes_sent=bytes_sent)

    def finish(bytes_sent: int, completed: bool) -> None:
        activity.event_finish(event, bytes_sent=bytes_sent, completed=completed)

    if dicomdir:
        filename = f"{filename} DICOMDIR"
    return archive.zip_response(
        request,
        plan=plan,
        filename=filename,
        on_start=start,
        on_progress=progress,
        on_finish=finish,
    )


@require_safe
@login_required
def download_patient(request: HttpRequest, pk: int) -> HttpResponseBase:
    patient = access.patient_for_request(request, pk)
    return recorded_zip(
        request,
        instances=Instance.objects.filter(series__study__patient=patient),
        filename=archive.patient_label(patient.name, patient.patient_id),
        level="patient",
        study_uid="",
        patient_name=patient.name,
        detail={"patient_id": patient.patient_id},
    )


def study_zip(request: HttpRequest, study: Study) -> HttpResponseBase:
    """A study's zip for a caller that has checked access (physicians here, patients in tokens)."""
    patient = study.patient
    name = display_person_name(patient.name) or patient.patient_id
    return recorded_zip(
        request,
        instances=Instance.objects.filter(series__study=study),
        filename=f"{name} {archive.study_label(study.study_date, study.description)}",
        level="study",
        study_uid=study.study_uid,
        patient_name=patient.name,
        detail={},
    )


@require_safe
@login_required
def download_study(request: HttpRequest, uid: str) -> HttpResponseBase:
    return study_zip(request, access.study_for_request(request, uid))


@require_safe
@login_required
def download_series(request: HttpRequest, uid: str) -> HttpResponseBase:
    series = access.series_for_request(request, uid)
    study = series.study
    patient = study.patient
    name = display_person_name(patient.name) or patient.patient_id
    date = study.study_date.isoformat() if study.study_date else "No date"
    label = archive.series_label(series.series_number, series.modality, series.description)
    return recorded_zip(
        request,
        instances=Instance.objects.filter(series=series),
        filename=f"{name} {date} {label}",
        level="series",
        study_uid=study.study_uid,
        patient_name=patient.name,
        detail={"series_uid": series.series_uid},
    )
