"""Settings for sharestore, read from environment variables with safe defaults.

Every variable, its default and its meaning is listed in docs/configuration.md (the one place:
keep it in step when adding one here).
"""

import os
from pathlib import Path

import environ
from django.utils.translation import gettext_lazy

from sharestore import instance

# The checkout (manage.py beside the package), or the working directory of an installed copy:
# relative sqlite paths and the default var/ directory hang off it, never off site-packages.
BASE_DIR = instance.ROOT_DIR
# Templates, project static files and catalogues: the checkout's folders or the wheel's copies.
RESOURCE_DIR = instance.RESOURCE_DIR
VAR_DIR = instance.var_dir()

env = environ.Env()


def _env_bool(name: str, default: bool = False) -> bool:
    return env.bool(name, default=default)


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env.str(name, default=default).split(",") if item.strip()]


def _database_from_url(url: str) -> dict:
    """django-environ parses the URL; the project adds its own defaults per engine."""
    config = environ.Env.db_url_config(url)
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # sqlite:////abs/path or sqlite:///relative/path (relative to the checkout or working dir).
        name = config["NAME"]
        if not url.startswith("sqlite:////") and name != ":memory:":
            name = str(BASE_DIR / name.lstrip("/"))
        return {
            "ENGINE": engine,
            "NAME": name,
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait for the busy
            # timeout instead of failing at once with "database is locked".
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            "TEST": {"NAME": env.str("SHARESTORE_TEST_SQLITE", default=None)},
        }
    if engine in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": config.get("NAME") or "sharestore",
            "USER": config.get("USER", ""),
            "PASSWORD": config.get("PASSWORD", ""),
            "HOST": config.get("HOST", ""),
            "PORT": str(config.get("PORT") or ""),
            # Persistent connections: per-request connects made list endpoints 2-6x slower here.
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"DATABASE_URL engine {engine!r} is not supported (use sqlite or postgres)")


DEBUG = _env_bool("SHARESTORE_DEBUG", False)

