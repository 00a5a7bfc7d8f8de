"""Settings from the environment: database URLs, the production switch, `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from sharestore import settings as project_settings

CHECKOUT = Path(__file__).resolve().parent.parent


def test_database_urls():
    sqlite_rel = project_settings._database_from_url("sqlite:///var/x.sqlite3")
    assert sqlite_rel["NAME"] == str(project_settings.BASE_DIR / "var" / "x.sqlite3")
    assert sqlite_rel["OPTIONS"] == {"transaction_mode": "IMMEDIATE", "timeout": 20}
    assert project_settings._database_from_url("sqlite:////srv/db.sqlite3")["NAME"] == "/srv/db.sqlite3"
    pg = project_settings._database_from_url("postgres://u:p%40ss@db.example:5433/store")
    assert {k: pg[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "CONN_MAX_AGE")} == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "store",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "db.example",
        "PORT": "5433",
        "CONN_MAX_AGE": 60,
    }


def _manage(*args, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHARESTORE_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=CHECKOUT,
        env={**base, **env},
        capture_output=True,
        text=True,
    )


def test_check_deploy_clean_under_production_settings(tmp_path):
    """The settings docs/deploy.md documents: a key, the TLS proxy switch, the host names."""
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SHARESTORE_SECRET_KEY=secrets.token_urlsafe(50),
        SHARESTORE_SECURE="1",
        SHARESTORE_ALLOWED_HOSTS="storage.example.com",
        SHARESTORE_CSRF_TRUSTED_ORIGINS="https://storage.example.com",
        SHARESTORE_VAR_DIR=str(tmp_path / "var"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_the_production_switch(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SHARESTORE_SECRET_KEY=secrets.token_urlsafe(50),
        SHARESTORE_VAR_DIR=str(tmp_path / "var"),
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # HSTS
