"""Template filters that show DICOM values the way people read them (always auto-escaped)."""

from django import template

from pacsweb.lib.person_names import display_person_name

register = template.Library()


@register.filter
def person_name(value: str) -> str:
    """``DOE^JOHN`` -> ``DOE, JOHN``."""
    return display_person_name(value or "")


@register.filter
def sex_label(value: str) -> str:
    return {"F": "Female", "M": "Male", "O": "Other"}.get((value or "").upper(), value or "")
