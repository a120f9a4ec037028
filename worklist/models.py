"""The modality worklist: orders that arrived as HL7 v2 messages, and the messages themselves.

Only ``worklist.services`` writes these rows (one HL7 intake path). An order is one requested
procedure with one scheduled procedure step, which is what a modality sees as one worklist item.
Values are stored ready for DICOM (PN with ``^`` components, DA/TM split, code triplets), so the
C-FIND handler serves them without re-mapping HL7.
"""

from django.db import models
from django.utils import timezone


def pattern_index(field: str, name: str) -> models.Index:
    """An index that also serves ``LIKE 'prefix%'`` on PostgreSQL (ignored elsewhere)."""
    return models.Index(fields=[field], name=name, opclasses=["varchar_pattern_ops"])


class HL7Message(models.Model):
    """One HL7 v2 message as received, with what became of it."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "web upload"
        IMPORT = "import", "import_hl7 command"
        MLLP = "mllp", "MLLP listener"

    class Outcome(models.TextChoices):
        STORED = "stored", "stored"
        REJECTED = "rejected", "rejected"

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    # What the source knows about the sender: a file name and user, or a peer address.
    source_detail = models.CharField(max_length=256, blank=True)
    position = models.PositiveIntegerField("position in the file", default=1)
    control_id = models.CharField("message control ID (MSH-10)", max_length=199, blank=True)
    message_type = models.CharField("type (MSH-9)", max_length=32, blank=True)
    version = models.CharField("version (MSH-12)", max_length=16, blank=True)
    sending_application = models.CharField(
        "sending application (MSH-3)", max_length=227, blank=True
    )
    sending_facility = models.CharField("sending facility (MSH-4)", max_length=227, blank=True)
    # The message text as decoded, segments separated by carriage returns (HL7 2.6.1).
    raw = models.TextField("raw message")
    sha256 = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.TextField(blank=True)

    class Meta:
        verbose_name = "HL7 message"
        ordering = ["-received_at", "-id"]
        constraints = [
            # A sender's control ID identifies one message (HL7 2.14.9.10): once one is stored,
            # the same ID again is a duplicate, never a second set of changes.
            models.UniqueConstraint(
                fields=["sending_application", "sending_facility", "control_id"],
                condition=models.Q(outcome="stored"),
                name="hl7message_stored_control_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_type or 'HL7'} {self.control_id or '(no control ID)'}"


class Order(models.Model):
    """A worklist item: a requested procedure and its scheduled procedure step."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled", "scheduled"
        IN_PROGRESS = "in_progress", "in progress / arrived"
        DONE = "done", "done"
        CANCELLED = "cancelled", "cancelled"

    # States in which a modality may still perform the step, so the worklist offers it.
    OPEN_STATES = (State.SCHEDULED, State.IN_PROGRESS)

    state = models.CharField(max_length=16, choices=State.choices, default=State.SCHEDULED)
    state_reason = models.CharField(max_length=256, blank=True)
    message = models.ForeignKey(
        HL7Message,
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name="created by message",
    )
    last_message = models.ForeignKey(
        HL7Message,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        verbose_name="last changed by message",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # When images of the study reached the archive (set together with state "done").
    arrived_at = models.DateTimeField(null=True, blank=True)

    # Order identification (ORC-2, ORC-3) and the imaging service request (DICOM PS3.3 C.4.11).
    placer_order_number = models.CharField(max_length=64, blank=True)
    filler_order_number = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, blank=True)
    requesting_physician = models.CharField(max_length=324, blank=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    admission_id = models.CharField(max_length=64, blank=True)

    # Patient (PID).
    patient_name = models.CharField(max_length=324, blank=True)
    patient_name_norm = models.CharField(max_length=324, blank=True)
    patient_id = models.CharField("patient ID", max_length=64)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    patient_birth_date = models.DateField(null=True, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)

    # Requested procedure (PS3.3 C.4.11).
    study_uid = models.CharField("Study Instance UID", max_length=64)
    requested_procedure_id = models.CharField(max_length=16, blank=True)
    requested_procedure_description = models.CharField(max_length=64, blank=True)
    # A list of {"value", "scheme", "meaning"} code items (CodeValue, CodingSchemeDesignator,
    # CodeMeaning).
    requested_procedure_codes = models.JSONField(default=list, blank=True)
    requested_procedure_priority = models.CharField(max_length=16, blank=True)

    # Scheduled procedure step (PS3.3 C.4.10); date and time as the message gave them, local.
    sps_id = models.CharField("scheduled procedure step ID", max_length=16, blank=True)
    modality = models.CharField(max_length=16)
    station_ae_title = models.CharField("scheduled station AE title", max_length=16, blank=True)
    station_name = models.CharField("scheduled station name", max_length=16, blank=True)
    sps_location = models.CharField("scheduled procedure step location", max_length=16, blank=True)
    scheduled_date = models.DateField()
    scheduled_time = models.TimeField(null=True, blank=True)
    sps_description = models.CharField(
        "scheduled procedure step description", max_length=64, blank=True
    )
    protocol_codes = models.JSONField("scheduled protocol codes", default=list, blank=True)
    performing_physician = models.CharField(
        "scheduled performing physician", max_length=324, blank=True
    )

    class Meta:
        ordering = ["scheduled_date", "scheduled_time", "id"]
        indexes = [
            models.Index(fields=["state", "scheduled_date"], name="order_state_date"),
            models.Index(fields=["study_uid"], name="order_study_uid"),
            models.Index(fields=["accession_number"], name="order_accession"),
            models.Index(fields=["placer_order_number"], name="order_placer"),
            models.Index(fields=["filler_order_number"], name="order_filler"),
            models.Index(fields=["patient_id"], name="order_patient_id"),
            pattern_index("patient_name_norm", "order_patient_name"),
        ]

    def __str__(self) -> str:
        return f"{self.accession_number or self.placer_order_number} {self.modality} {self.patient_name}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES
