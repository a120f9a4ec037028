"""Template filters that show DICOM values the way people read them (always auto-escaped)."""

from django import template

from pacsweb.lib.person_names import display_person_name

register = template.Library()


@register.filter
def person_name(value: str) -> str:
    """``DOE^JOHN`` -> ``DOE, JOHN``."""
    return display_person_name(value or "")
