"""Web connections and the events in them: the admin's live view and the audit trail.

Only ``activity.services.record`` (and the session hooks in this app) write these tables.
"""

from django.conf import settings
from django.db import models


class Connection(models.Model):
    """One login session of a web user, or one patient's visit with a token."""

    class Kind(models.TextChoices):
        USER = "user", "Web user"
        TOKEN = "token", "Patient link"
        ANONYMOUS = "anonymous", "Not logged in"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # The study a patient link opened (by UID: activity does not depend on the archive's tables).
    study_uid = models.CharField(max_length=64, blank=True)
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    client_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    started_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=32, blank=True)
    bytes_sent = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        who = self.user or self.study_uid or self.client_address
        return f"{self.get_kind_display()} {who}"


class Event(models.Model):
    """One action within a connection."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=32, db_index=True)
    study_uid = models.CharField(max_length=64, blank=True, db_index=True)
    patient_name = models.CharField(max_length=324, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    bytes_sent = models.PositiveBigIntegerField(default=0)
    # For downloads: None while running, then whether every byte reached the client.
    completed = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind}"
