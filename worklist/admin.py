"""The worklist in the admin: orders with their state and source message, and the message log.

Orders and messages enter only through HL7 intake, so nothing here adds, edits or deletes
them. The one write is the "Cancel" action, which calls ``worklist.services.order_cancel``.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from pacsweb.lib.person_names import display_person_name
from worklist.models import HL7Message, Order
from worklist.services import OrderNotOpen, order_cancel


def _message_link(message: HL7Message | None) -> str:
    if message is None:
        return "-"
    url = reverse("admin:worklist_hl7message_change", args=[message.pk])
    return format_html('<a href="{}">{}</a>', url, str(message))


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = [
        "scheduled_date",
        "scheduled_time",
        "patient",
        "patient_id",
        "accession_number",
        "modality",
        "station_ae_title",
        "requested_procedure_description",
        "state",
        "source_message",
    ]
    list_filter = ["state", "modality", "station_ae_title"]
    list_select_related = ["message"]
    search_fields = [
        "accession_number",
        "patient_id",
        "patient_name",
        "placer_order_number",
        "filler_order_number",
        "study_uid",
    ]
    date_hierarchy = "scheduled_date"
    ordering = ["-scheduled_date", "-scheduled_time", "-id"]
    actions = ["cancel_orders"]
    fieldsets = [
        (None, {"fields": ["state", "state_reason", "arrived_at", "message", "last_message"]}),
        (
            "Patient",
            {
                "fields": [
                    "patient_name",
                    "patient_id",
                    "issuer_of_patient_id",
                    "patient_birth_date",
                    "patient_sex",
                ]
            },
        ),
        (
            "Order and requested procedure",
            {
                "fields": [
                    "accession_number",
                    "placer_order_number",
                    "filler_order_number",
                    "study_uid",
                    "requested_procedure_id",
                    "requested_procedure_description",
                    "requested_procedure_codes",
                    "requested_procedure_priority",
                    "requesting_physician",
                    "referring_physician",
                    "admission_id",
                ]
            },
        ),
        (
            "Scheduled procedure step",
            {
                "fields": [
                    "sps_id",
                    "modality",
                    "station_ae_title",
                    "station_name",
                    "sps_location",
                    "scheduled_date",
                    "scheduled_time",
                    "sps_description",
                    "protocol_codes",
                    "performing_physician",
                ]
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        return [f.name for f in Order._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    @admin.display(description="patient", ordering="patient_name")
    def patient(self, order: Order) -> str:
        return display_person_name(order.patient_name)

    @admin.display(description="HL7 message")
    def source_message(self, order: Order) -> str:
        return _message_link(order.message)

    @admin.action(description="Cancel the selected orders (the worklist stops offering them)")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        cancelled, refused = [], []
        for order_id in queryset.values_list("pk", flat=True):
            try:
                order = order_cancel(
                    order_id=order_id, reason=f"cancelled by {request.user} in the admin"
                )
            except OrderNotOpen as exc:
                refused.append(str(exc))
            else:
                cancelled.append(order.accession_number)
        if cancelled:
            self.message_user(
                request, f"Cancelled {len(cancelled)} order(s): {', '.join(cancelled)}."
            )
        for reason in refused:
            self.message_user(request, f"Not cancelled: {reason}.", messages.WARNING)


class OrderInline(admin.TabularInline):
    model = Order
    fk_name = "message"
    fields = ["accession_number", "patient_name", "modality", "scheduled_date", "state"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "orders created by this message"

    def has_add_permission(self, request: HttpRequest, obj: HL7Message | None = None) -> bool:
        return False


@admin.register(HL7Message)
class HL7MessageAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "source",
        "control_id",
        "message_type",
        "sending_application",
        "outcome",
        "short_reason",
    ]
    list_filter = ["outcome", "source", "message_type"]
    search_fields = ["control_id", "sending_application", "source_detail", "reason"]
    date_hierarchy = "received_at"
    inlines = [OrderInline]
    fields = [
        "received_at",
        "source",
        "source_detail",
        "position",
        "control_id",
        "message_type",
        "version",
        "sending_application",
        "sending_facility",
        "outcome",
        "reason",
        "message_text",
        "sha256",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: HL7Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: HL7Message | None = None) -> bool:
        return False

    @admin.display(description="reason")
    def short_reason(self, message: HL7Message) -> str:
        return message.reason if len(message.reason) <= 100 else message.reason[:99] + "…"

    @admin.display(description="message")
    def message_text(self, message: HL7Message) -> str:
        # One segment per line; format_html escapes the text, which came from the sender.
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>', message.raw.replace("\r", "\n")
        )
