"""Where an instance keeps its state, worked out without Django so that entry points can prepare it.

A checkout (``manage.py`` beside the package) keeps everything under ``<checkout>/var`` as before.
An installed copy never writes inside ``site-packages``: its state lives in ``SHARESTORE_VAR_DIR``,
by default ``./var`` of the working directory (the service units set it to ``/var/lib/sharestore``).

Importing this module or the settings writes nothing. ``ensure_instance()`` creates the var
directory and the secret key file; ``manage.py`` / the ``sharestore`` script and the WSGI entry
call it before Django starts.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
IS_CHECKOUT = (CHECKOUT_DIR / "manage.py").is_file() and (CHECKOUT_DIR / "pyproject.toml").is_file()

# Relative paths (sqlite URLs) resolve against this root: the checkout, or the working directory.
ROOT_DIR = CHECKOUT_DIR if IS_CHECKOUT else Path.cwd()


def _resource_dir() -> Path:
    """Templates, project static files and compiled catalogues: the checkout's top-level folders,
    or the copies the wheel installs under ``<prefix>/share/sharestore`` (pyproject ``data-files``)."""
    if IS_CHECKOUT:
        return CHECKOUT_DIR
    for prefix in (sys.prefix, sys.base_prefix, os.environ.get("PYTHONUSERBASE", "")):
        candidate = Path(prefix) / "share" / "sharestore" if prefix else None
        if candidate and (candidate / "templates").is_dir():
            return candidate
    return Path(sys.prefix) / "share" / "sharestore"


RESOURCE_DIR = _resource_dir()


def var_dir() -> Path:
    return Path(os.environ.get("SHARESTORE_VAR_DIR") or ROOT_DIR / "var").resolve()


def secret_key_file() -> Path:
    return Path(os.environ.get("SHARESTORE_SECRET_KEY_FILE") or var_dir() / "secret_key")


def read_secret_key() -> str:
    """SHARESTORE_SECRET_KEY, else the key file's content, else "" (Django refuses to serve)."""
    key = os.environ.get("SHARESTORE_SECRET_KEY")
    if key:
        return key
    path = secret_key_file()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def ensure_instance() -> None:
    """Create the var directory and, unless the key comes from the environment, the secret key
    file (0600). Idempotent; safe when several processes start at once."""
    var = var_dir()
    var.mkdir(parents=True, exist_ok=True)
    if os.environ.get("SHARESTORE_SECRET_KEY"):
        return
    path = secret_key_file()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written to a private temporary file and linked into place: a process starting at the same
    # time sees either no file or the whole key, never an empty one.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
