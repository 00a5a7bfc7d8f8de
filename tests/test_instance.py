"""The instance's state directory and secret key file (sharestore/instance.py)."""

from __future__ import annotations

import stat

from sharestore import instance


def test_ensure_instance_creates_the_key_once(tmp_path, monkeypatch):
    monkeypatch.delenv("SHARESTORE_SECRET_KEY", raising=False)
    monkeypatch.delenv("SHARESTORE_SECRET_KEY_FILE", raising=False)
    monkeypatch.setenv("SHARESTORE_VAR_DIR", str(tmp_path / "var"))
    assert instance.read_secret_key() == ""
    assert not (tmp_path / "var").exists()
    instance.ensure_instance()
    key = instance.read_secret_key()
    assert len(key) >= 50
    instance.ensure_instance()
    assert instance.read_secret_key() == key
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["secret_key"]


def test_key_from_the_environment_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARESTORE_SECRET_KEY", "k" * 50)
    monkeypatch.setenv("SHARESTORE_VAR_DIR", str(tmp_path / "var"))
    instance.ensure_instance()
    assert instance.read_secret_key() == "k" * 50
    assert list((tmp_path / "var").iterdir()) == []


def test_key_file_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("SHARESTORE_SECRET_KEY", raising=False)
    monkeypatch.setenv("SHARESTORE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SHARESTORE_SECRET_KEY_FILE", str(tmp_path / "etc" / "key"))
    instance.ensure_instance()
    assert (tmp_path / "etc" / "key").read_text() == instance.read_secret_key()
