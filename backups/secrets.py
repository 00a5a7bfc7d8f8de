"""Backup-point passwords at rest: Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`) under a key
derived by HKDF-SHA256 from SHARESTORE_BACKUP_SECRET_KEY, or from SECRET_KEY when that is empty.

The clear password exists only in memory while a backup, restore or verification hands it to
qemu-img (through `volumes.drivers.qemu.encrypted_files`: a 0600 file, never an argv); no API answer,
console page, log line or audit message carries it, nor its stored token.
"""

from __future__ import annotations

import base64
import contextlib

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from sharestore import errors

MAX_PASSWORD_LENGTH = 1024
_INFO = b"sharestore backup-point password v1"


def _fernet() -> Fernet:
    secret = getattr(settings, "SHARESTORE_BACKUP_SECRET_KEY", "") or settings.SECRET_KEY
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def validate_password(value) -> str:
    """A password as given ("" or None: none, the backup point does not encrypt)."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_PASSWORD_LENGTH or "\x00" in value:
        raise errors.InvalidParameter(
            field="password",
            reason=f"must be a string of at most {MAX_PASSWORD_LENGTH} characters",
            reason_cn=f"必须是不超过 {MAX_PASSWORD_LENGTH} 个字符的字符串",
        )
    return value


def seal(password: str) -> str:
    """The stored form of a password ("" for none)."""
    return _fernet().encrypt(password.encode("utf-8")).decode("ascii") if password else ""


def unseal(token: str, *, point: str) -> str:
    """The clear password of a stored token ("" for none); BackupSecretUnreadable if the key changed."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise errors.BackupSecretUnreadable(point=point) from None


def backup_encryption(store, backup) -> contextlib.AbstractContextManager:
    """The block within which `backup`'s file is opened or written with its key (if it is encrypted)."""
    password = (
        unseal(backup.backup_point.password_sealed, point=backup.backup_point.name)
        if backup.encrypted
        else ""
    )
    return store.encryption(backup.file_name, password)
