"""QIDO-RS (PS3.18 10.6): query parameters -> studies.selectors -> DICOM JSON.

Matching goes through ``studies.selectors`` (the one search path); this module only translates
the query string into its query objects and renders index rows as DICOM JSON (PS3.18 F.2).
Attributes that the index does not hold but a client asks for with ``includefield`` come from the
JSON metadata stored at ingest (of the instance itself, or of one instance of the series or
study), fetched with one extra query for the whole page.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import QueryDict
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomweb.access import Scope
from studies.models import Instance, Series, Study
from studies.selectors import (
    InstanceQuery,
    InvalidQuery,
    SeriesQuery,
    StudyQuery,
    instances_search,
    series_search,
    studies_search,
    time_range_q,
)

STUDY, SERIES, INSTANCE = "study", "series", "instance"
MAX_LIMIT = {STUDY: 1000, SERIES: 5000, INSTANCE: 10000}
RESERVED = {"limit", "offset", "includefield", "fuzzymatching", "includedefaults"}


class QueryError(ValueError):
    """A query parameter that cannot be understood; the message says which and why."""


def _tag_text(tag: int) -> str:
    return f"{tag:08X}"


def _value(vr: str, value) -> dict:
    if value is None or value == "" or value == []:
        return {"vr": vr}
    return {"vr": vr, "Value": value if isinstance(value, list) else [value]}


def _pn(name: str) -> dict:
    if not name:
        return {"vr": "PN"}
    groups = name.split("=")
    value = {
        key: text
        for key, text in zip(("Alphabetic", "Ideographic", "Phonetic"), groups[:3], strict=False)
        if text
    }
    return {"vr": "PN", "Value": [value]} if value else {"vr": "PN"}


def _da(date) -> dict:
    return _value("DA", date.strftime("%Y%m%d") if date else None)


# Each attribute the index holds, per level: tag -> (VR, how to read it from a row).
# Rows are Study (study level), Series (with .study), Instance (with .series.study).
def _study_attributes(get_study: Callable) -> dict[int, Callable]:
    return {
        0x00080020: lambda r: _da(get_study(r).study_date),
        0x00080030: lambda r: _value("TM", get_study(r).study_time),
        0x00080050: lambda r: _value("SH", get_study(r).accession_number),
        0x00080056: lambda r: _value("CS", "ONLINE"),
        0x00080061: lambda r: _value("CS", get_study(r).modality_list),
        0x00080080: lambda r: _value("LO", get_study(r).institution),
        0x00080090: lambda r: _pn(get_study(r).referring_physician),
        0x00081030: lambda r: _value("LO", get_study(r).description),
        0x00100010: lambda r: _pn(get_study(r).patient.name),
        0x00100020: lambda r: _value("LO", get_study(r).patient.patient_id),
        0x00100021: lambda r: _value("LO", get_study(r).patient.issuer),
        0x00100030: lambda r: _da(get_study(r).patient.birth_date),
        0x00100040: lambda r: _value("CS", get_study(r).patient.sex),
        0x0020000D: lambda r: _value("UI", get_study(r).study_uid),
        0x00200010: lambda r: _value("SH", get_study(r).study_id),
        0x00201206: lambda r: _value("IS", get_study(r).num_series),
        0x00201208: lambda r: _value("IS", get_study(r).num_instances),
    }


def _series_attributes(get_series: Callable) -> dict[int, Callable]:
    return {
        0x00080021: lambda r: _da(get_series(r).series_date),
        0x00080031: lambda r: _value("TM", get_series(r).series_time),
        0x00080056: lambda r: _value("CS", "ONLINE"),
        0x00080060: lambda r: _value("CS", get_series(r).modality),
        0x0008103E: lambda r: _value("LO", get_series(r).description),
        0x00180015: lambda r: _value("CS", get_series(r).body_part),
        0x0020000D: lambda r: _value("UI", get_series(r).study.study_uid),
        0x0020000E: lambda r: _value("UI", get_series(r).series_uid),
        0x00200011: lambda r: _value("IS", get_series(r).series_number),
        0x00201209: lambda r: _value("IS", get_series(r).num_instances),
    }


def _instance_attributes() -> dict[int, Callable]:
    return {
        0x00080016: lambda r: _value("UI", r.sop_class_uid),
        0x00080018: lambda r: _value("UI", r.sop_uid),
        0x00080056: lambda r: _value("CS", "ONLINE"),
        0x00083002: lambda r: _value("UI", r.transfer_syntax_uid),
        0x0020000D: lambda r: _value("UI", r.series.study.study_uid),
        0x0020000E: lambda r: _value("UI", r.series.series_uid),
        0x00200013: lambda r: _value("IS", r.instance_number),
        0x00280008: lambda r: _value("IS", r.num_frames or None),
        0x00280010: lambda r: _value("US", r.rows),
        0x00280011: lambda r: _value("US", r.columns),
    }


# The attributes returned without includefield (PS3.18 Tables 10.6.3-3 to -5, less RetrieveURL,
# which Weasis would prefer over its own URLs, plus the ones OHIF and Weasis always ask for).
STUDY_DEFAULT = {
    0x00080020, 0x00080030, 0x00080050, 0x00080056, 0x00080061, 0x00080090, 0x00081030,
    0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x0020000D, 0x00200010, 0x00201206,
    0x00201208,
}  # fmt: skip
SERIES_DEFAULT = {
    0x00080021, 0x00080031, 0x00080056, 0x00080060, 0x0008103E, 0x0020000D, 0x0020000E,
    0x00200011, 0x00201209,
}  # fmt: skip
INSTANCE_DEFAULT = {
    0x00080016, 0x00080018, 0x00080056, 0x00083002, 0x0020000D, 0x0020000E, 0x00200013,
    0x00280008, 0x00280010, 0x00280011,
}  # fmt: skip


def parse_tag(text: str) -> int:
    """A keyword (``PatientName``) or tag (``00100010``) as an int; QueryError otherwise."""
    text = text.strip()
    if "." in text:
        raise QueryError(
            f"{text!r}: matching or including attributes inside sequences is not supported"
        )
    if len(text) == 8:
        try:
            tag = int(text, 16)
        except ValueError:
            tag = None
        if tag is not None:
            return tag
    tag = tag_for_keyword(text)
    if tag is None:
        raise QueryError(f"{text!r} is neither a DICOM keyword nor an 8-digit hex tag")
    return int(tag)


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or _tag_text(tag)


def _split_list(text: str) -> list[str]:
    """UID and code lists: DICOM separates values with ``\\``, OHIF with commas."""
    return [item.strip() for item in text.replace(",", "\\").split("\\") if item.strip()]


def _int_value(tag: int, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise QueryError(f"{_name(tag)}: {text!r} is not an integer") from exc


@dataclass
class Matching:
    study: StudyQuery = field(default_factory=StudyQuery)
    study_time: str = ""
    study_id: str = ""
    series: SeriesQuery = field(default_factory=SeriesQuery)
    instance: InstanceQuery = field(default_factory=InstanceQuery)


def _set_study_key(m: Matching, tag: int, value: str) -> bool:
    text_keys = {
        0x00100010: "patient_name",
        0x00100020: "patient_id",
        0x00100040: "sex",
        0x00100030: "birth_date",
        0x00080020: "study_date",
        0x00080050: "accession_number",
        0x00080080: "institution",
        0x00080090: "referring_physician",
        0x00081030: "study_description",
    }
    if tag in text_keys:
        setattr(m.study, text_keys[tag], value)
    elif tag == 0x00080061:
        m.study.modalities = _split_list(value)
    elif tag == 0x0020000D:
        m.study.study_uids = _split_list(value)
    elif tag == 0x00080030:
        m.study_time = value
    elif tag == 0x00200010:
        m.study_id = value
    else:
        return False
    return True


def _set_series_key(m: Matching, tag: int, value: str) -> bool:
    text_keys = {
        0x00080060: "modality",
        0x0008103E: "description",
        0x00180015: "body_part",
        0x00080021: "series_date",
        0x00080031: "series_time",
    }
    if tag in text_keys:
        setattr(m.series, text_keys[tag], value)
    elif tag == 0x0020000E:
        m.series.series_uids = _split_list(value)
    elif tag == 0x00200011:
        m.series.series_number = _int_value(tag, value)
    else:
        return False
    return True


def _set_instance_key(m: Matching, tag: int, value: str) -> bool:
    if tag == 0x00080018:
        m.instance.sop_uids = _split_list(value)
    elif tag == 0x00080016:
        m.instance.sop_class_uids = _split_list(value)
    elif tag == 0x00200013:
        m.instance.instance_number = _int_value(tag, value)
    else:
        return False
    return True


@dataclass
class Request:
    level: str
    matching: Matching
    includes: set[int]
    include_all: bool
    limit: int
    offset: int
    warnings: list[str]


def parse(params: QueryDict, *, level: str, match_levels: tuple[str, ...]) -> Request:
    """Parse a QIDO-RS query string for a search at ``level`` that may match ``match_levels``."""
    matching = Matching()
    includes: set[int] = set()
    include_all = False
    warnings: list[str] = []
    setters = {STUDY: _set_study_key, SERIES: _set_series_key, INSTANCE: _set_instance_key}
    for key in params:
        values = params.getlist(key)
        lower = key.lower()
        if lower == "includefield":
            for value in values:
                for item in value.split(","):
                    if item.strip().lower() == "all":
                        include_all = True
                    elif item.strip():
                        includes.add(parse_tag(item))
            continue
        if lower in RESERVED:
            continue
        tag = parse_tag(key)
        non_empty = [v for v in values if v.strip()]
        if not non_empty:
            # An empty value is universal matching: it asks for the attribute back (PS3.4 C.2.2.2.3).
            includes.add(tag)
            continue
        if len(non_empty) > 1:
            raise QueryError(f"{_name(tag)} is given more than once")
        value = non_empty[0]
        if not any(setters[lvl](matching, tag, value) for lvl in match_levels):
            raise QueryError(
                f"{_name(tag)} cannot be matched in this query; supported: "
                + ", ".join(sorted(_name(t) for t in supported_keys(match_levels)))
            )
        includes.add(tag)
    limit = _bounded_int(params, "limit", MAX_LIMIT[level])
    if limit > MAX_LIMIT[level]:
        warnings.append(
            f'299 pacsweb "The number of results was limited to {MAX_LIMIT[level]}; '
            'use offset to request the rest."'
        )
        limit = MAX_LIMIT[level]
    offset = _bounded_int(params, "offset", 0)
    fuzzy = params.get("fuzzymatching", "").strip().lower()
    if fuzzy not in ("", "true", "false"):
        raise QueryError(f"fuzzymatching must be true or false, not {fuzzy!r}")
    return Request(level, matching, includes, include_all, limit, offset, warnings)


def _bounded_int(params: QueryDict, name: str, default: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise QueryError(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


def supported_keys(levels: tuple[str, ...]) -> set[int]:
    """The matching keys accepted at ``levels``, for the error message."""
    probe = Matching()
    setters = {STUDY: _set_study_key, SERIES: _set_series_key, INSTANCE: _set_instance_key}
    candidates = STUDY_DEFAULT | SERIES_DEFAULT | INSTANCE_DEFAULT | {0x00080080, 0x00180015}
    return {tag for tag in candidates for lvl in levels if setters[lvl](probe, tag, "1")}


def _studies(req: Request, scope: Scope) -> QuerySet[Study]:
    try:
        studies = studies_search(req.matching.study)
        if req.matching.study_time.strip():
            studies = studies.filter(
                time_range_q("study_time", req.matching.study_time, "Study time")
            )
    except InvalidQuery as exc:
        raise QueryError(str(exc)) from exc
    if req.matching.study_id.strip():
        studies = studies.filter(study_id__wildcard=req.matching.study_id.strip())
    return scope.studies(studies)


def _series(req: Request, studies: QuerySet[Study]) -> QuerySet[Series]:
    try:
        return series_search(req.matching.series, studies=studies)
    except InvalidQuery as exc:
        raise QueryError(str(exc)) from exc


def search_studies(req: Request, scope: Scope) -> list[dict]:
    studies = _studies(req, scope)
    rows = list(studies[req.offset : req.offset + req.limit])
    attributes = _study_attributes(lambda r: r)
    wanted = _wanted(req, STUDY_DEFAULT, attributes)
    lower = set(_series_attributes(lambda r: r)) | set(_instance_attributes())
    extra = _extra_tags(req, attributes, lower)
    metadata = {}
    if extra and rows:
        first = (
            Instance.objects.filter(series__study=OuterRef("pk"))
            .order_by("series__series_number", "instance_number", "pk")
            .values("pk")[:1]
        )
        metadata = _representatives(
            Study.objects.filter(pk__in=[r.pk for r in rows]).annotate(first=Subquery(first))
        )
    return [_render(row, attributes, wanted, extra, metadata.get(row.pk)) for row in rows]


def search_series(req: Request, scope: Scope, *, study: Study | None) -> list[dict]:
    studies = Study.objects.filter(pk=study.pk) if study else _studies(req, scope)
    rows = list(_series(req, studies)[req.offset : req.offset + req.limit])
    attributes = _series_attributes(lambda r: r)
    default = set(SERIES_DEFAULT)
    if study is None:
        # Series found across studies carry their study's attributes (PS3.18 10.6.3.3.2).
        attributes = {**_study_attributes(lambda r: r.study), **attributes}
        default |= STUDY_DEFAULT
    wanted = _wanted(req, default, attributes)
    extra = _extra_tags(req, attributes, set(_instance_attributes()))
    metadata = {}
    if extra and rows:
        first = (
            Instance.objects.filter(series=OuterRef("pk"))
            .order_by("instance_number", "pk")
            .values("pk")[:1]
        )
        metadata = _representatives(
            Series.objects.filter(pk__in=[r.pk for r in rows]).annotate(first=Subquery(first))
        )
    return [_render(row, attributes, wanted, extra, metadata.get(row.pk)) for row in rows]


def search_instances(
    req: Request, scope: Scope, *, study: Study | None, series: Series | None
) -> list[dict]:
    if series is not None:
        series_qs = Series.objects.filter(pk=series.pk)
    else:
        studies = Study.objects.filter(pk=study.pk) if study else _studies(req, scope)
        series_qs = _series(req, studies)
    attributes = _instance_attributes()
    default = set(INSTANCE_DEFAULT)
    if series is None:
        attributes = {**_series_attributes(lambda r: r.series), **attributes}
        default |= SERIES_DEFAULT
    if study is None and series is None:
        attributes = {**_study_attributes(lambda r: r.series.study), **attributes}
        default |= STUDY_DEFAULT
    wanted = _wanted(req, default, attributes)
    extra = _extra_tags(req, attributes)
    instances = instances_search(req.matching.instance, series=series_qs)
    if not extra:
        instances = instances.defer("metadata", "frames")
    rows = list(instances[req.offset : req.offset + req.limit])
    return [
        _render(row, attributes, wanted, extra, json.loads(row.metadata or "{}") if extra else None)
        for row in rows
    ]


def _wanted(req: Request, default: set[int], attributes: dict) -> set[int]:
    if req.include_all:
        return set(attributes)
    return (default | req.includes) & set(attributes)


# RetrieveURL is never returned: Weasis would fetch from it instead of building its own URLs.
NEVER_RETURNED = {0x00081190}


def _extra_tags(
    req: Request, attributes: dict, lower_level: frozenset[int] | set[int] = frozenset()
) -> set[int]:
    """Asked-for attributes the index lacks, to be read from a representative's metadata.

    Attributes of a lower level (OHIF's study list asks for Modality) are not returned: one
    instance's value would misdescribe the study or series (PS3.18 10.6.3.3 lists per level).
    """
    skip = set(attributes) | NEVER_RETURNED | lower_level
    return {tag for tag in req.includes if tag not in skip}


def _representatives(queryset: QuerySet) -> dict[int, dict]:
    """Parent pk -> the stored metadata of its first instance, in two queries for the page."""
    firsts = dict(queryset.values_list("pk", "first"))
    texts = dict(
        Instance.objects.filter(pk__in=[pk for pk in firsts.values() if pk]).values_list(
            "pk", "metadata"
        )
    )
    return {parent: json.loads(texts.get(first) or "{}") for parent, first in firsts.items()}


def _render(row, attributes: dict, wanted: set[int], extra: set[int], metadata) -> dict:
    result = {_tag_text(tag): attributes[tag](row) for tag in wanted}
    for tag in extra:
        key = _tag_text(tag)
        if metadata and key in metadata and "BulkDataURI" not in metadata[key]:
            result[key] = metadata[key]
        else:
            result[key] = {"vr": _vr(tag)}
    return dict(sorted(result.items()))


def _vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr.split(" or ")[0]
