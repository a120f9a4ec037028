"""tokens.links: fully qualified links from the server setup and from a request."""

import pytest
from django.test import RequestFactory

from pacsweb.models import ServerSetup
from tokens.links import LinkAddressUnknown, link_for_patients, link_from_request, link_from_setup

TOKEN = "T" * 64


def _setup(**fields) -> ServerSetup:
    values = {"web_server_name": "", "public_ip": "", "web_port": 8080, "ssl_enabled": False}
    values.update(fields)
    return ServerSetup(**values)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"web_server_name": "pacs.example.org"}, f"http://pacs.example.org:8080/token?{TOKEN}"),
        (
            {"web_server_name": "pacs.example.org", "ssl_enabled": True, "web_port": 8443},
            f"https://pacs.example.org:8443/token?{TOKEN}",
        ),
        (
            {"web_server_name": "pacs.example.org", "ssl_enabled": True, "web_port": 443},
            f"https://pacs.example.org/token?{TOKEN}",
        ),
        (
            {"web_server_name": "pacs.example.org", "web_port": 80},
            f"http://pacs.example.org/token?{TOKEN}",
        ),
        # A default port of the other scheme is not a default here.
        (
            {"web_server_name": "pacs.example.org", "ssl_enabled": True, "web_port": 80},
            f"https://pacs.example.org:80/token?{TOKEN}",
        ),
        ({"public_ip": "203.0.113.7"}, f"http://203.0.113.7:8080/token?{TOKEN}"),
        (
            {"public_ip": "2001:db8::7", "ssl_enabled": True},
            f"https://[2001:db8::7]:8080/token?{TOKEN}",
        ),
        (
            {"web_server_name": "pacs.example.org", "public_ip": "203.0.113.7"},
            f"http://pacs.example.org:8080/token?{TOKEN}",
        ),
    ],
)
def test_link_from_setup(fields, expected):
    assert link_from_setup(_setup(**fields), TOKEN) == expected


def test_ip_from_the_environment_when_none_was_detected(settings):
    settings.PUBLIC_IP = "198.51.100.9"
    assert link_from_setup(_setup(), TOKEN) == f"http://198.51.100.9:8080/token?{TOKEN}"


def test_no_address_at_all_is_an_error(settings):
    settings.PUBLIC_IP = ""
    with pytest.raises(LinkAddressUnknown, match="web server name"):
        link_from_setup(_setup(), TOKEN)


def test_disabled_web_module_is_an_error():
    with pytest.raises(LinkAddressUnknown, match="disabled"):
        link_from_setup(_setup(web_server_name="pacs.example.org", web_port=0), TOKEN)


def test_link_from_request_uses_the_address_it_came_in_on():
    request = RequestFactory().get("/", HTTP_HOST="10.0.0.5:8000")
    assert link_from_request(request, TOKEN) == f"http://10.0.0.5:8000/token?{TOKEN}"
    secure = RequestFactory().get("/", HTTP_HOST="pacs.example.org", secure=True)
    assert link_from_request(secure, TOKEN) == f"https://pacs.example.org/token?{TOKEN}"


def test_link_for_patients_prefers_the_public_address(settings):
    settings.PUBLIC_IP = ""
    request = RequestFactory().get("/", HTTP_HOST="10.0.0.5:8000")
    public = _setup(web_server_name="pacs.example.org")
    assert (
        link_for_patients(request, public, TOKEN) == f"http://pacs.example.org:8080/token?{TOKEN}"
    )
    assert link_for_patients(request, _setup(), TOKEN) == f"http://10.0.0.5:8000/token?{TOKEN}"
