"""A logging filter that keeps patient-link tokens out of every log line.

Patient links carry their token as the query string (``/token?TOKEN``); whoever reads a log must
not be able to open a patient's study with what they read. Attach ``MaskPatientTokens`` to a
handler (settings.LOGGING does so for the console, which also carries Django's development
server's request lines) or to gunicorn's access logger.
"""

import logging
import re

# "/token?" or its URL-encoded form (inside a next= parameter, say), then the token up to a
# separator. Anything after it, such as a tracking parameter, is kept.
TOKEN_IN_URL = re.compile(r"(/token(?:\?|%3F))[^\s\"'&<>]+", re.IGNORECASE)
MASK = "[token hidden]"


def mask_tokens(text: str) -> str:
    return TOKEN_IN_URL.sub(rf"\g<1>{MASK}", text)


class MaskPatientTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed call is logging's own error to report; this filter leaves it alone.
            return True
        masked = mask_tokens(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
