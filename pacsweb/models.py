from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models


def private_storage() -> FileSystemStorage:
    """Certificates and keys live in the data folder's private part, never in a served folder."""
    return FileSystemStorage(location=settings.PRIVATE_DIR / "ssl", file_permissions_mode=0o600)


class ServerSetup(models.Model):
    """The one row of the server's setup (the seed's "HTTP Server Setup" dialog)."""

    class AccessPeriod(models.IntegerChoices):
        ONE_WEEK = 7, "1 week"
        ONE_MONTH = 30, "1 month"
        THREE_MONTHS = 91, "3 months"
        SIX_MONTHS = 182, "6 months"
        ONE_YEAR = 365, "1 year"
        UNLIMITED = 0, "Unlimited"

    institution = models.CharField(max_length=128, blank=True, default="")
    department = models.CharField(max_length=128, blank=True, default="")
    web_server_name = models.CharField(
        "web server name",
        max_length=253,
        blank=True,
        default="",
        help_text="DNS name used in patient links; blank uses the internet IP address.",
    )
    public_ip = models.CharField(
        "internet IP address", max_length=45, blank=True, default="", editable=False
    )
    web_port = models.PositiveIntegerField(
        default=8080, help_text="0 disables the web module. Changing it needs a restart."
    )
    ssl_enabled = models.BooleanField("SSL", default=False)
    ssl_certificate = models.FileField(
        "SSL certificate (.crt)", storage=private_storage, upload_to="", blank=True
    )
    ssl_key = models.FileField(
        "SSL private key (.key)", storage=private_storage, upload_to="", blank=True
    )
    access_period_days = models.IntegerField(
        "study accessibility period",
        choices=AccessPeriod.choices,
        default=AccessPeriod.ONE_MONTH,
        help_text="How long a patient link works, counted from the study date.",
    )
    patient_link_asks_birth_date = models.BooleanField(
        "patient link asks for the birth date",
        default=False,
        help_text="A second check before a patient link opens the study.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "HTTP server setup"

    def __str__(self) -> str:
        return "HTTP server setup"

    def web_server_settings(self) -> dict:
        """What the web server is started with: port, SSL, certificate and key paths, host."""
        ssl = self.ssl_enabled and bool(self.ssl_certificate) and bool(self.ssl_key)
        return {
            "port": self.web_port,
            "ssl": ssl,
            "ssl_requested": self.ssl_enabled,
            "certfile": self.ssl_certificate.path if ssl else "",
            "keyfile": self.ssl_key.path if ssl else "",
            "server_name": self.web_server_name,
        }

    @classmethod
    def get(cls) -> "ServerSetup":
        setup, _ = cls.objects.get_or_create(pk=1)
        return setup
