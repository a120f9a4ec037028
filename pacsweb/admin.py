"""The admin's "HTTP server setup": the one ServerSetup row, edited in place and never deleted."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from pacsweb.lib.public_address import public_address
from pacsweb.lib.tls_pair import TLSPairError, check_pair
from pacsweb.models import ServerSetup

# Read by gunicorn when it starts (deploy/gunicorn.conf.py), so they change nothing until then.
RESTART_FIELDS = ("web_port", "ssl_enabled", "ssl_certificate", "ssl_key")
RESTART_NOTE = (
    "The web port and the SSL settings (the switch, the certificate and the key) take effect "
    "when the web server restarts (systemctl restart pacsweb-web, or stop and start "
    "./pacsweb.sh run). Everything else applies at once."
)
# Stored under fixed names: an uploaded file's own name is never used as a path.
STORED_NAMES = {"ssl_certificate": "server.crt", "ssl_key": "server.key"}


def _file_bytes(value: object) -> bytes | None:
    """The content of a file field's cleaned value: a new upload, the stored file, or nothing."""
    if not value:
        return None
    try:
        value.open("rb")
        value.seek(0)
        data = value.read()
        value.seek(0)
        return data
    except OSError:
        return None


class ServerSetupForm(forms.ModelForm):
    class Meta:
        model = ServerSetup
        fields = [
            "institution",
            "department",
            "web_server_name",
            "web_port",
            "ssl_enabled",
            "ssl_certificate",
            "ssl_key",
            "access_period_days",
            "patient_link_asks_birth_date",
        ]

    def clean_web_port(self) -> int:
        port = self.cleaned_data["web_port"]
        if port > 65535:
            raise forms.ValidationError("A port is a number from 1 to 65535 (0 disables the web).")
        return port

    def clean(self) -> dict:
        data = super().clean()
        certificate = data.get("ssl_certificate")
        key = data.get("ssl_key")
        for field in STORED_NAMES:
            if isinstance(data.get(field), UploadedFile):
                data[field].name = STORED_NAMES[field]
        certificate_bytes, key_bytes = _file_bytes(certificate), _file_bytes(key)
        if certificate and certificate_bytes is None:
            self.add_error(
                "ssl_certificate", "The stored certificate cannot be read: upload it again."
            )
        if key and key_bytes is None:
            self.add_error("ssl_key", "The stored key cannot be read: upload it again.")
        if self.errors:
            return data
        if data.get("ssl_enabled") and not (certificate_bytes and key_bytes):
            self.add_error(
                "ssl_enabled", "SSL needs both a certificate (.crt) and its private key (.key)."
            )
        elif bool(certificate_bytes) != bool(key_bytes):
            missing = "ssl_key" if certificate_bytes else "ssl_certificate"
            self.add_error(missing, "Upload the certificate and its private key together.")
        elif certificate_bytes and key_bytes:
            try:
                self.certificate = check_pair(certificate_bytes, key_bytes)
            except TLSPairError as exc:
                self.add_error("ssl_key" if exc.part == "key" else "ssl_certificate", str(exc))
        return data


@admin.register(ServerSetup)
class ServerSetupAdmin(admin.ModelAdmin):
    form = ServerSetupForm
    readonly_fields = ["internet_ip_address"]
    fieldsets = [
        (
            "Shown on every page",
            {"fields": ["institution", "department"]},
        ),
        (
            "Web server",
            {
                "description": RESTART_NOTE,
                "fields": [
                    "web_server_name",
                    "internet_ip_address",
                    "web_port",
                    "ssl_enabled",
                    "ssl_certificate",
                    "ssl_key",
                ],
            },
        ),
        (
            "Patient links",
            {"fields": ["access_period_days", "patient_link_asks_birth_date"]},
        ),
    ]

    @admin.display(description="internet IP address")
    def internet_ip_address(self, obj: ServerSetup) -> str:
        detected = public_address()
        return detected or "not detected: set PACSWEB_PUBLIC_IP in the environment"

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        # There is exactly one setup: the list would only ever show that row.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        setup = ServerSetup.get()
        return redirect(reverse("admin:pacsweb_serversetup_change", args=[setup.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ServerSetup, form, change: bool) -> None:
        previous = ServerSetup.objects.filter(pk=obj.pk).first()
        obj.public_ip = public_address()
        super().save_model(request, obj, form, change)
        if previous is not None:
            for field in STORED_NAMES:
                old, new = getattr(previous, field), getattr(obj, field)
                # A replaced or cleared key must not linger on disk.
                if old.name and old.name != new.name:
                    old.storage.delete(old.name)
        certificate = getattr(form, "certificate", None)
        if certificate is not None and certificate.expired:
            messages.warning(
                request,
                f"The certificate ({certificate.subject}) expired on "
                f"{certificate.not_after:%Y-%m-%d}: browsers will refuse it.",
            )
        if any(field in form.changed_data for field in RESTART_FIELDS):
            messages.warning(
                request, "Restart the web server for the new port and SSL settings to apply."
            )
