import datetime

from django import forms
from django.utils import timezone


class BirthDateForm(forms.Form):
    birth_date = forms.DateField(
        label="Date of birth",
        input_formats=["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"],
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday"}),
    )


class ExtendForm(forms.Form):
    through = forms.DateField(
        label="Links work at least until the end of",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_through(self) -> datetime.date:
        through = self.cleaned_data["through"]
        if through < timezone.localdate():
            raise forms.ValidationError("Choose today or a later day.")
        return through
