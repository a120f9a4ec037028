"""The client's address, taking a configured number of trusted reverse proxies into account."""

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """Return the address of the client that made ``request``.

    With ``TRUSTED_PROXY_COUNT = n``, the n-th address from the right of ``X-Forwarded-For`` is the
    client: every proxy appends the address it received from, so entries left of that point are
    whatever the client chose to send and are ignored. With 0, the header is ignored entirely.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    if len(forwarded) < count:
        return remote
    return forwarded[-count]
