"""A short-lived per-process cache for what the read path would otherwise query on every request.

Entries live `settings.SHARESTORE_READ_CACHE_SECONDS` (default 5) seconds at most: a change made in
another process (a revoked token, a renamed pool) is seen within that bound. Changes saved through the
ORM in this process clear the caches at once (post_save/post_delete signals); `QuerySet.update()`
sends no signal and is covered by the bound. Misses are never cached, so a new token, tenant or pool
is usable at once.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

# The clock, a module attribute so that tests can move it.
clock = time.monotonic

_registry: list[TTLCache] = []


def ttl_seconds() -> float:
    return float(getattr(settings, "SHARESTORE_READ_CACHE_SECONDS", 5))


class TTLCache:
    """key -> value for at most ttl_seconds(); bounded in size (cleared when full)."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._data: dict = {}
        self._lock = threading.Lock()
        _registry.append(self)

    def get(self, key):
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if clock() >= expires:
            self._data.pop(key, None)
            return None
        return value

    def set(self, key, value) -> None:
        ttl = ttl_seconds()
        if ttl <= 0:
            return
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = (clock() + ttl, value)

    def clear(self, *args, **kwargs) -> None:
        self._data.clear()


def clear_all() -> None:
    """Forget every cached entry of this process (tests; signals)."""
    for cache in _registry:
        cache.clear()


def clear_on_change(*models) -> None:
    """Clear every read cache of this process whenever one of `models` is saved or deleted here."""
    from django.db.models.signals import post_delete, post_save

    for model in models:
        uid = f"readcache-{model._meta.label}"
        post_save.connect(_clear, sender=model, dispatch_uid=uid + "-save", weak=False)
        post_delete.connect(_clear, sender=model, dispatch_uid=uid + "-delete", weak=False)


def _clear(*args, **kwargs) -> None:
    clear_all()
