"""Access checks for the physicians' pages: return the object or raise 404.

Every view that touches a patient, study or series calls one of these first. Any active web user
may see the whole archive (the seed's model: remote physicians search everything); patients reach
their one study through ``tokens`` instead.
"""

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from studies.models import Patient, Series, Study


def _check_user(request: HttpRequest) -> None:
    user = request.user
    if not (user.is_authenticated and user.is_active):
        raise Http404


def patient_for_request(request: HttpRequest, pk: int) -> Patient:
    _check_user(request)
    return get_object_or_404(Patient, pk=pk)


def study_for_request(request: HttpRequest, study_uid: str) -> Study:
    _check_user(request)
    return get_object_or_404(Study.objects.select_related("patient"), study_uid=study_uid)


def series_for_request(request: HttpRequest, series_uid: str) -> Series:
    _check_user(request)
    return get_object_or_404(Series.objects.select_related("study__patient"), series_uid=series_uid)
