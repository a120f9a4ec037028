"""Keeps each recorded connection's last-seen time and bytes sent up to date."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from activity.services import connection_touch


def activity_middleware(get_response: Callable[[HttpRequest], HttpResponseBase]):
    """After every response of a session that has a connection, count the page and touch it.

    Placed after the session and authentication middleware, so that what it keeps in the session
    is saved with it. Sessions without a connection (anonymous visitors) cost nothing.
    """

    def middleware(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        connection_touch(request, response)
        return response

    return middleware
