"""The study rows of the result lists, built in Python as Django's admin builds its change lists.

A results page holds up to a few hundred study rows, each with a dozen values and six actions;
rendered through template includes they cost most of the page's time (bench/search.py). Here
every value goes through ``format_html``, which escapes it: DICOM text always shows as text.
"""

from urllib.parse import quote

from django import template
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from pacsweb.lib.person_names import display_person_name
from studies.models import Study

register = template.Library()

ROW = (
    '<tbody class="study"><tr>'
    '<td data-label="Study date" class="date"><span><strong>{date}</strong>{time}</span></td>'
    '<td data-label="Description" class="description">'
    '<a href="/studies/study/{uid}/">{description}</a></td>'
    '<td data-label="Modalities"><span>{modalities}</span></td>'
    '<td data-label="Accession">{accession}</td>'
    '<td data-label="Referring physician">{referring}</td>'
    '<td data-label="Series / images" class="num">{series} / {images}</td>'
    '<td data-label="Reports">{reports}</td>'
    '</tr><tr class="study-actions"><td colspan="7">{actions}</td></tr></tbody>'
)
NONE = SafeString('<span class="muted">—</span>')


def _uid(study: Study) -> SafeString:
    # Percent-encoded, a UID (or anything in its place) is only letters, digits and "%._-~":
    # nothing HTML gives a meaning to, so it goes into the markup as it is.
    return SafeString(quote(study.study_uid, safe=""))


def _time(study: Study) -> SafeString | str:
    text = study.study_time
    if len(text) < 4 or not text[:4].isdigit():
        return ""
    return format_html(' <span class="muted time">{}:{}</span>', text[:2], text[2:4])


def _reports(study: Study) -> SafeString:
    reports = list(study.reports.all())
    if not reports:
        return SafeString('<span class="muted" title="No report attached">—</span>')
    uid = _uid(study)
    return format_html(
        '<ul class="reports">{}</ul>',
        format_html_join(
            "",
            '<li><a href="/studies/study/{}/reports/{}/"><span class="pdf-badge">PDF</span> {}</a>'
            ' <span class="muted">{}</span></li>',
            ((uid, r.pk, r.title, filesizeformat(r.size)) for r in reports),
        ),
    )


@register.simple_tag
def study_actions(study: Study, series_link: bool = True) -> SafeString:
    """The buttons of one study: series, viewers, zip, patient link, attaching a report."""
    uid = _uid(study)
    return format_html(
        '<div class="actions">{}'
        '<a class="button small" href="/ohif/viewer?StudyInstanceUIDs={}">Web viewer</a>'
        '<a class="button small" href="/weasis/launch/study/{}">Desktop viewer</a>'
        '<a class="button small" href="/studies/study/{}/download" download>Zip</a>'
        '<button type="button" class="button small" '
        'data-patient-link="/studies/study/{}/patient-link">Copy patient link</button>'
        '<a class="button small" href="/studies/study/{}/#attach-report" '
        'data-attach-report="/studies/study/{}/reports/" data-study-label="{}">Attach PDF</a>'
        "</div>",
        format_html('<a class="button small primary" href="/studies/study/{}/">Series ›</a>', uid)
        if series_link
        else "",
        uid,
        uid,
        uid,
        uid,
        uid,
        uid,
        _label(study),
    )


def _label(study: Study) -> str:
    """How the report dialog names the study: its date and description."""
    date = study.study_date.isoformat() if study.study_date else ""
    return f"{date} {study.description}".strip()


TABLE_HEAD = SafeString(
    '<table class="studies responsive"><thead><tr>'
    '<th scope="col">Study date</th><th scope="col">Description</th>'
    '<th scope="col">Modalities</th><th scope="col">Accession</th>'
    '<th scope="col">Referring physician</th><th scope="col" class="num">Series / images</th>'
    '<th scope="col">Reports</th></tr></thead>'
)
SEX = {"F": "Female", "M": "Male", "O": "Other"}


@register.simple_tag
def study_table(studies: list[Study]) -> SafeString:
    """The studies as a table on wide screens and as cards on phones (see pacsweb.css)."""
    return format_html("{}{}</table>", TABLE_HEAD, study_rows(studies))


@register.simple_tag
def patient_facts(patient) -> SafeString:
    """The patient's ID (with its issuer), birth date and sex."""
    return format_html(
        '<dl class="meta"><div><dt>Patient ID</dt><dd>{}{}</dd></div>'
        "<div><dt>Birth date</dt><dd>{}</dd></div><div><dt>Sex</dt><dd>{}</dd></div></dl>",
        patient.patient_id or "—",
        format_html(' <span class="muted">({})</span>', patient.issuer) if patient.issuer else "",
        patient.birth_date.isoformat() if patient.birth_date else "—",
        SEX.get(patient.sex, patient.sex) or "—",
    )


def study_rows(studies: list[Study]) -> SafeString:
    """One ``<tbody>`` per study: its values, its reports and its actions."""
    return format_html_join(
        "",
        "{}",
        (
            (
                format_html(
                    ROW,
                    date=study.study_date.isoformat() if study.study_date else "—",
                    time=_time(study),
                    uid=_uid(study),
                    description=study.description or "(no description)",
                    modalities=format_html_join(
                        "", '<span class="tag">{}</span>', ((m,) for m in study.modality_list)
                    )
                    or NONE,
                    accession=study.accession_number or "—",
                    referring=display_person_name(study.referring_physician) or "—",
                    series=study.num_series,
                    images=study.num_instances,
                    reports=_reports(study),
                    actions=study_actions(study),
                ),
            )
            for study in studies
        ),
    )


@register.simple_tag
def patient_actions(patient, study_uids: list[str], review_link: bool = False) -> SafeString:
    """The buttons of one patient: review, web viewer with all studies, desktop viewer, zip."""
    viewer = "&".join(f"StudyInstanceUIDs={quote(uid, safe='')}" for uid in study_uids)
    return format_html(
        '<div class="actions">{}'
        '<a class="button small" href="/ohif/viewer?{}">Web viewer</a>'
        '<a class="button small" href="/weasis/launch/patient/{}">Desktop viewer</a>'
        '<a class="button small" href="/studies/patient/{}/download" download>Zip of all studies</a>'
        "</div>",
        format_html(
            '<a class="button small primary" href="/studies/patient/{}/">Review studies ›</a>',
            patient.pk,
        )
        if review_link
        else "",
        viewer,
        patient.pk,
        patient.pk,
    )


@register.simple_tag
def form_control(field) -> SafeString:
    """A form field's input or select, as its widget would render it, without a template per
    widget and per option (the query form's dozen widgets otherwise cost a fifth of the page)."""
    widget = field.field.widget
    attrs = {**widget.attrs, **field.build_widget_attrs({})}
    if field.errors:
        attrs["aria-invalid"] = "true"
    extra = format_html_join("", ' {}="{}"', sorted(attrs.items()))
    value = field.value()
    if hasattr(field.field, "choices"):
        chosen = "" if value is None else str(value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (key, " selected" if str(key) == chosen else "", label)
                for key, label in field.field.choices
            ),
        )
        return format_html(
            '<select name="{}" id="{}"{}>{}</select>',
            field.html_name,
            field.auto_id,
            extra,
            options,
        )
    shown = widget.format_value(value)
    return format_html(
        '<input type="{}" name="{}" id="{}"{}{}>',
        widget.input_type,
        field.html_name,
        field.auto_id,
        format_html(' value="{}"', shown) if shown not in (None, "") else "",
        extra,
    )
