"""Fully qualified patient links: ``http(s)://HOST[:PORT]/token?TOKEN``.

A link built for a request uses the address that request came in on. A link built without one
(the ``study_token`` command, printed handouts, the admin's list) uses the server setup: HOST is
the web server name or, when that is blank, the detected internet IP address (``PUBLIC_IP`` in
the environment when none was detected); the scheme follows the SSL switch; the port is the web
port, left out when it is the scheme's default.
"""

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from pacsweb.models import ServerSetup

DEFAULT_PORTS = {"http": 80, "https": 443}


class LinkAddressUnknown(Exception):
    """The server setup does not say under which address patients reach this server."""


def link_from_request(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(f"{reverse('tokens:patient_page')}?{token}")


def link_from_setup(setup: ServerSetup, token: str) -> str:
    """Raises LinkAddressUnknown when the setup names no host or disables the web module."""
    return f"{public_base_url(setup)}{reverse('tokens:patient_page')}?{token}"


def public_base_url(setup: ServerSetup) -> str:
    host = setup.web_server_name.strip() or setup.public_ip.strip() or settings.PUBLIC_IP.strip()
    if not host:
        raise LinkAddressUnknown(
            "the HTTP server setup has no web server name and no internet IP address: "
            "set the web server name in the admin"
        )
    if setup.web_port == 0:
        raise LinkAddressUnknown("the web module is disabled (web port 0 in the HTTP server setup)")
    if ":" in host and not host.startswith("["):
        # An IPv6 address must be bracketed before a port can follow it (RFC 3986, 3.2.2).
        host = f"[{host}]"
    scheme = "https" if setup.ssl_enabled else "http"
    if setup.web_port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{setup.web_port}"


def link_for_patients(request: HttpRequest, setup: ServerSetup, token: str) -> str:
    """The link to hand to a patient from a staff page: the public address when the setup has one.

    A front desk or an admin often reaches the server on a local address that would not work
    from the patient's home, so the setup's public address wins; the request's address is the
    fallback when the setup names none.
    """
    try:
        return link_from_setup(setup, token)
    except LinkAddressUnknown:
        return link_from_request(request, token)
