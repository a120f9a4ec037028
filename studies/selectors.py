"""Reads of the archive. ``studies_search`` is the one search path.

The physicians' query form, QIDO-RS and DICOM C-FIND all describe what they want as a
``StudyQuery``; this module turns it into one indexed queryset, with no per-row Python.
"""

import re
from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects

from pacsweb.lib.dicom_dates import parse_da_range
from pacsweb.lib.person_names import fold, fold_person_name
from studies.lookups import MAX_CHAR, has_wildcard
from studies.models import Instance, Patient, Series, Study, StudyReport


@dataclass
class StudyQuery:
    """Matching keys, as text in DICOM's query syntax; empty means "any".

    Person names and institution are matched case- and accent-insensitively; a name without
    wildcards matches names that start with it (``doe`` finds ``DOE^JOHN``). Dates take a DA
    value or a range (``20240101-20241231``, ``20240101-``, ``-20241231``).
    """

    patient_name: str = ""
    patient_id: str = ""
    sex: str = ""
    birth_date: str = ""
    study_date: str = ""
    accession_number: str = ""
    institution: str = ""
    referring_physician: str = ""
    study_description: str = ""
    modalities: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)


# Below this many matching patients, studies_search looks studies up patient by patient.
SELECTIVE_PATIENTS = 1000
_TIME = re.compile(r"^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$")


class InvalidQuery(ValueError):
    """A matching key that cannot be understood (for example a malformed date range)."""


def _name_pattern(text: str, folder) -> str:
    value = folder(text.strip())
    return value if has_wildcard(value) else value + "*"


def _date_q(prefix: str, text: str, label: str) -> Q:
    try:
        start, end = parse_da_range(text)
    except ValueError as exc:
        raise InvalidQuery(f"{label}: {exc}") from exc
    q = Q()
    if start:
        q &= Q(**{f"{prefix}__gte": start})
    if end:
        q &= Q(**{f"{prefix}__lte": end})
    return q


def _patient_q(query: StudyQuery, prefix: str = "") -> Q:
    q = Q()
    if query.patient_name.strip():
        q &= Q(
            **{f"{prefix}name_norm__wildcard": _name_pattern(query.patient_name, fold_person_name)}
        )
    if query.patient_id.strip():
        q &= Q(**{f"{prefix}patient_id__wildcard": query.patient_id.strip()})
    if query.sex.strip():
        q &= Q(**{f"{prefix}sex": query.sex.strip().upper()})
    if query.birth_date.strip():
        q &= _date_q(f"{prefix}birth_date", query.birth_date, "Birth date")
    return q


def studies_search(query: StudyQuery) -> QuerySet[Study]:
    """Studies matching ``query``, newest first, with their patient. Raises InvalidQuery."""
    q = Q()
    patient_q = _patient_q(query)
    if patient_q:
        patients = Patient.objects.filter(patient_q).order_by()
        # Few matching patients: their studies are fastest found patient first, through the
        # (patient, date) index. Many: walking the studies newest first fills a page soonest.
        # SQLite always walks, so a name matching nobody took 300 ms over 100,000 studies
        # instead of 4 ms (bench/dicomweb.py); the bounded count costs a few ms at most.
        if patients[:SELECTIVE_PATIENTS].count() < SELECTIVE_PATIENTS:
            q &= Q(patient__in=patients.values("pk"))
        else:
            q &= _patient_q(query, prefix="patient__")
    if query.study_date.strip():
        q &= _date_q("study_date", query.study_date, "Study date")
    if query.accession_number.strip():
        q &= Q(accession_number__wildcard=query.accession_number.strip())
    if query.institution.strip():
        q &= Q(institution_norm__wildcard=_name_pattern(query.institution, fold))
    if query.referring_physician.strip():
        q &= Q(
            referring_physician_norm__wildcard=_name_pattern(
                query.referring_physician, fold_person_name
            )
        )
    if query.study_description.strip():
        pattern = query.study_description.strip()
        q &= (
            Q(description__wildcard=pattern)
            if has_wildcard(pattern)
            else Q(description__iexact=pattern)
        )
    if query.study_uids:
        q &= Q(study_uid__in=query.study_uids)
    # A value may itself be a DICOM list ("CT\\MR"): either of them.
    modalities = sorted(
        {part.strip().upper() for value in query.modalities for part in value.split("\\")} - {""}
    )
    if modalities:
        q &= _modalities_q(modalities)
    studies = Study.objects.filter(q)
    return studies.select_related("patient").order_by("-study_date", "-study_time", "-pk")


