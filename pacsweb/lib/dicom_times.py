"""DICOM TM values (``HHMMSS.FFFFFF``) and ranges (``A-B``, ``A-``, ``-B``), PS3.4 C.2.2.2.5."""

import datetime
import re

TM_PATTERN = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_tm(value: str, *, end: bool = False) -> datetime.time | None:
    """Parse a TM value, or None if it is not one; accepts the old ``HH:MM:SS`` form.

    A value names a span as long as its precision: ``1800`` is the minute 18:00. With
    ``end=True`` the last instant of that span is returned, so that a range ``-1800`` includes
    18:00:30.
    """
    match = TM_PATTERN.match(value.strip().replace(":", ""))
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    if end:
        micro = int(fraction.ljust(6, "9")) if fraction else 999_999
        parts = (hour, minute or "59", second or "59")
    else:
        micro = int(fraction.ljust(6, "0")) if fraction else 0
        parts = (hour, minute or "00", second or "00")
    try:
        return datetime.time(int(parts[0]), int(parts[1]), int(parts[2]), micro)
    except ValueError:
        return None


def parse_tm_range(value: str) -> tuple[datetime.time | None, datetime.time | None]:
    """Parse a time or a time range into (first, last), either end open (None).

    A single value is the span of its precision. Raises ValueError for text that is neither.
    """
    value = value.strip()
    if "-" in value:
        start_text, _, end_text = value.partition("-")
        start = parse_tm(start_text) if start_text.strip() else None
        last = parse_tm(end_text, end=True) if end_text.strip() else None
        if (start_text.strip() and start is None) or (end_text.strip() and last is None):
            raise ValueError(f"not a DICOM time range: {value!r}")
        if start is None and last is None:
            raise ValueError(f"not a DICOM time range: {value!r}")
        return start, last
    start, last = parse_tm(value), parse_tm(value, end=True)
    if start is None or last is None:
        raise ValueError(f"not a DICOM time: {value!r}")
    return start, last
