"""Fencing of publish steps: at most one attempt of an operation makes its outputs visible.

The operation runner installs, for the attempt it runs, a guard that re-checks in one transaction that
this attempt (owner + attempt number) still holds the lease, and keeps that row locked while the file
is renamed into place. Every publish point (`volumes.drivers.qemu.publish` and `rename`: full clone,
create, import, restore, backup files) runs inside `publish_guard()`. Outside an operation (the demo
seed, management commands) there is no guard and the publish goes ahead.

This module imports nothing from Django models: the storage layer below may use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar

Guard = Callable[[], AbstractContextManager]
_guard: ContextVar[Guard | None] = ContextVar("sharestore_publish_guard", default=None)


@contextlib.contextmanager
def installed(guard: Guard) -> Iterator[None]:
    """Run the block with `guard` protecting every publish made in it (this thread/context only)."""
    token = _guard.set(guard)
    try:
        yield
    finally:
        _guard.reset(token)


@contextlib.contextmanager
def publish_guard() -> Iterator[None]:
    """Wrap one publish: raises OperationLeaseLost before the rename if this attempt was fenced off."""
    guard = _guard.get()
    if guard is None:
        yield
        return
    with guard():
        yield