def _modalities_q(modalities: list[str]) -> Q:
    """Whether "modalities in study" holds one of ``modalities`` (PS3.4 C.6.2.1.2).

    Matched against the study's own ``modalities`` (its series' modalities, kept by ingest as
    ``CT\\PT``), value by value. A per-study EXISTS over the series made PostgreSQL hash every
    CT series of the archive for a one-month search (36 ms at 100,000 studies, bench/search.py);
    this is a test on the study rows the other keys already narrowed down.
    """
    q = Q()
    for modality in modalities:
        q |= (
            Q(modalities=modality)
            | Q(modalities__startswith=f"{modality}\\")
            | Q(modalities__endswith=f"\\{modality}")
            | Q(modalities__contains=f"\\{modality}\\")
        )
    return q


STUDY_LEVEL_KEYS = (
    "study_date",
    "accession_number",
    "institution",
    "referring_physician",
    "study_description",
    "modalities",
    "study_uids",
)


def patients_search(query: StudyQuery) -> QuerySet[Patient]:
    """Patients with at least one study matching ``query``, most recent study first."""
    patients = Patient.objects.filter(_patient_q(query))
    if any(getattr(query, key) for key in STUDY_LEVEL_KEYS):
        # "Patient in (the matching studies' patients)": a study date range walks the study
        # date index once, where a correlated EXISTS would probe every patient in turn.
        patients = patients.filter(pk__in=studies_search(query).order_by().values("patient_id"))
    else:
        # Only patient keys: walking the patients newest first stops after one page.
        patients = patients.filter(Exists(Study.objects.filter(patient=OuterRef("pk"))))
    return patients.order_by(F("latest_study_date").desc(nulls_last=True), "-pk")


def series_of_study(study: Study) -> QuerySet[Series]:
    return study.series.order_by("series_number", "pk")


def instances_of_series(series: Series) -> QuerySet[Instance]:
    return series.instances.order_by("instance_number", "pk")


def time_range_q(field_name: str, text: str, label: str) -> Q:
    """Match a TM column against a time or time range (PS3.4 C.2.2.2.5): ``1000``, ``1000-1230``.

    Times are stored as received (``HHMMSS.FFFFFF``, any precision); a bound given with less
    precision covers its whole unit, so ``-12`` includes 12:59:59.
    """
    start_text, dash, end_text = text.strip().partition("-")
    if not dash:
        end_text = start_text
    for part in (start_text, end_text):
        if part and not _TIME.match(part):
            raise InvalidQuery(f"{label}: not a DICOM time or time range: {text.strip()!r}")
    if not (start_text or end_text):
        raise InvalidQuery(f"{label}: not a DICOM time or time range: {text.strip()!r}")
    q = Q()
    if start_text:
        q &= Q(**{f"{field_name}__gte": start_text.replace(":", "")})
    if end_text:
        q &= Q(**{f"{field_name}__lte": end_text.replace(":", "") + MAX_CHAR})
    return q


@dataclass
class SeriesQuery:
    """Series-level matching keys (QIDO-RS, C-FIND SERIES), in DICOM's query syntax."""

    series_uids: list[str] = field(default_factory=list)
    modality: str = ""
    series_number: int | None = None
    description: str = ""
    body_part: str = ""
    series_date: str = ""
    series_time: str = ""


