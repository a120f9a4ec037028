"""Settings for pacsweb, configured entirely from the environment (django-environ).

The embedded default needs no configuration: SQLite, DICOM files and a generated secret key all
live under one data folder (``PACSWEB_DATA_DIR``, default ``./data``).
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()

DATA_DIR = Path(env.str("PACSWEB_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# DICOM files, under internally generated names only (see studies.storage).
STORAGE_DIR = DATA_DIR / "storage"
# Derived files that can always be rebuilt (thumbnails, the patched OHIF copy).
CACHE_DIR = DATA_DIR / "cache"
# Uploaded certificates, keys and reports: never under a folder that is served as static files.
PRIVATE_DIR = DATA_DIR / "private"
# The OHIF web viewer, installed by ``manage.py install_ohif`` (a patched copy of the npm dist).
OHIF_DIR = Path(env.str("PACSWEB_OHIF_DIR", default=str(DATA_DIR / "ohif"))).resolve()


def _secret_key() -> str:
    """Return SECRET_KEY from the environment, else one generated once and kept in the data folder."""
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(64))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "pacsweb",
    "accounts",
    "studies",
    "tokens",
    "worklist",
    "dicomweb",
    "dimse",
    "activity",
    "uploads",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Right after authentication: a user made inactive loses the session at the next request.
    "accounts.middleware.end_sessions_of_disabled_users",
    "accounts.middleware.refresh_sessions_in_use",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After sessions and authentication: it keeps the activity connection's last-seen time.
    "activity.middleware.activity_middleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "pacsweb.middleware.content_security_policy",
    # Axes must come last so that it sees the outcome of authentication.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pacsweb.urls"
WSGI_APPLICATION = "pacsweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "pacsweb.context_processors.server_setup",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'pacsweb.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE transactions plus a busy timeout make
    # concurrent writers (receiver processes, web uploads) wait for the lock instead of failing.
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # Opening a SQLite connection re-reads the schema and runs the pragmas: about 2 ms of every
    # request (a viewer's frame requests most of all) unless connections are kept between them.
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
else:
    raise ImproperlyConfigured(f"DATABASE_URL: unsupported database engine {_db['ENGINE']!r}")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    # Axes first: it refuses locked-out attempts before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend with a lean read of the session's user on every request.
    "accounts.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "studies:query"
LOGOUT_REDIRECT_URL = "landing"

# Sessions end after this many seconds without a request.
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_SECONDS", default=30 * 60)
# Not on every request: accounts.middleware.refresh_sessions_in_use writes a session in use
# once a minute, which keeps the idle timeout without a database write per request.
SESSION_SAVE_EVERY_REQUEST = False
# Database sessions, read per request with one lean query instead of a queryset.
SESSION_ENGINE = "accounts.sessions"
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True

# Web activity (connections and their events) older than this is deleted by prune_activity.
ACTIVITY_RETENTION_DAYS = env.int("ACTIVITY_RETENTION_DAYS", default=365)

# django-axes: lock a username and an address after repeated failures, for a cool-off period.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False
# Behind a reverse proxy, the client address is taken from X-Forwarded-For, counting this many
# trusted proxies from the right; 0 (the default) ignores the header, so it cannot be forged.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "pacsweb.lib.client_address.client_address"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Upper bounds for everything a client can send.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=4 * 1024**3)
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("UPLOAD_MAX_FILES", default=5000)
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
(DATA_DIR / "tmp").mkdir(exist_ok=True)
ZIP_MAX_MEMBERS = env.int("ZIP_MAX_MEMBERS", default=100_000)
ZIP_MAX_TOTAL_BYTES = env.int("ZIP_MAX_TOTAL_BYTES", default=16 * 1024**3)
ZIP_MAX_RATIO = env.int("ZIP_MAX_RATIO", default=100)
# HL7 intake (worklist): a file, one message within it, and the segments of one message.
HL7_MAX_FILE_BYTES = env.int("HL7_MAX_FILE_BYTES", default=10 * 1024**2)
HL7_MAX_MESSAGE_BYTES = env.int("HL7_MAX_MESSAGE_BYTES", default=1024**2)
HL7_MAX_SEGMENTS = env.int("HL7_MAX_SEGMENTS", default=500)

# The internet address shown in the server setup when it cannot be detected (or to override it).
PUBLIC_IP = env.str("PACSWEB_PUBLIC_IP", default="")

# Patient-link tokens are derived from this key (tokens.derivation), which must stay outside the
# database so that a copy of the database alone yields no working link. Set PACSWEB_TOKEN_KEY (or
# PACSWEB_TOKEN_KEY_FILE), else a key is generated once in TOKEN_KEY_FILE. Changing it changes
# every link.
TOKEN_KEY = env.str("PACSWEB_TOKEN_KEY", default="")
TOKEN_KEY_FILE = DATA_DIR / "token_key"

SECURE_CONTENT_TYPE_NOSNIFF = True
# Patient links carry their token in the URL: no page may leak it in a Referer header to another
# site. "same-origin" rather than "no-referrer", because under "no-referrer" browsers send
# "Origin: null" with form posts, which Django's CSRF check (rightly) refuses.
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# PACSWEB_SSL is set by deploy/gunicorn.conf.py from the server setup's SSL switch;
# PACSWEB_BEHIND_TLS_PROXY by sites whose reverse proxy terminates TLS (deploy/README.md).
SSL = env.bool("PACSWEB_SSL", default=False)
if env.bool("PACSWEB_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SSL = True
if SSL:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Joining the browsers' HSTS preload list is a separate, hard-to-undo decision for the site's
    # owner, so pacsweb does not send the preload flag and silences the check that asks for it.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # Patient links carry their token in the URL: no log line may show it.
    "filters": {"mask_tokens": {"()": "pacsweb.lib.log_masking.MaskPatientTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The development server's request lines go through the masked console too.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # pynetdicom logs every PDU at INFO; keep its association summaries only.
        "pynetdicom": {"level": "WARNING"},
    },
}

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Tests that run the receiver or the web server as a subprocess need the test database in a
    # file that the subprocess can open, not in memory.
    _db.setdefault("TEST", {}).setdefault("NAME", str(DATA_DIR / "test.sqlite3"))
