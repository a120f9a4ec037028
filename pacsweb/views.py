from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from pacsweb.health import system_health


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "pacsweb/landing.html")


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """For monitors: the database answers, the storage folder is writable, disk space is left."""
    report = system_health()
    return JsonResponse(report, status=200 if report["ok"] else 503)
