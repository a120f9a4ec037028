"""The admin's "Patient links": every study with its link's state, and the link actions.

Actions: "Copy study token" (a page with the selected studies' links to copy), revoke,
regenerate and extend. A study's page shows when and from where its link was used.
"""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from pacsweb.lib.person_names import display_person_name
from pacsweb.models import ServerSetup
from tokens import services
from tokens.forms import ExtendForm
from tokens.links import link_for_patients
from tokens.models import StudyLink, StudyToken
from tokens.selectors import link_usage, study_links
from tokens.window import AccessWindow, LinkState, access_window, link_state


def _row(study: StudyLink) -> StudyToken | None:
    # RelatedObjectDoesNotExist is an AttributeError: no row means no link was produced yet.
    return getattr(study, "patient_token", None)


def _window(study: StudyLink) -> AccessWindow:
    row = _row(study)
    return access_window(
        study_date=study.study_date,
        received_at=study.received_at,
        period_days=study.link_period_days,
        extended_through=row.extended_through if row else None,
    )


def _state(study: StudyLink) -> LinkState:
    row = _row(study)
    return link_state(window=_window(study), revoked=bool(row and row.revoked_at))


@admin.register(StudyLink)
class StudyLinkAdmin(admin.ModelAdmin):
    list_display = [
        "study_date",
        "patient_name",
        "description",
        "modality_names",
        "link_state",
        "link_works_through",
        "link_last_used",
    ]
    search_fields = ["study_uid", "accession_number", "patient__patient_id", "patient__name"]
    date_hierarchy = "study_date"
    ordering = ["-study_date", "-pk"]
    actions = ["copy_links", "revoke_links", "regenerate_links", "extend_links"]
    fields = [
        "patient_name",
        "study_date",
        "description",
        "modality_names",
        "accession_number",
        "study_uid",
        "link_state",
        "link_works_through",
        "link_pages",
        "link_used",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[StudyLink]:
        return study_links(ServerSetup.get())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StudyLink | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StudyLink | None = None) -> bool:
        # The list's actions need the change permission; a study's own page is read-only.
        return obj is None and super().has_change_permission(request)

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/link/",
                self.admin_site.admin_view(self.link_view),
                name="tokens_studylink_link",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="patient", ordering="patient__name")
    def patient_name(self, study: StudyLink) -> str:
        return f"{display_person_name(study.patient.name)} ({study.patient.patient_id})"

    @admin.display(description="modalities")
    def modality_names(self, study: StudyLink) -> str:
        return ", ".join(study.modality_list)

    @admin.display(description="link")
    def link_state(self, study: StudyLink) -> str:
        if _row(study) is None:
            return "not handed out yet"
        return str(_state(study))

    @admin.display(description="works through")
    def link_works_through(self, study: StudyLink) -> str:
        last_day = _window(study).last_day
        return last_day.strftime("%Y-%m-%d") if last_day else "no end date"

    @admin.display(description="last used by a patient", ordering="link_last_used")
    def link_last_used(self, study: StudyLink) -> str:
        used = study.link_last_used
        return timezone.localtime(used).strftime("%Y-%m-%d %H:%M") if used else "never"

    @admin.display(description="link pages")
    def link_pages(self, study: StudyLink) -> str:
        return format_html(
            '<a href="{}">Show the patient link</a> · <a href="{}">Printable handout</a>',
            reverse("admin:tokens_studylink_link", args=[study.pk]),
            reverse("tokens:handout", args=[study.study_uid]),
        )

    @admin.display(description="used by patients (most recent first)")
    def link_used(self, study: StudyLink) -> str:
        events = list(link_usage(study.study_uid))
        if not events:
            return "never"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(event.at).strftime("%Y-%m-%d %H:%M:%S"),
                    event.get_kind_display(),
                    event.connection.client_address,
                    event.connection.user_agent,
                )
                for event in events
            ),
        )
        return format_html(
            "<table><thead><tr><th>when</th><th>what</th><th>from</th><th>browser</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    def link_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One study's link, from its page (the same page as the "Copy study token" action)."""
        study = self.get_object(request, object_id)
        if study is None or not self.has_view_permission(request, study):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return self._links_page(request, [study])

    @admin.action(description="Copy study token (show the links)", permissions=["view"])
    def copy_links(self, request: HttpRequest, queryset: QuerySet[StudyLink]) -> HttpResponse:
        return self._links_page(request, list(queryset))

    def _links_page(self, request: HttpRequest, studies: list[StudyLink]) -> HttpResponse:
        setup = ServerSetup.get()
        entries = []
        for study in studies:
            row, token = services.token_ensure(study=study)
            study.patient_token = row
            entries.append(
                {
                    "study": study,
                    "patient_name": display_person_name(study.patient.name),
                    "link": link_for_patients(request, setup, token),
                    "state": _state(study),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Patient links",
            "entries": entries,
            "all_links": "\n".join(entry["link"] for entry in entries),
        }
        response = TemplateResponse(request, "tokens/admin/links.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the links (they stop working)", permissions=["change"])
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[StudyLink]):
        if "confirm" not in request.POST:
            return self._confirm_page(request, queryset, "revoke_links", "Revoke these links?")
        for study in queryset:
            services.token_revoke(study=study)
        self.message_user(request, f"Revoked the links of {queryset.count()} studies.")
        return None

    @admin.action(
        description="Regenerate the links (old links stop working)", permissions=["change"]
    )
    def regenerate_links(self, request: HttpRequest, queryset: QuerySet[StudyLink]):
        if "confirm" not in request.POST:
            return self._confirm_page(
                request, queryset, "regenerate_links", "Give these studies new links?"
            )
        for study in queryset:
            services.token_regenerate(study=study)
        self.message_user(
            request,
            f"Gave {queryset.count()} studies new links; their old links no longer work.",
        )
        return None

    @admin.action(description="Extend the links", permissions=["change"])
    def extend_links(self, request: HttpRequest, queryset: QuerySet[StudyLink]):
        form = ExtendForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            through = form.cleaned_data["through"]
            for study in queryset:
                services.token_extend(study=study, through=through)
            self.message_user(
                request,
                f"The links of {queryset.count()} studies work at least until the end of "
                f"{through:%Y-%m-%d}.",
            )
            return None
        if form.is_bound:
            self.message_user(request, "Choose a valid day to extend to.", messages.ERROR)
        return self._confirm_page(
            request, queryset, "extend_links", "Extend these links", form=form
        )

    def _confirm_page(
        self,
        request: HttpRequest,
        queryset: QuerySet[StudyLink],
        action: str,
        title: str,
        form: ExtendForm | None = None,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "action": action,
            "studies": [
                {"study": s, "patient_name": display_person_name(s.patient.name)} for s in queryset
            ],
            "form": form,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "tokens/admin/confirm.html", context)
