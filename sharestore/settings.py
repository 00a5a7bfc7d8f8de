"""Settings for sharestore, read from environment variables with safe defaults.

| variable | default | meaning |
|---|---|---|
| DATABASE_URL | sqlite:///var/sharestore.sqlite3 (relative to the checkout) | sqlite:///rel/path, sqlite:////abs/path or postgres://user:pw@host:port/db |
| SHARESTORE_DATA_DIR | <repo>/var/data | where demo pools, backup points and the demo import root live |
| SHARESTORE_IMPORT_ROOTS | <data dir>/import | os.pathsep-separated directories `backing_file` may come from |
| SHARESTORE_SECRET_KEY | a random key kept in var/secret_key | Django's SECRET_KEY (web server and workers must share it) |
| SHARESTORE_DEBUG | 0 | 1 turns on Django debug and the envelope's `stack` |
| SHARESTORE_ALLOWED_HOSTS | 127.0.0.1,localhost | comma-separated |
| SHARESTORE_QEMU_IMG | qemu-img | the qemu-img binary |
| SHARESTORE_QEMU_NBD | qemu-nbd | the qemu-nbd binary |
| SHARESTORE_LEASE_SECONDS | 30 | how long an operation's worker may miss heartbeats before another takes it over |
| SHARESTORE_HEARTBEAT_SECONDS | lease/3 | lease renewal and sweep interval of every worker |
| SHARESTORE_MAX_COPY_SECONDS | 86400 | longest single copy; task timeout, broker retry, qemu-img copy timeout and the volume cap derive from it |
| SHARESTORE_COPY_RATE_FLOOR | 838860800 (800 MiB/s) | slowest supported copy rate (bytes/s): volume cap = it x SHARESTORE_MAX_COPY_SECONDS |
| SHARESTORE_HOST | (unset) | name or UUID of the Host row this worker runs on; unset: one machine, every pool, default queue |
| SHARESTORE_SNAPSHOT_MAX_DEPTH | 32 | most snapshot layers under a volume's head |
| SHARESTORE_BACKUP_COMPRESS | 1 | zstd-compress backups unless a request says otherwise |
| SHARESTORE_BACKUP_VERIFY_BATCH | 10 | backups the daily verification schedule checks per run |
| SHARESTORE_STATIC_ROOT | <repo>/var/static | where `collectstatic` puts the console's CSS and JS (served by WhiteNoise) |
"""

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:////abs/path or sqlite:///relative/path
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            name = path
        else:
            name = str(BASE_DIR / path.lstrip("/"))
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait for the busy
            # timeout instead of failing at once with "database is locked".
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            "TEST": {"NAME": os.environ.get("SHARESTORE_TEST_SQLITE")},
        }
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "sharestore",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            # Persistent connections: per-request connects made list endpoints 2-6x slower here.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use sqlite or postgres)")


DEBUG = _env_bool("SHARESTORE_DEBUG", False)


