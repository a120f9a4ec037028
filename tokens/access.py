"""What a patient's session may reach: the one study of the link it opened, while that link works.

A valid visit to ``/token?TOKEN`` (after the birth-date check, when the setup asks for one)
grants the session that link. Every later request re-checks the link in the database, so a
revoked, expired or regenerated link stops its sessions at once, not when they end. The session
keeps the row's id and the token's digest, never the token.
"""

from django.http import Http404, HttpRequest

from pacsweb.lib.rows import row_by_pk
from pacsweb.models import ServerSetup
from tokens.models import StudyToken
from tokens.selectors import token_from_grant
from tokens.window import LinkState

SESSION_KEY = "patient_link"


def grant(request: HttpRequest, token: StudyToken, *, birth_date_checked: bool) -> None:
    """Let this session reach the link's study from now on (while the link works)."""
    granted = {
        "token_id": token.pk,
        "digest": token.digest,
        "birth_date_checked": birth_date_checked,
    }
    if request.session.get(SESSION_KEY) == granted:
        return
    # A new session key whenever the session gains access, as at a login, so that a session id
    # planted in the patient's browser beforehand is worth nothing.
    request.session.cycle_key()
    request.session[SESSION_KEY] = granted


def has_birth_date_check(request: HttpRequest, token: StudyToken) -> bool:
    """Whether this session already answered the birth-date question for this link."""
    granted = request.session.get(SESSION_KEY)
    return (
        isinstance(granted, dict)
        and granted.get("token_id") == token.pk
        and granted.get("digest") == token.digest
        and granted.get("birth_date_checked") is True
    )


def granted_token(request: HttpRequest) -> StudyToken | None:
    """The session's link with its study and patient, if it still works; else None."""
    granted = request.session.get(SESSION_KEY)
    if not isinstance(granted, dict):
        return None
    # The setup's one row (pk 1, as ServerSetup.get), read without a queryset: this runs on
    # every request of a patient's session.
    setup = row_by_pk(ServerSetup, 1) or ServerSetup.get()
    visit = token_from_grant(
        token_id=granted.get("token_id"), digest=granted.get("digest"), setup=setup
    )
    if visit.state is not LinkState.ACTIVE:
        return None
    if needs_birth_date(setup, visit.token) and granted.get("birth_date_checked") is not True:
        return None
    return visit.token


def granted_study_uid(request: HttpRequest) -> str | None:
    """The Study Instance UID this patient session may see, or None. Checked anew on every call."""
    token = granted_token(request)
    return token.study.study_uid if token is not None else None


def granted_token_or_404(request: HttpRequest) -> StudyToken:
    token = granted_token(request)
    if token is None:
        raise Http404
    return token


def needs_birth_date(setup: ServerSetup, token: StudyToken) -> bool:
    """Whether opening this link asks for the birth date first.

    A patient without a birth date on file cannot be asked for it, so the link opens as if the
    check were off; the alternative would be a link that nobody can ever open.
    """
    return setup.patient_link_asks_birth_date and token.study.patient.birth_date is not None
