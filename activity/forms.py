from django import forms

from activity.models import Connection, Event
from activity.selectors import ReportFilters


class ReportFilterForm(forms.Form):
    """The HTTP Server Report's filters (a GET form: the page's address is the query)."""

    user = forms.CharField(required=False, max_length=150, label="User")
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    kind = forms.ChoiceField(
        required=False, label="Connection", choices=[("", "Any")] + Connection.Kind.choices
    )
    action = forms.ChoiceField(
        required=False, label="Action", choices=[("", "Any")] + Event.Kind.choices
    )
    address = forms.CharField(required=False, max_length=45, label="Address starts with")
    patient = forms.CharField(required=False, max_length=324, label="Patient name")
    study = forms.CharField(required=False, max_length=64, label="Study Instance UID")

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The first day comes after the last day.")
        return data

    def filters(self) -> ReportFilters:
        """The validated filters; call only after ``is_valid()`` returned True."""
        data = {name: value for name, value in self.cleaned_data.items() if value}
        for name in ("user", "address", "patient", "study"):
            if name in data:
                data[name] = data[name].strip()
        return ReportFilters(**data)


class ExportForm(ReportFilterForm):
    """The CSV export: the report's filters, over a date range that must be given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["date_from"].required = True
        self.fields["date_to"].required = True
