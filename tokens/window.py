"""When a patient link works: its accessibility window, and the state of a link at an instant.

The rule, in the server's time zone (``TIME_ZONE``):

- A link opens at 00:00 on the study date. A study without a study date uses the day it was
  received (``Study.received_at``).
- With an accessibility period of N days (``ServerSetup.access_period_days``) it works through the
  study day and the N days after it: from 00:00 on the study date to 23:59:59.999999 on
  study date + N, and stops at 00:00 of the day after. A period of 0 means it never stops.
- An admin's extension (``StudyToken.extended_through``) moves the last day later, never earlier.
- A revoked link never works, whatever the dates.
"""

import datetime
from dataclasses import dataclass
from enum import StrEnum

from django.utils import timezone


class LinkState(StrEnum):
    ACTIVE = "active"
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class AccessWindow:
    first_day: datetime.date
    # None: the link never expires.
    last_day: datetime.date | None

    def opens_at(self) -> datetime.datetime:
        return _midnight(self.first_day)

    def closes_at(self) -> datetime.datetime | None:
        """The first instant at which the link no longer works (None: never)."""
        if self.last_day is None:
            return None
        return _midnight(self.last_day + datetime.timedelta(days=1))

    def state_at(self, at: datetime.datetime) -> LinkState:
        if at < self.opens_at():
            return LinkState.NOT_YET_VALID
        closes = self.closes_at()
        if closes is not None and at >= closes:
            return LinkState.EXPIRED
        return LinkState.ACTIVE


def access_window(
    *,
    study_date: datetime.date | None,
    received_at: datetime.datetime,
    period_days: int,
    extended_through: datetime.date | None,
) -> AccessWindow:
    first = study_date or timezone.localdate(received_at)
    if period_days <= 0:
        return AccessWindow(first, None)
    last = first + datetime.timedelta(days=period_days)
    if extended_through is not None and extended_through > last:
        last = extended_through
    return AccessWindow(first, last)


def link_state(
    *, window: AccessWindow, revoked: bool, at: datetime.datetime | None = None
) -> LinkState:
    if revoked:
        return LinkState.REVOKED
    return window.state_at(at or timezone.now())


def _midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_default_timezone())