# Web servers and django-q2 workers must share the key (task payloads are signed with it). It
# comes from SHARESTORE_SECRET_KEY or the key file; `manage.py` / `sharestore` and the WSGI entry
# create the file on first start (sharestore/instance.py): importing settings writes nothing.
SECRET_KEY = instance.read_secret_key()
ALLOWED_HOSTS = _env_list("SHARESTORE_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = _env_list("SHARESTORE_CSRF_TRUSTED_ORIGINS", "")

SHARESTORE_DATA_DIR = Path(env.str("SHARESTORE_DATA_DIR", default=str(VAR_DIR / "data"))).resolve()
SHARESTORE_IMPORT_ROOTS = [
    str(Path(p).resolve())
    for p in env.str("SHARESTORE_IMPORT_ROOTS", default=str(SHARESTORE_DATA_DIR / "import")).split(os.pathsep)
    if p.strip()
]
SHARESTORE_QEMU_IMG = env.str("SHARESTORE_QEMU_IMG", default="qemu-img")
SHARESTORE_QEMU_NBD = env.str("SHARESTORE_QEMU_NBD", default="qemu-nbd")
# Leases: a running attempt's heartbeat thread renews its lease every SHARESTORE_HEARTBEAT_SECONDS
# (default lease/3) however silent the step; every qcluster's agent sweeps expired leases at the same
# interval, so a dead worker's operation is taken over within lease + lease/3 (+ 0.2 s poll).
SHARESTORE_LEASE_SECONDS = env.int("SHARESTORE_LEASE_SECONDS", default=30)
SHARESTORE_HEARTBEAT_SECONDS = (
    env.float("SHARESTORE_HEARTBEAT_SECONDS", default=0) or SHARESTORE_LEASE_SECONDS / 3
)

# Storage hosts (docs/deploy.md "Storage hosts"): a worker started with SHARESTORE_HOST (a Host's name
# or UUID) listens on the queue host-<SHARESTORE_HOST> and receives only operations whose pools that
# host mounts (PoolMount rows). Unset: one machine, the default queue, every pool.
SHARESTORE_HOST = env.str("SHARESTORE_HOST", default="").strip()
# A host is live while its worker's heartbeat is younger than this (default: the lease).
SHARESTORE_HOST_LIVE_SECONDS = env.int("SHARESTORE_HOST_LIVE_SECONDS", default=0) or SHARESTORE_LEASE_SECONDS
# An operation whose pools no live host mounts waits this long, then fails with scode 5007.
SHARESTORE_HOST_WAIT_SECONDS = env.int("SHARESTORE_HOST_WAIT_SECONDS", default=600)

# One set of limits, derived from one setting (docs/deploy.md "Limits"): the longest single copy
# (qemu-img convert, safe rebase, commit, compare, a backup's hash pass). An operation runs at most
# COPY_STEPS_PER_TASK copy-class commands in a row; the django-q2 task timeout (a backstop: liveness
# is the lease) covers them all, the broker's redelivery (`retry`) comes after the timeout, and the
# largest volume is what a copy at the slowest supported rate finishes in that time.
SHARESTORE_MAX_COPY_SECONDS = env.int("SHARESTORE_MAX_COPY_SECONDS", default=24 * 3600)
SHARESTORE_COPY_RATE_FLOOR = env.int("SHARESTORE_COPY_RATE_FLOOR", default=800 << 20)  # bytes/s
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
    env.int("SHARESTORE_MAX_VOLUME_BYTES", default=64 * 2**40),
    SHARESTORE_MAX_COPY_SECONDS * SHARESTORE_COPY_RATE_FLOOR,
)
SHARESTORE_MAX_PAGE_SIZE = 1000
# How long a process may keep a token, tenant, cluster or pool it read (a revoked token is refused
# within this bound everywhere, at once in the process that revoked it): docs/api.md, "Read path".
SHARESTORE_READ_CACHE_SECONDS = env.float("SHARESTORE_READ_CACHE_SECONDS", default=5)
# Most snapshot layers under a volume's active layer (deep chains slow every read: docs/snapshots.md).
# Bounded waits of a request (docs/api.md, "Back-to-back calls"): for its own short step to finish,
# and for a short step that holds its volume (like a lock wait). 0: answer at once.
SHARESTORE_SHORT_STEP_WAIT_SECONDS = env.float("SHARESTORE_SHORT_STEP_WAIT_SECONDS", default=15)
SHARESTORE_BUSY_WAIT_SECONDS = env.float("SHARESTORE_BUSY_WAIT_SECONDS", default=15)
SHARESTORE_SNAPSHOT_MAX_DEPTH = env.int("SHARESTORE_SNAPSHOT_MAX_DEPTH", default=32)
SHARESTORE_BACKUP_COMPRESS = _env_bool("SHARESTORE_BACKUP_COMPRESS", True)
SHARESTORE_BACKUP_VERIFY_BATCH = env.int("SHARESTORE_BACKUP_VERIFY_BATCH", default=10)
# Key of the backup-point passwords stored encrypted at rest (docs/backups.md); empty: derived from
# SECRET_KEY. Changing it (or SECRET_KEY when this is empty) makes the stored passwords unreadable.
SHARESTORE_BACKUP_SECRET_KEY = env.str("SHARESTORE_BACKUP_SECRET_KEY", default="")
# PBKDF2 time (ms) an encrypted backup's LUKS header is calibrated to when written; every open of
# the file pays it again. qemu's default; the test suite lowers it (docs/backups.md).
SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS = env.int("SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS", default=2000)
SHARESTORE_NAME_MAX_LENGTH = 128
# The console's capacity bars and health column (docs/configuration.md): at or above WARNING % a bar
# turns amber, at or above CRITICAL % red; above 100 % the figure is shown as it is.
SHARESTORE_CAPACITY_WARNING_PERCENT = env.float("SHARESTORE_CAPACITY_WARNING_PERCENT", default=80)
SHARESTORE_CAPACITY_CRITICAL_PERCENT = env.float("SHARESTORE_CAPACITY_CRITICAL_PERCENT", default=95)

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
    "drf_spectacular_sidecar",
    "django_q",
    "sharestore.core",
    "volumes",
    "backups",
]

