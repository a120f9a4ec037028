"""Ending the session of a user who may no longer use it."""

from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse


def end_sessions_of_disabled_users(get_response: Callable[[HttpRequest], HttpResponse]):
    """Flush a logged-in session whose user is gone or was made inactive since it logged in.

    Django's ``ModelBackend`` already treats such a session as anonymous; flushing it also
    deletes it on the server, so re-activating the user does not bring the old session back.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if SESSION_KEY in request.session and not request.user.is_authenticated:
            request.session.flush()
        return get_response(request)

    return middleware
