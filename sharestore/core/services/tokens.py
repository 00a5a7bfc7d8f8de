"""API tokens: issued once in clear, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from sharestore.core.models import ApiToken
from sharestore.core.services import readcache


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def token_create(*, name: str, tenant=None, expires_at=None, key: str | None = None) -> tuple[ApiToken, str]:
    """Issue a token; return it with its clear key, which is never stored."""
    key = key or secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name, key_prefix=key[:8], key_hash=token_hash(key), tenant=tenant, expires_at=expires_at
    )
    return token, key


def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token (its requests are refused from now on; the row stays as history). Revoking a
    revoked token keeps its first revocation time."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    # `update()` sends no signal: forget the cached token here (other processes within the TTL).
    _tokens.clear()
    return token


# key hash -> the live token: a request with a known key costs no query. A token revoked (or
# expiring, or deleted) in another process is refused within SHARESTORE_READ_CACHE_SECONDS (5 s);
# in this process at once when revoked through the ORM (`save()`, the admin).
_tokens = readcache.TTLCache()
readcache.clear_on_change(ApiToken)


def token_authenticate(key: str) -> ApiToken | None:
    """The live token with this key, or None; records its last use at most once a minute."""
    digest = token_hash(key)
    token = _tokens.get(digest)
    if token is None:
        token = (
            ApiToken.objects.select_related("tenant").filter(key_hash=digest, revoked_at__isnull=True).first()
        )
        if token is None:
            return None
        _tokens.set(digest, token)
    now = timezone.now()
    if token.expires_at and token.expires_at <= now:
        return None
    if token.last_used is None or (now - token.last_used).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now
    return token
