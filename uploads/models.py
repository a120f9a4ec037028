"""A web upload: what one user sent in one go, and what became of each file."""

from django.conf import settings
from django.db import models


class UploadBatch(models.Model):
    """One upload, with the outcome of every file (and of every zip member and HL7 message).

    ``results`` is a list of ``{"name", "kind", "status", "reason"}``: ``kind`` is ``dicom``,
    ``hl7`` or ``other``; ``status`` is one of ``Status``. Only the owner sees it.
    """

    class Status(models.TextChoices):
        STORED = "stored", "Stored"
        DUPLICATE = "duplicate", "Already in the archive"
        REJECTED = "rejected", "Rejected"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Not stored"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_batches"
    )
    created_at = models.DateTimeField()
    files = models.PositiveIntegerField("files uploaded", default=0)
    stored = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list)
    # Outcomes counted above but not listed in ``results`` (see uploads.services.MAX_LISTED).
    unlisted = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "upload"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="upload_user_created")]

    def __str__(self) -> str:
        return f"upload {self.pk} by {self.user} at {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def problems(self) -> int:
        return self.rejected + self.failed
