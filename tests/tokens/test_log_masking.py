"""Tokens never reach a log line (pacsweb.lib.log_masking and its place in settings.LOGGING)."""

import io
import logging

from pacsweb.lib.log_masking import MASK, MaskPatientTokens, mask_tokens

TOKEN = "4m5RHabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"


def _handler() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskPatientTokens())
    return handler, stream


def test_request_line_with_arguments_is_masked():
    handler, stream = _handler()
    logger = logging.getLogger("tests.tokens.masking")
    logger.addHandler(handler)
    try:
        logger.warning('"%s" %s %s', f"GET /token?{TOKEN} HTTP/1.1", 200, 5120)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f'"GET /token?{MASK} HTTP/1.1" 200 5120\n'


def test_encoded_and_embedded_tokens_are_masked():
    assert TOKEN not in mask_tokens(f"next=/token%3F{TOKEN}&x=1")
    assert TOKEN not in mask_tokens(f"https://pacs.example.org:8443/token?{TOKEN}")
    assert mask_tokens(f"/token?{TOKEN}&fbclid=1") == f"/token?{MASK}&fbclid=1"


def test_other_lines_are_untouched():
    assert mask_tokens("GET /token/zip HTTP/1.1") == "GET /token/zip HTTP/1.1"
    assert mask_tokens("GET /studies/?q=1") == "GET /studies/?q=1"


def test_a_broken_log_call_passes_through_to_loggings_own_error_handling():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s %s", ("only one",), None)
    assert MaskPatientTokens().filter(record) is True


def test_console_and_development_server_logs_are_masked():
    # Django's development server logs its request lines on "django.server".
    for name in ("", "django.server"):
        # pytest adds capturing handlers of its own to the root logger; the configured ones remain.
        handlers = [
            h
            for h in logging.getLogger(name).handlers
            if not type(h).__module__.startswith("_pytest")
        ]
        assert handlers, name
        assert all(
            any(isinstance(f, MaskPatientTokens) for f in handler.filters) for handler in handlers
        ), name
