"""Reads of patient links: resolve a visit's token, a link's window, the throttles, link usage."""

import datetime
from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.utils import timezone

from activity.models import Connection, Event
from pacsweb.lib.rows import row_by_pk
from pacsweb.models import ServerSetup
from studies.models import Patient, Study
from tokens.derivation import is_well_formed, token_digest
from tokens.models import FailureCounter, StudyLink, StudyToken
from tokens.window import AccessWindow, LinkState, access_window, link_state

# Wrong tokens from one address, and wrong birth dates for one link, within this window.
FAILURE_WINDOW = datetime.timedelta(minutes=15)
ADDRESS_FAILURE_LIMIT = 10
BIRTH_DATE_FAILURE_LIMIT = 5


@dataclass(frozen=True)
class Visit:
    """What a token opens: nothing (``token`` None), or a study's link in some state."""

    token: StudyToken | None = None
    window: AccessWindow | None = None
    state: LinkState | None = None


def token_window(token: StudyToken, setup: ServerSetup) -> AccessWindow:
    return access_window(
        study_date=token.study.study_date,
        received_at=token.study.received_at,
        period_days=setup.access_period_days,
        extended_through=token.extended_through,
    )


def token_lookup(text: str, *, setup: ServerSetup) -> Visit:
    """Resolve the text of a patient link's query string by its digest (no string comparison)."""
    if not is_well_formed(text):
        return Visit()
    token = (
        StudyToken.objects.select_related("study__patient")
        .filter(digest=token_digest(text))
        .first()
    )
    return _visit(token, setup)


def token_from_grant(*, token_id: object, digest: object, setup: ServerSetup) -> Visit:
    """The link a session was granted, in its state now (it may since be revoked or replaced).

    Run on every request of a patient's session (each frame a viewer fetches), so its three rows
    are read by primary key without building querysets.
    """
    if not isinstance(token_id, int) or not isinstance(digest, str):
        return Visit()
    token = row_by_pk(StudyToken, token_id)
    if token is None or token.digest != digest:
        return Visit()
    study = row_by_pk(Study, token.study_id)
    patient = row_by_pk(Patient, study.patient_id) if study is not None else None
    if patient is None:
        # The study was deleted since the token row was read.
        return Visit()
    study.patient = patient
    token.study = study
    return _visit(token, setup)


def _visit(token: StudyToken | None, setup: ServerSetup) -> Visit:
    if token is None:
        return Visit()
    window = token_window(token, setup)
    return Visit(token, window, link_state(window=window, revoked=token.revoked_at is not None))


def blocked_until(*, key: str, limit: int) -> datetime.datetime | None:
    """When ``key`` may try again, if it has reached ``limit`` failures in the current window."""
    counter = FailureCounter.objects.filter(
        key=key, window_started_at__gt=timezone.now() - FAILURE_WINDOW, failures__gte=limit
    ).first()
    return counter.window_started_at + FAILURE_WINDOW if counter else None


def study_links(setup: ServerSetup) -> QuerySet[StudyLink]:
    """Studies with their link, the setup's period and when a patient last used it, in one query.

    The period rides along as a column so that each row's window is computed without another
    query per row.
    """
    last_used = (
        Event.objects.filter(
            study_uid=OuterRef("study_uid"), connection__kind=Connection.Kind.TOKEN
        )
        .order_by("-at")
        .values("at")[:1]
    )
    return StudyLink.objects.select_related("patient", "patient_token").annotate(
        link_last_used=Subquery(last_used), link_period_days=Value(setup.access_period_days)
    )


def link_usage(study_uid: str, *, limit: int = 50) -> QuerySet[Event]:
    """The most recent patient uses of a study's link (pages, downloads, viewers) and from where."""
    return (
        Event.objects.filter(study_uid=study_uid, connection__kind=Connection.Kind.TOKEN)
        .select_related("connection")
        .order_by("-at")[:limit]
    )
