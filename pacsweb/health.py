"""The server's health, for the /health endpoint and monitors."""

import shutil
import tempfile

from django.conf import settings
from django.db import connection

# Below this much free space in the storage folder the server reports itself unhealthy, well
# before a C-STORE or upload would fail for lack of space.
MIN_FREE_BYTES = 1024**3


def system_health() -> dict:
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised.
        checks["database"] = f"error: {exc.__class__.__name__}"
    storage = settings.STORAGE_DIR
    try:
        storage.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=storage, prefix=".health-"):
            pass
        checks["storage"] = "ok"
    except OSError as exc:
        checks["storage"] = f"error: {exc.strerror}"
    free = shutil.disk_usage(storage).free if storage.exists() else 0
    checks["free_bytes"] = free
    checks["disk"] = "ok" if free >= MIN_FREE_BYTES else "low"
    ok = checks["database"] == "ok" and checks["storage"] == "ok" and checks["disk"] == "ok"
    return {"ok": ok, **checks}
