"""The server's address on the network, as shown in the server setup and used in patient links."""

import socket

from django.conf import settings

# Well-known internet addresses (public DNS resolvers), so the default route is the one chosen;
# documentation ranges could sit on a local network. Connecting a UDP socket sends nothing: it only
# makes the kernel pick the route, and thus the local address, that traffic would leave from.
_PROBES = ((socket.AF_INET, "8.8.8.8"), (socket.AF_INET6, "2001:4860:4860::8888"))


def outbound_address() -> str:
    """The local address of the route to the internet, or "" when there is none.

    Behind NAT this is the private address of the machine; the public one cannot be known
    without asking a server outside, which pacsweb does not do: set ``PACSWEB_PUBLIC_IP`` then.
    """
    for family, probe in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                address = sock.getsockname()[0]
        except OSError:
            continue
        if address and address not in ("0.0.0.0", "::"):  # noqa: S104 - compared, not bound.
            return address
    return ""


def public_address() -> str:
    """``settings.PUBLIC_IP`` (the ``PACSWEB_PUBLIC_IP`` environment variable) or the detected one."""
    return settings.PUBLIC_IP.strip() or outbound_address()
