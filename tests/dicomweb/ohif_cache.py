"""The OHIF viewer installed once for the whole test suite (and for every later run).

Installing downloads 47 MB from the npm registry and patches 200 MB, so the tests share one
install under ``<repo>/.cache/`` (git-ignored), made by the real ``dicomweb.ohif.install``. A file
lock keeps parallel test workers from installing it twice.
"""

import fcntl
from pathlib import Path

from django.conf import settings

from dicomweb import ohif

CACHE = Path(settings.BASE_DIR) / ".cache" / f"ohif-{ohif.VERSION}"


def installed_ohif() -> Path:
    """The install root (for settings.OHIF_DIR), installing it first if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ohif.is_installed(CACHE):
            ohif.install(root=CACHE, progress=lambda _message: None)
    return CACHE
