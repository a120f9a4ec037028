"""The archive's index: Patient -> Study -> Series -> Instance, plus the PDF reports of a study.

Only ``studies.services`` writes these rows (one ingestion path). Person names are kept as
received and in a normalised form (see ``pacsweb.lib.person_names``) that search matches against.
"""

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models


def pattern_index(field: str, name: str) -> models.Index:
    """An index that also serves ``LIKE 'prefix%'`` on PostgreSQL (ignored elsewhere)."""
    return models.Index(fields=[field], name=name, opclasses=["varchar_pattern_ops"])


class Patient(models.Model):
    # The identity key: issuer and patient ID, or, for the (legal) empty Patient ID, name and birth
    # date, so that unrelated patients without an ID are not merged into one.
    key = models.CharField(max_length=512, unique=True)
    patient_id = models.CharField("patient ID", max_length=64)
    issuer = models.CharField("issuer of patient ID", max_length=64, blank=True)
    name = models.CharField(max_length=324, blank=True)
    name_norm = models.CharField(max_length=324, blank=True)
    birth_date = models.DateField(null=True, blank=True, db_index=True)
    sex = models.CharField(max_length=16, blank=True, db_index=True)
    # The date of the patient's most recent study, kept by ingest, to list patients newest first.
    latest_study_date = models.DateField(null=True, blank=True)

    class Meta:
        indexes = [
            pattern_index("name_norm", "patient_name"),
            pattern_index("patient_id", "patient_id"),
            models.Index(fields=["-latest_study_date", "-id"], name="patient_latest_study"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.patient_id})"


class Study(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="studies")
    study_uid = models.CharField("Study Instance UID", max_length=64, unique=True)
    study_date = models.DateField(null=True, blank=True, db_index=True)
    study_time = models.CharField(max_length=16, blank=True)
    study_id = models.CharField("study ID", max_length=16, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=256, blank=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    referring_physician_norm = models.CharField(max_length=324, blank=True)
    institution = models.CharField(max_length=128, blank=True)
    institution_norm = models.CharField(max_length=128, blank=True)
    # Derived at ingest so that lists never count or aggregate per row.
    modalities = models.CharField("modalities in study", max_length=128, blank=True)
    num_series = models.PositiveIntegerField(default=0)
    num_instances = models.PositiveIntegerField(default=0)
    size = models.PositiveBigIntegerField("bytes", default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "studies"
        indexes = [
            models.Index(fields=["patient", "-study_date"], name="study_patient_date"),
            pattern_index("accession_number", "study_accession"),
            pattern_index("referring_physician_norm", "study_referring"),
            pattern_index("institution_norm", "study_institution"),
        ]

    def __str__(self) -> str:
        return f"{self.study_date or ''} {self.description}".strip() or self.study_uid

    @property
    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split("\\") if m]


class Series(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_uid = models.CharField("Series Instance UID", max_length=64, unique=True)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=256, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    series_date = models.DateField(null=True, blank=True)
    series_time = models.CharField(max_length=16, blank=True)
    num_instances = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "series"
        indexes = [models.Index(fields=["modality", "study"], name="series_modality_study")]

    def __str__(self) -> str:
        return f"{self.series_number or ''} {self.modality} {self.description}".strip()


class Instance(models.Model):
    class Source(models.TextChoices):
        RECEIVER = "receiver", "DICOM receiver"
        UPLOAD = "upload", "Web upload"
        IMPORT = "import", "Import"
        STOW = "stow", "STOW-RS"
        DEMO = "demo", "Demo data"

    # Every index costs each instance received an insert into it. instance_series_number below
    # serves lookups by series, and the unique constraints serve exact lookups; a plain
    # unique=True would add a second index per column on PostgreSQL, for LIKE queries that a
    # UID or a storage path never gets.
    series = models.ForeignKey(
        Series, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    sop_uid = models.CharField("SOP Instance UID", max_length=64)
    sop_class_uid = models.CharField("SOP Class UID", max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    # Relative to settings.STORAGE_DIR; generated by studies.storage, never from DICOM values.
    path = models.CharField(max_length=128)
    size = models.PositiveBigIntegerField()
    crc32 = models.PositiveBigIntegerField("CRC-32")
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    # The calling AE title, the user name or the imported path, for the audit trail.
    source_detail = models.CharField(max_length=256, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    num_frames = models.PositiveIntegerField(default=0)
    # DICOM JSON (PS3.18 F.2) of the whole header, computed once at ingest for WADO-RS metadata.
    # Bulk data appear as a relative ``BulkDataURI`` of the form ``bulk/<tag>`` (see
    # studies.dicom_json); pixel data as ``bulk/7FE00010``.
    metadata = models.TextField(blank=True)
    # Where each frame's bytes are in the stored file: one list of [offset, length] fragments per
    # frame, in stored transfer syntax. Null when frames cannot be cut from the file directly
    # (no pixel data, deflated datasets, bit-packed frames).
    frames = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["series", "instance_number"], name="instance_series_number")
        ]
        constraints = [
            models.UniqueConstraint(fields=["sop_uid"], name="instance_sop_uid_unique"),
            models.UniqueConstraint(fields=["path"], name="instance_path_unique"),
        ]

    def __str__(self) -> str:
        return self.sop_uid


def report_storage() -> FileSystemStorage:
    return FileSystemStorage(location=settings.PRIVATE_DIR / "reports", file_permissions_mode=0o600)


class StudyReport(models.Model):
    """A PDF report attached to a study by a web user."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reports")
    title = models.CharField(max_length=256)
    # Stored under a generated name; ``title`` keeps the name the user uploaded it as.
    file = models.FileField(storage=report_storage, upload_to="%Y/%m")
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["uploaded_at"]

    def __str__(self) -> str:
        return self.title
