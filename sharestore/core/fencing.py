"""Fencing of publish steps: at most one attempt of an operation makes its outputs visible.

The operation runner installs, for the attempt it runs, a guard that re-checks in one transaction that
this attempt (owner + attempt number) still holds the lease, and keeps that row locked while the file
is renamed into place. Every publish point (`volumes.drivers.qemu.publish` and `rename`: full clone,
create, import, restore, backup files) runs inside `publish_guard()`. Outside an operation (the demo
seed, management commands) there is no guard and the publish goes ahead.

Each attempt also writes under its own temporary names: the runner installs the attempt's tag
(`attempt_tag()`, `op<operation id>-a<attempt number>`), which the storage layer puts into every
temporary file name (`volumes.drivers.qemu.tmp_sibling`: `.tmp-<name>.op12-a3`). An attempt that was
fenced off while its copy still runs never writes into the file of the attempt that took over, and the
new attempt knows the names its predecessors used (`attempt_tags()`) to remove what they left.

Cancellation: the runner also installs the attempt's cancel event (`cancel_event()`), which its
heartbeat sets when someone asked to cancel the operation. The engine's process runner
(`volumes.drivers.process.run`) stops a copying command when it is set; the attempt's own failure path
then removes what the copy wrote, as for any failed copy.

This module imports nothing from Django models: the storage layer below may use it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar

Guard = Callable[[], AbstractContextManager]
_guard: ContextVar[Guard | None] = ContextVar("sharestore_publish_guard", default=None)
# (operation id, attempt number) of the attempt running in this context; None outside an operation.
_attempt: ContextVar[tuple[int, int] | None] = ContextVar("sharestore_attempt", default=None)
# Set when the operation of the attempt running in this context is to be cancelled; None outside one.
_cancel: ContextVar[threading.Event | None] = ContextVar("sharestore_cancel", default=None)


def tag_of(operation_id: int, attempt: int) -> str:
    """The temporary-name tag of one attempt: letters, digits and `-` only (no `.`, which separates
    the parts of a temporary name)."""
    return f"op{int(operation_id)}-a{int(attempt)}"


@contextlib.contextmanager
def installed(
    guard: Guard,
    *,
    operation_id: int | None = None,
    attempt: int = 0,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Run the block with `guard` protecting every publish made in it, (with `operation_id`) the
    attempt's tag naming every temporary file written in it, and (with `cancel`) the event that stops
    its copies (this thread/context only)."""
    token = _guard.set(guard)
    attempt_token = _attempt.set(None if operation_id is None else (int(operation_id), int(attempt)))
    cancel_token = _cancel.set(cancel)
    try:
        yield
    finally:
        _cancel.reset(cancel_token)
        _attempt.reset(attempt_token)
        _guard.reset(token)


def cancel_event() -> threading.Event | None:
    """The event set when the operation running in this context is cancelled (None outside one)."""
    return _cancel.get()


def attempt_tag() -> str:
    """This attempt's tag for temporary names (`op12-a3`), or "" outside an operation."""
    current = _attempt.get()
    return "" if current is None else tag_of(*current)


def attempt_tags() -> list[str]:
    """The tags of every attempt of this operation so far, this one last ([] outside an operation):
    the temporary names a new attempt may find left by its predecessors."""
    current = _attempt.get()
    if current is None:
        return []
    operation_id, attempt = current
    return [tag_of(operation_id, number) for number in range(1, attempt + 1)]


@contextlib.contextmanager
def publish_guard() -> Iterator[None]:
    """Wrap one publish: raises OperationLeaseLost before the rename if this attempt was fenced off.

    A publish of several renames wraps them all in one guard: the check holds the operation's row
    lock until the block ends, so the renames' own guards inside it have nothing left to check."""
    guard = _guard.get()
    if guard is None:
        yield
        return
    with guard():
        inside = _guard.set(None)
        try:
            yield
        finally:
            _guard.reset(inside)