def _persistent_secret_key() -> str:
    """The embedded default keeps one random key under var/: the web server and the django-q2
    workers must share it (task payloads are signed with it)."""
    key_file = BASE_DIR / "var" / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = os.environ.get("SHARESTORE_SECRET_KEY") or _persistent_secret_key()
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("SHARESTORE_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]

SHARESTORE_DATA_DIR = Path(os.environ.get("SHARESTORE_DATA_DIR", BASE_DIR / "var" / "data")).resolve()
SHARESTORE_IMPORT_ROOTS = [
    str(Path(p).resolve())
    for p in os.environ.get("SHARESTORE_IMPORT_ROOTS", str(SHARESTORE_DATA_DIR / "import")).split(os.pathsep)
    if p.strip()
]
SHARESTORE_QEMU_IMG = os.environ.get("SHARESTORE_QEMU_IMG", "qemu-img")
SHARESTORE_QEMU_NBD = os.environ.get("SHARESTORE_QEMU_NBD", "qemu-nbd")
# Leases: a running attempt's heartbeat thread renews its lease every SHARESTORE_HEARTBEAT_SECONDS
# (default lease/3) however silent the step; every qcluster's agent sweeps expired leases at the same
# interval, so a dead worker's operation is taken over within lease + lease/3 (+ 0.2 s poll).
SHARESTORE_LEASE_SECONDS = int(os.environ.get("SHARESTORE_LEASE_SECONDS", "30"))
SHARESTORE_HEARTBEAT_SECONDS = float(os.environ.get("SHARESTORE_HEARTBEAT_SECONDS", "0")) or SHARESTORE_LEASE_SECONDS / 3

# Storage hosts (docs/deploy.md "Storage hosts"): a worker started with SHARESTORE_HOST (a Host's name
# or UUID) listens on the queue host-<SHARESTORE_HOST> and receives only operations whose pools that
# host mounts (PoolMount rows). Unset: one machine, the default queue, every pool.
SHARESTORE_HOST = os.environ.get("SHARESTORE_HOST", "").strip()
# A host is live while its worker's heartbeat is younger than this (default: the lease).
SHARESTORE_HOST_LIVE_SECONDS = int(os.environ.get("SHARESTORE_HOST_LIVE_SECONDS", "0")) or SHARESTORE_LEASE_SECONDS
# An operation whose pools no live host mounts waits this long, then fails with scode 5007.
SHARESTORE_HOST_WAIT_SECONDS = int(os.environ.get("SHARESTORE_HOST_WAIT_SECONDS", "600"))

# One set of limits, derived from one setting (docs/deploy.md "Limits"): the longest single copy
# (qemu-img convert, safe rebase, commit, compare, a backup's hash pass). An operation runs at most
# COPY_STEPS_PER_TASK copy-class commands in a row; the django-q2 task timeout (a backstop: liveness
# is the lease) covers them all, the broker's redelivery (`retry`) comes after the timeout, and the
# largest volume is what a copy at the slowest supported rate finishes in that time.
SHARESTORE_MAX_COPY_SECONDS = int(os.environ.get("SHARESTORE_MAX_COPY_SECONDS", str(24 * 3600)))
SHARESTORE_COPY_RATE_FLOOR = int(os.environ.get("SHARESTORE_COPY_RATE_FLOOR", str(800 << 20)))  # bytes/s
COPY_STEPS_PER_TASK = 3
SHARESTORE_TASK_TIMEOUT = COPY_STEPS_PER_TASK * SHARESTORE_MAX_COPY_SECONDS + 600
SHARESTORE_TASK_RETRY = SHARESTORE_TASK_TIMEOUT + 600
SHARESTORE_QEMU_TIMEOUTS = {
    "inspect": 120,
    "metadata": 120,
    "check": min(3600, SHARESTORE_MAX_COPY_SECONDS),
    "copy": SHARESTORE_MAX_COPY_SECONDS,
}
# Upper bounds that keep one request from asking for absurd resources. The volume cap never exceeds
# what one copy moves within SHARESTORE_MAX_COPY_SECONDS at SHARESTORE_COPY_RATE_FLOOR (65.9 TiB at
# the defaults), so no size the API accepts is cut short by a timeout.
SHARESTORE_MAX_VOLUME_BYTES = min(
    int(os.environ.get("SHARESTORE_MAX_VOLUME_BYTES", str(64 * 2**40))),
    SHARESTORE_MAX_COPY_SECONDS * SHARESTORE_COPY_RATE_FLOOR,
)
SHARESTORE_MAX_PAGE_SIZE = 1000
# Most snapshot layers under a volume's active layer (deep chains slow every read: docs/snapshots.md).
SHARESTORE_SNAPSHOT_MAX_DEPTH = int(os.environ.get("SHARESTORE_SNAPSHOT_MAX_DEPTH", "32"))
SHARESTORE_BACKUP_COMPRESS = _env_bool("SHARESTORE_BACKUP_COMPRESS", True)
SHARESTORE_BACKUP_VERIFY_BATCH = int(os.environ.get("SHARESTORE_BACKUP_VERIFY_BATCH", "10"))
SHARESTORE_NAME_MAX_LENGTH = 128

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_q",
    "sharestore.core",
    "volumes",
    "backups",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files are served by the application itself (gunicorn + WhiteNoise), in the demo as in
    # production, so the console is styled without a separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sharestore.urls"
WSGI_APPLICATION = "sharestore.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": _database_from_url(
        os.environ.get("DATABASE_URL", "sqlite:///var/sharestore.sqlite3")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("SHARESTORE_STATIC_ROOT", BASE_DIR / "var" / "static"))
# `collectstatic` fills STATIC_ROOT (make run does it); until then WhiteNoise serves from the
# finders, so a checkout served without that step is still styled.
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["sharestore.core.authentication.HashedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["sharestore.api.renderers.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "sharestore.api.exception_handler.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sharestore: shared-storage volume API",
    "DESCRIPTION": "The /v1/volume/share/ contract plus documented extensions. Every answer is the envelope {scode, desc, message, message_cn, stack, data}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# The ORM broker delivers at least once: a task whose worker dies is delivered again after
# `retry` seconds, so every task is idempotent. `retry` must exceed `timeout`, or a slow task
# is handed to a second worker while the first still runs.
Q_CLUSTER = {
    "name": "sharestore",
    "orm": "default",
    "workers": int(os.environ.get("SHARESTORE_Q_WORKERS", "2")),
    "timeout": SHARESTORE_TASK_TIMEOUT,
    "retry": SHARESTORE_TASK_RETRY,
    "max_attempts": 0,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": float(os.environ.get("SHARESTORE_Q_POLL", "0.2")),
    "sync": _env_bool("SHARESTORE_Q_SYNC", False),
    "label": "Task queue",
}
if SHARESTORE_HOST:
    # `name` (the signing prefix) stays shared by every host; the queue is the host's own.
    Q_CLUSTER["cluster_name"] = f"host-{SHARESTORE_HOST}"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SHARESTORE_LOG_LEVEL", "INFO")},
}
