"""The admin's activity pages: live connections, today's closed ones, the report and one connection.

Each list is a model entry of its own in the admin index ("Active web connections", "Recent web
connections", "HTTP server report"; the first two are proxy models, so no extra tables), and its
changelist is replaced by a server-rendered page built from ``activity.selectors``. Nothing here
writes activity: there is no add, change or delete, and the only write is the lazy close of
connections whose session expired, which ``activity.services`` does before the lists are read.
One permission, ``activity.view_connection``, opens all of it; web users never reach the admin.
"""

import datetime
from dataclasses import dataclass

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from activity import selectors, services
from activity.browsers import browser_label
from activity.chart import hourly_charts
from activity.csv_export import csv_lines
from activity.forms import ExportForm, ReportFilterForm
from activity.models import ActiveConnection, Connection, Event, RecentConnection
from pacsweb.lib.person_names import display_person_name

PAGE_SIZE = 100
EVENTS_PAGE_SIZE = 500
# The live list asks for a fresh copy this often (milliseconds, read by activity.js).
LIVE_REFRESH_MS = 3000
ACTION_LABELS = dict(Event.Kind.choices)


@dataclass(frozen=True)
class Row:
    """One connection as the lists show it."""

    connection: Connection
    who: str
    detail_of_who: str
    browser: str
    last_action: str
    last_action_at: datetime.datetime | None
    download: Event | None
    download_patient: str
    event_count: int | None


def _who(connection: Connection) -> tuple[str, str]:
    """A connection's main label and its secondary line."""
    if connection.kind == Connection.Kind.USER:
        real_name = connection.user.real_name if connection.user else ""
        return connection.username or "(deleted user)", real_name
    if connection.kind == Connection.Kind.TOKEN:
        patient = display_person_name(connection.patient_name) or "Patient link"
        return patient, f"Patient link · {connection.study_uid}"
    return "Not logged in", ""


def _rows(
    connections: list[Connection], *, downloads: bool = False, counts: bool = False
) -> list[Row]:
    ids = [c.pk for c in connections]
    running = selectors.running_downloads(ids) if downloads else {}
    event_counts = selectors.event_counts(ids) if counts else {}
    rows = []
    for connection in connections:
        who, detail_of_who = _who(connection)
        last_action = getattr(connection, "last_action", None) or ""
        download = running.get(connection.pk)
        rows.append(
            Row(
                connection=connection,
                who=who,
                detail_of_who=detail_of_who,
                browser=browser_label(connection.user_agent),
                last_action=ACTION_LABELS.get(last_action, last_action),
                last_action_at=getattr(connection, "last_action_at", None),
                download=download,
                download_patient=display_person_name(download.patient_name) if download else "",
                event_count=event_counts.get(connection.pk, 0) if counts else None,
            )
        )
    return rows


def _detail_items(detail: object) -> list[tuple[str, object]]:
    """An event's details as (name, value) pairs; record() takes a dict, older rows may not be."""
    if isinstance(detail, dict):
        return sorted((str(key), value) for key, value in detail.items())
    return [("value", detail)] if detail else []


def _page(request: HttpRequest, queryset, size: int = PAGE_SIZE) -> Page:
    return Paginator(queryset, size).get_page(request.GET.get("page"))


