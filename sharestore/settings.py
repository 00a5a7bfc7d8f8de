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
| SHARESTORE_LEASE_SECONDS | 300 | how long an operation's owner may stay silent before the sweeper takes over |
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
SHARESTORE_LEASE_SECONDS = int(os.environ.get("SHARESTORE_LEASE_SECONDS", "300"))
# Upper bounds that keep one request from asking for absurd resources.
SHARESTORE_MAX_VOLUME_BYTES = int(os.environ.get("SHARESTORE_MAX_VOLUME_BYTES", str(64 * 2**40)))
SHARESTORE_MAX_PAGE_SIZE = 1000
# How long a process may keep a token, tenant, cluster or pool it read (a revoked token is refused
# within this bound everywhere, at once in the process that revoked it): docs/api.md, "Read path".
SHARESTORE_READ_CACHE_SECONDS = float(os.environ.get("SHARESTORE_READ_CACHE_SECONDS", "5"))
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
    "DEFAULT_PARSER_CLASSES": ["sharestore.api.parsers.AnyContentTypeJSONParser"],
    "EXCEPTION_HANDLER": "sharestore.api.exception_handler.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "sharestore.api.schema.JsonBodyAutoSchema",
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
    "timeout": int(os.environ.get("SHARESTORE_TASK_TIMEOUT", str(6 * 3600))),
    "retry": int(os.environ.get("SHARESTORE_TASK_TIMEOUT", str(6 * 3600))) + 600,
    "max_attempts": 0,
    "ack_failures": True,
    "save_limit": 1000,
    "catch_up": False,
    "poll": 0.2,
    "sync": _env_bool("SHARESTORE_Q_SYNC", False),
    "label": "Task queue",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("SHARESTORE_LOG_LEVEL", "INFO")},
}
