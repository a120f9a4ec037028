"""The physicians' query form, turned into the one search path's ``StudyQuery``."""

import datetime

from django import forms

from studies.selectors import StudyQuery

DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y"]

# Defined terms of Modality (PS3.3 C.7.3.1.1.1) that clinics meet most.
MODALITIES = [
    ("CT", "CT"),
    ("MR", "MR"),
    ("CR", "CR (computed radiography)"),
    ("DX", "DX (digital radiography)"),
    ("US", "US (ultrasound)"),
    ("MG", "MG (mammography)"),
    ("XA", "XA (angiography)"),
    ("RF", "RF (fluoroscopy)"),
    ("NM", "NM (nuclear medicine)"),
    ("PT", "PT (PET)"),
    ("OT", "OT (other)"),
    ("SC", "SC (secondary capture)"),
    ("SR", "SR (structured report)"),
    ("ES", "ES (endoscopy)"),
    ("OP", "OP (ophthalmic)"),
    ("IO", "IO (intra-oral)"),
    ("PX", "PX (panoramic)"),
]


class DateRange:
    """The "Search" choice: which study dates a search covers (the seed's "With Study Date")."""

    ALL = "all"
    WITH_DATE = "dated"
    TODAY = "today"
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    CHOICES = [
        (ALL, "All studies"),
        (WITH_DATE, "With Study Date"),
        (TODAY, "Today"),
        (YESTERDAY, "Yesterday"),
        (LAST_7_DAYS, "Last 7 days"),
        (LAST_30_DAYS, "Last 30 days"),
    ]


def _date_field(label: str) -> forms.DateField:
    return forms.DateField(
        label=label,
        required=False,
        input_formats=DATE_FORMATS,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )


def _text_field(label: str, max_length: int, **attrs: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=max_length,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", **attrs}),
    )


class QueryForm(forms.Form):
    """Every field is optional; text fields take DICOM wildcards (``*``, ``?``)."""

    patient_name = _text_field("Patient name", 64, placeholder="e.g. doe* or muller")
    patient_id = _text_field("Patient ID", 64)
    sex = forms.ChoiceField(
        label="Sex",
        required=False,
        choices=[("", "Any"), ("F", "Female"), ("M", "Male"), ("O", "Other")],
    )
    birth_date = _date_field("Birth date")
    modality = forms.ChoiceField(
        label="Modality", required=False, choices=[("", "Any"), *MODALITIES]
    )
    # The "Search" choice sits just before the study dates it switches on.
    search = forms.ChoiceField(label="Search", required=False, choices=DateRange.CHOICES)
    date_from = _date_field("Study date from")
    date_to = _date_field("Study date to")
    accession_number = _text_field("Accession number", 64)
    institution = _text_field("Institution", 64)
    referring_physician = _text_field("Referring physician", 64)

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if data.get("search") == DateRange.WITH_DATE:
            if not (start or end):
                self.add_error("date_from", "Give a study date, or choose another kind of search.")
            elif start and end and start > end:
                self.add_error("date_to", "The end date is before the start date.")
        return data

    def dates_ignored(self) -> bool:
        """Whether study dates were entered but the "Search" choice does not use them."""
        data = self.cleaned_data
        entered = bool(data.get("date_from") or data.get("date_to"))
        return entered and data.get("search") != DateRange.WITH_DATE

    def study_date_range(self, today: datetime.date) -> str:
        """The study date matching key (DICOM range syntax) for the "Search" choice."""
        data = self.cleaned_data
        choice = data.get("search") or DateRange.ALL
        start = end = None
        if choice == DateRange.WITH_DATE:
            start, end = data.get("date_from"), data.get("date_to")
        elif choice == DateRange.TODAY:
            start = end = today
        elif choice == DateRange.YESTERDAY:
            start = end = today - datetime.timedelta(days=1)
        elif choice == DateRange.LAST_7_DAYS:
            start, end = today - datetime.timedelta(days=6), today
        elif choice == DateRange.LAST_30_DAYS:
            start, end = today - datetime.timedelta(days=29), today
        if not (start or end):
            return ""
        start_text = f"{start:%Y%m%d}" if start else ""
        end_text = f"{end:%Y%m%d}" if end else ""
        return f"{start_text}-{end_text}"

    def to_query(self, today: datetime.date) -> StudyQuery:
        data = self.cleaned_data
        birth = data.get("birth_date")
        return StudyQuery(
            patient_name=data.get("patient_name", ""),
            patient_id=data.get("patient_id", ""),
            sex=data.get("sex", ""),
            birth_date=f"{birth:%Y%m%d}" if birth else "",
            study_date=self.study_date_range(today),
            accession_number=data.get("accession_number", ""),
            institution=data.get("institution", ""),
            referring_physician=data.get("referring_physician", ""),
            modalities=[data["modality"]] if data.get("modality") else [],
        )

    def summary(self) -> str:
        """The filled-in fields in a line, as the folded form shows them on a phone."""
        parts = []
        for name, value in self.criteria().items():
            field = self.fields[name]
            if isinstance(field, forms.ChoiceField):
                value = dict(field.choices).get(value, value)
            parts.append(f"{field.label}: {value}")
        return " · ".join(parts)

    def criteria(self) -> dict[str, str]:
        """The filled-in fields as text, for the activity log."""
        return {
            name: str(value)
            for name, value in self.cleaned_data.items()
            if value not in (None, "") and not (name == "search" and value == DateRange.ALL)
        }


class ReportForm(forms.Form):
    """The upload of a report; whether it is a PDF is for ``study_report_attach`` to say."""

    file = forms.FileField(label="PDF report")
