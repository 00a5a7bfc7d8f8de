"""Bounded waits of a request for an operation that runs elsewhere (a worker, maybe on another host).

Two uses, both after the service's transaction committed (docs/api.md, "Back-to-back calls"):

- `short_step_wait`: a step that is constant time on storage (an empty volume's create, a snapshot,
  a rollback, a linked clone) answers its finished state: the view polls the operation's row until it
  ends or SHARESTORE_SHORT_STEP_WAIT_SECONDS pass, then answers what it finds.
- `busy_retry`: a call that finds its volume busy with such a step waits for it, like a lock wait,
  at most SHARESTORE_BUSY_WAIT_SECONDS, and tries again.

Nothing here touches storage or holds a transaction or a row lock while it sleeps. Inside an open
transaction (the tests' per-test transaction) nothing is waited for: the operation is only dispatched
when that transaction commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import connection

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import raise_recorded_failure

T = TypeVar("T")

# Steps that are constant time on storage, whatever the volume's size: waited for, never polled.
SHORT_KINDS = frozenset(
    {
        OperationKind.VOLUME_CREATE,
        OperationKind.SNAPSHOT_CREATE,
        OperationKind.SNAPSHOT_ROLLBACK,
        OperationKind.CLONE_LINKED,
    }
)
FIRST_POLL, LAST_POLL = 0.02, 0.25  # seconds between reads of the row: doubling from the first


def short_step_wait_seconds() -> float:
    return float(getattr(settings, "SHARESTORE_SHORT_STEP_WAIT_SECONDS", 15))


def busy_wait_seconds() -> float:
    return float(getattr(settings, "SHARESTORE_BUSY_WAIT_SECONDS", 15))


def can_wait() -> bool:
    """Whether this code runs outside any transaction (what it waits for can then be dispatched)."""
    return not connection.in_atomic_block


def operation_wait(operation_id: int, *, seconds: float) -> Operation | None:
    """Read the operation's row until it has ended or `seconds` passed; answer the row last read."""
    deadline = time.monotonic() + seconds
    delay = FIRST_POLL
    while True:
        operation = Operation.objects.filter(pk=operation_id).first()
        remaining = deadline - time.monotonic()
        if operation is None or operation.state not in ACTIVE_OPERATION_STATES or remaining <= 0:
            return operation
        if not can_wait():
            return operation
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, LAST_POLL)


def latest_operation(*, target_uuid, kinds=SHORT_KINDS) -> Operation | None:
    """The newest operation of one of `kinds` on `target_uuid` (a volume or a snapshot)."""
    return (
        Operation.objects.filter(target_uuid=target_uuid, kind__in=list(kinds))
        .order_by("-created", "-id")
        .first()
    )


def short_step_wait(operation: Operation | None) -> Operation | None:
    """Wait (bounded) for a short step the request just committed; a long one is not waited for.

    Raises the operation's recorded failure (its scode, messages and details) if it failed; answers
    the operation as last read otherwise (still running when the wait expired).
    """
    if operation is None or operation.kind not in SHORT_KINDS:
        return operation
    operation = operation_wait(operation.pk, seconds=short_step_wait_seconds())
    if operation is not None:
        raise_recorded_failure(operation)
    return operation


def busy_retry(call: Callable[..., T], /, *args, **kwargs) -> T:
    """`call(*args, **kwargs)` (a service, which opens and closes its own transaction), again after each short step
    that made it find its volume busy has ended, for at most SHARESTORE_BUSY_WAIT_SECONDS; then the
    last refusal is raised. A volume busy with a long operation is refused at once."""
    deadline = time.monotonic() + busy_wait_seconds()
    ended = set()
    while True:
        try:
            return call(*args, **kwargs)
        except errors.VolumeBusy as busy:
            remaining = deadline - time.monotonic()
            if not busy.short or busy.operation_id in ended or remaining <= 0 or not can_wait():
                raise
            operation = operation_wait(busy.operation_id, seconds=remaining)
            if operation is None or operation.state not in ACTIVE_OPERATION_STATES:
                ended.add(busy.operation_id)
