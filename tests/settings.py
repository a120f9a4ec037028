"""Settings for the test suite: pacsweb's own, on a data folder of the test run's own.

PACSWEB_TEST_DATA_DIR is created once per run and inherited by the processes the tests start
(the receiver, gunicorn, xdist workers), so they all share the run's folder and never the real one.
"""

import os
import tempfile

os.environ.setdefault("PACSWEB_TEST_DATA_DIR", tempfile.mkdtemp(prefix="pacsweb-test-"))
os.environ["PACSWEB_DATA_DIR"] = os.environ["PACSWEB_TEST_DATA_DIR"]
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")

from pacsweb.settings import *  # noqa: E402, F403 - the test settings are the real ones.

# Pages are rendered without a collectstatic run, here and in the servers the tests start.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Fast hashing: the suite creates many users, and the servers it starts check their passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# whitenoise serves STATIC_ROOT and warns, for every request, when the folder does not exist.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