MIDDLEWARE = [
    # First: every log line of the request, and the operations it creates, carry its id.
    "sharestore.monitoring.middleware.RequestIdMiddleware",
    # Before anything asks for the host: a disallowed Host on /v1/ answers the envelope, DEBUG or not.
    "sharestore.api.middleware.ApiHostMiddleware",
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
    # Last: times the view under its URL name for the latency histogram.
    "sharestore.monitoring.middleware.MetricsMiddleware",
]

ROOT_URLCONF = "sharestore.urls"
WSGI_APPLICATION = "sharestore.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [RESOURCE_DIR / "templates"],
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
        # The embedded default lives in the var directory (<checkout>/var/sharestore.sqlite3).
        env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'sharestore.sqlite3'}")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [RESOURCE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [RESOURCE_DIR / "static"]
STATIC_ROOT = Path(env.str("SHARESTORE_STATIC_ROOT", default=str(VAR_DIR / "static")))
# `collectstatic` fills STATIC_ROOT (make run does it); until then WhiteNoise serves from the
# finders, so a checkout served without that step is still styled.
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["sharestore.core.authentication.HashedTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["sharestore.api.renderers.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["sharestore.api.parsers.AnyContentTypeJSONParser"],
    "EXCEPTION_HANDLER": "sharestore.api.exception_handler.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "sharestore.api.schema.JsonBodyAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sharestore: shared-storage volume API",
    "DESCRIPTION": (
        "The /v1/volume/share/ contract plus documented extensions. "
        "Every answer is the envelope {scode, desc, message, message_cn, stack, data}."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI and Redoc are served from drf-spectacular-sidecar: no request leaves the host.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The volume's `Type` and the request's `volume_type` are one enumeration.
    "ENUM_NAME_OVERRIDES": {"VolumeTypeEnum": "volumes.choices.VolumeType"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sharestore.api.schema.contract_operation_ids",
    ],
}

# django-q2 keeps its clusters' status (what `qinfo`, `qmonitor` and `/readyz` read) in a cache;
# it must be shared by every process and host, so it is a database table (`createcachetable`,
# which `make run` and docs/deploy.md run after `migrate`; the test database gets it by itself).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "cluster": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "sharestore_cache"},
}

# The ORM broker delivers at least once: a task whose worker dies is delivered again after
# `retry` seconds, so every task is idempotent. `retry` must exceed `timeout`, or a slow task
# is handed to a second worker while the first still runs.
Q_CLUSTER = {
    "name": "sharestore",
    "orm": "default",
    "workers": env.int("SHARESTORE_Q_WORKERS", default=2),
    "timeout": SHARESTORE_TASK_TIMEOUT,
    "retry": SHARESTORE_TASK_RETRY,
    "max_attempts": 0,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": env.float("SHARESTORE_Q_POLL", default=0.2),
    "sync": _env_bool("SHARESTORE_Q_SYNC", False),
    # Lazy: the sidebar names the app in the reader's language (msgid "Task queue").
    "label": gettext_lazy("Task queue"),
    "cache": "cluster",
}
if SHARESTORE_HOST:
    # `name` (the signing prefix) stays shared by every host; the queue is the host's own.
    Q_CLUSTER["cluster_name"] = f"host-{SHARESTORE_HOST}"

# Production behind a TLS-terminating proxy (docs/deploy.md): SHARESTORE_SECURE=1 turns on HSTS,
# secure cookies and the HTTPS redirect, and trusts the proxy's X-Forwarded-Proto header.
SHARESTORE_SECURE = _env_bool("SHARESTORE_SECURE", False)
if SHARESTORE_SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("SHARESTORE_SSL_REDIRECT", True)
    # The health and metrics endpoints are scraped over plain HTTP on the host itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SHARESTORE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SHARESTORE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("SHARESTORE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Structured logs: one JSON object per line (time, level, logger, message, request_id);
# SHARESTORE_LOG_FORMAT=text keeps plain lines for a terminal.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "sharestore.monitoring.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "sharestore.monitoring.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": env.str("SHARESTORE_LOG_FORMAT", default="json"),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("SHARESTORE_LOG_LEVEL", default="INFO")},
}