class _ActivityAdmin(admin.ModelAdmin):
    """Read-only for everyone: the activity log is written by the web side only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.has_perm("activity.view_connection")

    def _check(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _context(self, request: HttpRequest, *, title: str, tab: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "tab": tab,
        }


@admin.register(Connection)
class ConnectionAdmin(_ActivityAdmin):
    """The HTTP server report (all connections, filtered), one connection's detail, the CSV."""

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [
            path("export.csv", export, name="activity_connection_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        self._check(request)
        services.connections_close_idle()
        form = ReportFilterForm(request.GET or None)
        if form.is_bound and not form.is_valid():
            queryset = Connection.objects.none()
        else:
            filters = form.filters() if form.is_bound else selectors.ReportFilters()
            queryset = selectors.connections_report(filters)
        page = _page(request, queryset)
        today = timezone.localdate()
        month_ago = today - datetime.timedelta(days=30)
        export_filters = [
            (name, value)
            for name, value in request.GET.items()
            if name in ReportFilterForm.base_fields
            and name not in ("date_from", "date_to")
            and value
        ]
        query = request.GET.copy()
        query.pop("page", None)
        context = {
            **self._context(request, title="HTTP server report", tab="report"),
            "form": form,
            "export_from": request.GET.get("date_from") or month_ago.isoformat(),
            "export_to": request.GET.get("date_to") or today.isoformat(),
            "export_filters": export_filters,
            "page": page,
            "rows": _rows(list(page.object_list), counts=True),
            "query": query.urlencode(),
        }
        return TemplateResponse(request, "admin/activity/report.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        self._check(request)
        connection = get_object_or_404(
            Connection.objects.select_related("user"), pk=object_id if object_id.isdigit() else 0
        )
        page = _page(request, selectors.connection_events(connection), EVENTS_PAGE_SIZE)
        events = [
            (event, display_person_name(event.patient_name), _detail_items(event.detail))
            for event in page.object_list
        ]
        who, detail_of_who = _who(connection)
        context = {
            **self._context(request, title=f"Connection {connection.pk}", tab="detail"),
            "connection": connection,
            "who": who,
            "detail_of_who": detail_of_who,
            "browser": browser_label(connection.user_agent),
            "active": connection.ended_at is None
            and connection.last_seen_at >= services.idle_cutoff(timezone.now()),
            "page": page,
            "events": events,
        }
        return TemplateResponse(request, "admin/activity/detail.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        self._check(request)
        form = ExportForm(request.GET)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, f"CSV export: {error}")
            report = reverse("admin:activity_connection_changelist")
            return redirect(f"{report}?{request.GET.urlencode()}")
        filters = form.filters()
        response = StreamingHttpResponse(
            csv_lines(selectors.events_for_export(filters)), content_type="text/csv; charset=utf-8"
        )
        name = f"activity-{filters.date_from:%Y%m%d}-{filters.date_to:%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


@admin.register(ActiveConnection)
class ActiveConnectionAdmin(_ActivityAdmin):
    """The live list of open connections, with the last day's chart."""

    def get_urls(self):
        fragment = self.admin_site.admin_view(self.fragment_view)
        return [
            path("live/", fragment, name="activity_activeconnection_live"),
            *super().get_urls(),
        ]

    def _live_context(self, request: HttpRequest) -> dict:
        services.connections_close_idle()
        page = _page(request, selectors.connections_active())
        return {"page": page, "rows": _rows(list(page.object_list), downloads=True)}

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        self._check(request)
        context = {
            **self._context(request, title="Active web connections", tab="active"),
            **self._live_context(request),
            "charts": hourly_charts(selectors.activity_per_hour()),
            "live_url": reverse("admin:activity_activeconnection_live"),
            "live_refresh_ms": LIVE_REFRESH_MS,
            "query": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/activity/active.html", context)

    def fragment_view(self, request: HttpRequest) -> HttpResponse:
        """The live list alone, which activity.js fetches every few seconds."""
        self._check(request)
        context = {**self._live_context(request), "query": request.GET.urlencode()}
        response = TemplateResponse(request, "admin/activity/_active_list.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        # One detail page for all three lists.
        return redirect("admin:activity_connection_change", object_id)


@admin.register(RecentConnection)
class RecentConnectionAdmin(_ActivityAdmin):
    """The connections that closed today."""

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        self._check(request)
        services.connections_close_idle()
        page = _page(request, selectors.connections_recent())
        context = {
            **self._context(request, title="Recent web connections", tab="recent"),
            "page": page,
            "rows": _rows(list(page.object_list)),
            "query": "",
        }
        return TemplateResponse(request, "admin/activity/recent.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        return redirect("admin:activity_connection_change", object_id)
