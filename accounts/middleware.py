"""Ending the session of a user who may no longer use it."""

import time
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


# How often a session in use is written back, to push its idle expiry forward.
SESSION_REFRESH_SECONDS = 60
SESSION_REFRESHED_KEY = "refreshed_at"


def refresh_sessions_in_use(get_response: Callable[[HttpRequest], HttpResponse]):
    """Keep a session alive while it is used, writing it at most once a minute.

    Sessions expire SESSION_COOKIE_AGE after their last write. Writing them on every request
    (SESSION_SAVE_EVERY_REQUEST) would cost a database write per page, frame and thumbnail; once
    a minute moves the idle timeout forward just as well, give or take that minute.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        session = request.session
        if not session.is_empty():
            now = time.time()
            if now - session.get(SESSION_REFRESHED_KEY, 0) >= SESSION_REFRESH_SECONDS:
                session[SESSION_REFRESHED_KEY] = now
        return get_response(request)

    return middleware
