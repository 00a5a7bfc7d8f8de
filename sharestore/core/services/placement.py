"""Placement of operations on storage hosts: which django-q2 queue an operation's task goes to, or
why it waits for a host, as the volumes app decides (installed at ready time by `set_placement`).
Without an installed placement every task goes to the default queue and runs anywhere."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationState
from sharestore.core.models import Operation

# The runner's logger: these lines belong to an operation's story, logged where they always were.
logger = logging.getLogger("sharestore.core.services.operations")

# The start of the phase of an operation that no live host can run yet (the rest names the pool).
WAITING_PHASE = "waiting for a host"


@dataclass(frozen=True)
class Route:
    """Where an operation's task goes: a django-q2 queue (None: the default one), or nowhere yet
    (`waiting` says why, shown as the operation's phase)."""

    queue: str | None
    waiting: str = ""
    pool: str = ""


Router = Callable[[Operation], Route]
_placement: dict[str, Callable] = {}


def set_placement(
    *,
    route: Router,
    runs_here: Callable[[Operation], bool],
    preflight: Callable[[Operation], None] | None = None,
) -> None:
    """Install the placement of operations on storage hosts (the volumes app does, at ready time):
    `route` picks the queue, `runs_here` says whether this worker's host mounts the operation's pools,
    `preflight` raises a ServiceError unless every pool the operation touches is the right one here
    (its identity marker), before each attempt's handler runs."""
    _placement.update(route=route, runs_here=runs_here, preflight=preflight)


def host_wait_seconds() -> float:
    return float(getattr(settings, "SHARESTORE_HOST_WAIT_SECONDS", 600))


def expired_lease_q(now: datetime | None = None) -> Q:
    """Running operations whose lease expired (their worker stopped renewing it)."""
    return Q(state=OperationState.RUNNING, lease_expires_at__lt=now or timezone.now())


def unclaimed() -> Q:
    """Operations no live attempt holds: queued, or running under a lease that expired (its worker
    died, or its host did)."""
    return Q(state=OperationState.QUEUED) | expired_lease_q()


def runs_here(operation: Operation) -> bool:
    check = _placement.get("runs_here")
    return True if check is None else check(operation)


def preflight(operation: Operation) -> None:
    """The installed preflight check of an attempt, if any (it raises when a pool is not the right one)."""
    check = _placement.get("preflight")
    if check is not None:
        check(operation)


def send_to(operation_id: int) -> tuple[bool, str | None]:
    """Whether to send the operation's task now, and to which queue (None: the default one). One that
    is no longer active is not sent; one no live host can run waits, its phase saying why."""
    route = _placement.get("route")
    if route is None:
        return True, None
    operation = Operation.objects.filter(pk=operation_id, state__in=ACTIVE_OPERATION_STATES).first()
    if operation is None:
        return False, None
    decided = route(operation)
    if decided.waiting:
        # Visible in its phase; the deadline counts from when the wait began (kept across
        # re-sends), not from the operation's creation: a long copy whose host died waits too.
        Operation.objects.filter(unclaimed(), pk=operation_id).update(
            phase=decided.waiting[:64], waiting_since=Coalesce(F("waiting_since"), Value(timezone.now()))
        )
        logger.info("operation %s: %s", operation.uuid, decided.waiting)
        return False, None
    if operation.phase.startswith(WAITING_PHASE):
        Operation.objects.filter(unclaimed(), pk=operation_id, phase=operation.phase).update(
            phase="", waiting_since=None
        )
    return True, decided.queue
