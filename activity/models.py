"""Web connections and the events in them: the admin's live view and the audit trail.

Only ``activity.services`` writes these tables (``record`` for events, plus the connection's start,
touch and end); the admin only reads them.
"""

from django.conf import settings
from django.db import models


class Connection(models.Model):
    """One login session of a web user, or one patient's visit with a token."""

    class Kind(models.TextChoices):
        USER = "user", "Web user"
        TOKEN = "token", "Patient link"
        ANONYMOUS = "anonymous", "Not logged in"

    class EndReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        IDLE = "idle", "Idle timeout"
        NEW_LOGIN = "new_login", "Replaced by a new login"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # Kept as text as well, so that the audit trail still names the user after the account is gone.
    username = models.CharField(max_length=150, blank=True, db_index=True)
    # The study a patient link opened (by UID: activity does not depend on the archive's tables).
    study_uid = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    client_address = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    started_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=32, blank=True, choices=EndReason.choices)
    bytes_sent = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "web connection"
        verbose_name_plural = "HTTP server report"

    def __str__(self) -> str:
        who = self.username or self.patient_name or self.study_uid or self.client_address
        return f"{self.get_kind_display()} {who}"


class ActiveConnection(Connection):
    """The admin's live list of open connections (a second admin entry, not a second table)."""

    class Meta:
        proxy = True
        verbose_name = "active web connection"
        verbose_name_plural = "active web connections"


class RecentConnection(Connection):
    """The admin's list of the connections that closed today (a second admin entry)."""

    class Meta:
        proxy = True
        verbose_name = "recent web connection"
        verbose_name_plural = "recent web connections"


class Event(models.Model):
    """One action within a connection."""

    class Kind(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Failed login"
        LOGOUT = "logout", "Logged out"
        SEARCH = "search", "Search"
        PATIENT_VIEWED = "patient_viewed", "Patient viewed"
        STUDY_VIEWED = "study_viewed", "Study viewed"
        SERIES_VIEWED = "series_viewed", "Series viewed"
        DOWNLOAD = "download", "Download"
        UPLOAD = "upload", "Upload"
        REPORT_ATTACHED = "report_attached", "Report attached"
        TOKEN_PAGE = "token_page", "Patient link opened"
        VIEWER_OPENED = "viewer_opened", "Viewer opened"
        DICOMWEB = "dicomweb", "DICOMweb access"

    # Indexed by (connection, at) below, which also serves lookups by connection alone.
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    at = models.DateTimeField(db_index=True)
    # Not indexed on its own: a handful of values, always combined with a connection or a time.
    kind = models.CharField(max_length=32, choices=Kind.choices)
    study_uid = models.CharField(max_length=64, blank=True, db_index=True)
    patient_name = models.CharField(max_length=324, blank=True)
    # The patient name folded for case- and accent-insensitive search (pacsweb.lib.person_names).
    patient_search = models.CharField(max_length=324, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    bytes_sent = models.PositiveBigIntegerField(default=0)
    # For downloads: None while running, then whether every byte reached the client.
    completed = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [
            # A connection's events in order (the detail page, its last action in the live list).
            models.Index(fields=["connection", "at"], name="activity_event_conn_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind}"

    @property
    def is_running(self) -> bool:
        return self.kind == self.Kind.DOWNLOAD and self.completed is None
