"""DICOM DA values (``YYYYMMDD``) and ranges (``A-B``, ``A-``, ``-B``), PS3.4 C.2.2.2.5."""

import datetime


def parse_da(value: str) -> datetime.date | None:
    """Parse a DA value; also accepts the old ``YYYY.MM.DD`` form and ISO dashes. None if invalid."""
    value = value.strip().replace(".", "").replace("-", "")
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def parse_da_range(value: str) -> tuple[datetime.date | None, datetime.date | None]:
    """Parse a date or a date range into (first, last), either end open (None).

    Raises ValueError for text that is neither, so that a bad query is reported, not ignored.
    """
    value = value.strip()
    if "-" in value and not _is_iso_date(value):
        start_text, _, end_text = value.partition("-")
        start = parse_da(start_text) if start_text.strip() else None
        end = parse_da(end_text) if end_text.strip() else None
        if (start_text.strip() and start is None) or (end_text.strip() and end is None):
            raise ValueError(f"not a DICOM date range: {value!r}")
        if start is None and end is None:
            raise ValueError(f"not a DICOM date range: {value!r}")
        return start, end
    day = parse_da(value)
    if day is None:
        raise ValueError(f"not a DICOM date: {value!r}")
    return day, day


def _is_iso_date(value: str) -> bool:
    parts = value.split("-")
    return len(parts) == 3 and [len(p) for p in parts] == [4, 2, 2]
