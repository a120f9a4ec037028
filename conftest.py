"""Test session set-up that must happen before Django reads its settings."""

import os
import tempfile

# Tests never touch the real data folder: each run gets its own.
os.environ["PACSWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="pacsweb-test-")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
