"""Patient links: one token per study, and the counters that throttle wrong guesses.

The token itself is never stored. It is derived from a server key kept outside the database
(``tokens.derivation``), so a copy of the database alone opens nothing; the row keeps only the
token's SHA-256 digest, which is what a visit is looked up by. Only ``tokens.services`` writes
these rows.
"""

from django.db import models

from studies.models import Study


class StudyToken(models.Model):
    """The patient link of one study: its current generation, and whether it was withdrawn.

    The row is written the first time the study's link is produced (copy link, handout, admin,
    ``study_token``); until then nobody can hold the link, so there is nothing to look up.
    """

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="patient_token")
    # SHA-256 (hex) of the current token: the only form of it the database ever holds.
    digest = models.CharField(max_length=64, unique=True)
    # Raised by every regeneration; the token is derived from the study's UID and this number.
    generation = models.PositiveIntegerField(default=1)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # An admin's extension: the link works at least until the end of this day (server time).
    extended_through = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "study token"

    def __str__(self) -> str:
        return f"patient link of {self.study_id} (generation {self.generation})"


class FailureCounter(models.Model):
    """Wrong answers counted per key within a time window (``address:<ip>``, ``birth:<token>``)."""

    key = models.CharField(max_length=96, unique=True)
    window_started_at = models.DateTimeField(db_index=True)
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.failures}"


class StudyLink(Study):
    """Studies as the admin's "Patient links" list shows them (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "patient link"
        verbose_name_plural = "patient links"