def series_search(query: SeriesQuery, *, studies: QuerySet[Study]) -> QuerySet[Series]:
    """Series of ``studies`` matching ``query``, by study then series number, with study and patient."""
    q = Q(study__in=studies.order_by().values("pk"))
    if query.series_uids:
        q &= Q(series_uid__in=query.series_uids)
    if query.modality.strip():
        q &= Q(modality__wildcard=query.modality.strip().upper())
    if query.series_number is not None:
        q &= Q(series_number=query.series_number)
    if query.description.strip():
        q &= Q(description__wildcard=query.description.strip())
    if query.body_part.strip():
        q &= Q(body_part__wildcard=query.body_part.strip().upper())
    if query.series_date.strip():
        q &= _date_q("series_date", query.series_date, "Series date")
    if query.series_time.strip():
        q &= time_range_q("series_time", query.series_time, "Series time")
    return (
        Series.objects.filter(q)
        .select_related("study__patient")
        .order_by("study_id", F("series_number").asc(nulls_last=True), "pk")
    )


@dataclass
class InstanceQuery:
    """Instance-level matching keys (QIDO-RS, C-FIND IMAGE)."""

    sop_uids: list[str] = field(default_factory=list)
    sop_class_uids: list[str] = field(default_factory=list)
    instance_number: int | None = None


def instances_search(query: InstanceQuery, *, series: QuerySet[Series]) -> QuerySet[Instance]:
    """Instances of ``series`` matching ``query``, in series and instance-number order."""
    q = Q(series__in=series.order_by().values("pk"))
    if query.sop_uids:
        q &= Q(sop_uid__in=query.sop_uids)
    if query.sop_class_uids:
        q &= Q(sop_class_uid__in=query.sop_class_uids)
    if query.instance_number is not None:
        q &= Q(instance_number=query.instance_number)
    return (
        Instance.objects.filter(q)
        .select_related("series__study__patient")
        .order_by("series_id", F("instance_number").asc(nulls_last=True), "pk")
    )


# The physicians' pages ------------------------------------------------------------------------


@dataclass
class PatientResult:
    """One patient of a results page: the most recent of the studies that matched (up to a
    limit; ``matched`` counts them all) and the UIDs of all the patient's studies."""

    patient: Patient
    studies: list[Study]
    matched: int
    all_study_uids: list[str]


REPORTS = Prefetch("reports", queryset=StudyReport.objects.order_by("uploaded_at", "pk"))


def with_reports(studies: QuerySet[Study]) -> QuerySet[Study]:
    return studies.prefetch_related(REPORTS)


def results_page(
    query: StudyQuery, *, page: int | str, per_page: int, studies_per_patient: int
) -> tuple[Page, list[PatientResult]]:
    """One page of patients matching ``query`` (most recent study first), with their studies.

    A fixed number of queries whatever the page holds: the count, the patients, their matching
    studies, those studies' reports, and the UIDs of all their studies (for the viewer links).
    A patient shows at most ``studies_per_patient`` studies, so that one patient with hundreds
    of studies does not make a page of hundreds of rows; the patient's page has them all.
    """
    paginator = Paginator(patients_search(query), per_page)
    page_obj = paginator.get_page(page)
    patients = list(page_obj.object_list)
    ids = [patient.pk for patient in patients]
    matching: dict[int, list[Study]] = {pk: [] for pk in ids}
    every_uid: dict[int, list[str]] = {pk: [] for pk in ids}
    if ids:
        # The patients are at hand already: no join, no second Patient per study.
        for study in studies_search(query).select_related(None).filter(patient_id__in=ids):
            matching[study.patient_id].append(study)
        rows = (
            Study.objects.filter(patient_id__in=ids)
            .order_by("-study_date", "-study_time", "-pk")
            .values_list("patient_id", "study_uid")
        )
        for patient_id, study_uid in rows:
            every_uid[patient_id].append(study_uid)
    results = [
        PatientResult(p, matching[p.pk][:studies_per_patient], len(matching[p.pk]), every_uid[p.pk])
        for p in patients
    ]
    prefetch_related_objects([s for r in results for s in r.studies], REPORTS)
    return page_obj, results


def studies_of_patient(patient: Patient) -> QuerySet[Study]:
    """All the patient's studies, most recent first, with their reports."""
    return with_reports(patient.studies.order_by("-study_date", "-study_time", "-pk"))


def series_middle_instance(series: Series) -> Instance | None:
    """The instance in the middle of the series (by instance number): what its thumbnail shows."""
    if series.num_instances <= 0:
        return None
    return instances_of_series(series)[series.num_instances // 2 :].first()
