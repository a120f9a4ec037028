"""Real external tools that tests drive (dcmtk, Chromium): never silently skipped in CI."""

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def require_tool(name: str) -> str:
    """Return the path of the command ``name``; skip the test locally if it is missing.

    With ``PACSWEB_REQUIRE_TOOLS=1`` (set by .ci/run) a missing tool fails the test instead, so
    CI can never pass by skipping what it was meant to exercise.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install dcmtk / chromium)"
    if os.environ.get("PACSWEB_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
