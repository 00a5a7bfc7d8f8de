"""Operations: records of long-running actions, their leases, progress, and the runner tasks use.

Life of an operation: a service creates it `queued` in the same transaction as the state change it
belongs to, and enqueues the one task entry (`sharestore.core.tasks.operation_task`) on commit. The
task finds the handler registered for the operation's kind and calls `operation_run`, which claims it by
compare-and-set (queued -> running, or running with an expired lease -> running under a new owner,
an `operation.takeover` audit event), runs the handler while a heartbeat thread renews the lease
every lease/3 seconds whatever the handler is doing (progress is written separately, at most once a
second), and ends it succeeded or failed together with the handler's own state change, in one
transaction.

Fencing: each claim is a new attempt (`Operation.attempts`, the attempt number). The heartbeat, the
progress writes, every publish of a file (`operation_fence`, installed through
`sharestore.core.fencing`) and the end compare-and-set on owner + attempt + running, so an attempt
that lost its lease (a worker judged dead that was only slow) publishes nothing.

django-q2's ORM broker delivers at least once, and the sweeper re-enqueues operations whose lease
expired: handlers are idempotent and resume from whatever the files show. The sweep of expired leases
runs in every `qcluster` (the worker agent thread, `sharestore.core.agent`) every lease/3 seconds, so
a dead worker's operation is taken over at most lease + lease/3 (+ the broker's poll) after its last
heartbeat: 40 s at the default 30 s lease.

Cancel (`sharestore.core.services.cancel`): a request marks a running copy by compare-and-set
(`cancel_requested_at`). Every lease renewal of the attempt (its heartbeat thread, its progress writes,
its publish fence) reads that mark in the same UPDATE; once it is seen, the attempt's cancel event is
set, the engine kills the copying command, no publish is allowed any more, and the attempt ends
`cancelled` through its kind's failure path (which removes the partial output).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid as uuid_lib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from sharestore import errors
from sharestore.core import faults, fencing, request_id
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services import placement

# Callers (the volumes app, the task entry) reach the placement through the runner's module.
from sharestore.core.services.space import Reservation
from sharestore.core.services.state import OperationContext, audit, audit_of

TASK_ENTRY = "sharestore.core.tasks.operation_task"

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
PROGRESS_WRITE_INTERVAL = 1.0


def worker_identity() -> str:
    """`<host>:<pid>:<nonce>`; the host is SHARESTORE_HOST when set (the Host row), else the hostname."""
    host = getattr(settings, "SHARESTORE_HOST", "") or socket.gethostname()
    return f"{host}:{os.getpid()}:{uuid_lib.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(settings.SHARESTORE_LEASE_SECONDS)


def heartbeat_seconds() -> float:
    """How often a live attempt renews its lease and each worker sweeps: a third of the lease."""
    return float(getattr(settings, "SHARESTORE_HEARTBEAT_SECONDS", 0) or lease_seconds() / 3)


def _lease_deadline():
    return timezone.now() + timedelta(seconds=lease_seconds())


def _held(operation: Operation, owner: str):
    """The rows this attempt still holds: its owner, its attempt number, running."""
    return Operation.objects.filter(
        pk=operation.pk, owner=owner, attempts=operation.attempts, state=OperationState.RUNNING
    )


def _renew(operation: Operation, owner: str, cancel: threading.Event, **values) -> bool:
    """Renew this attempt's lease (writing `values` too) and read its cancel mark in the same UPDATE:
    whether the attempt still holds the operation. A cancel mark sets `cancel`."""
    values["lease_expires_at"] = _lease_deadline()
    held = _held(operation, owner)
    if held.filter(cancel_requested_at__isnull=True).update(**values) == 1:
        return True
    # Not renewed: either a cancel was asked (still ours: renew, and stop the work), or the lease is lost.
    if held.update(**values) != 1:
        return False
    if not cancel.is_set():
        logger.warning("operation %s: cancel requested; stopping its copy", operation.uuid)
    cancel.set()
    return True


def cancelled_error(operation: Operation, desc: str = "") -> errors.OperationCancelled:
    """The recorded end of a cancelled operation: its kind, UUID and who asked (read from its row)."""
    actor = (
        Operation.objects.filter(pk=operation.pk).values_list("cancel_requested_by", flat=True).first()
        or operation.cancel_requested_by
    )
    return errors.OperationCancelled(
        desc=desc, action=operation.kind, uuid=operation.uuid, actor=actor or "?"
    )


def _send(operation_id: int, name: str) -> None:
    from django_q.tasks import async_task

    send, queue = placement.send_to(operation_id)
    if not send:
        return
    if queue:
        async_task(TASK_ENTRY, operation_id, task_name=name, cluster=queue)
    else:
        async_task(TASK_ENTRY, operation_id, task_name=name)


def enqueue(operation: Operation, *, now: bool = False, suffix: str = "") -> None:
    """Hand the operation to the task entry once the surrounding transaction commits (or `now`),
    on the queue of a live host that mounts its pools (see `set_placement`)."""
    operation_id, name = operation.pk, f"{operation.kind}:{operation.uuid}{suffix}"

    if now:
        _send(operation_id, name)
    else:
        transaction.on_commit(lambda: _send(operation_id, name))


def operations_waiting_dispatch() -> tuple[int, int]:
    """Agent beat: send waiting operations (queued, or running whose worker's host died) whose pools
    got a live host; fail those that waited SHARESTORE_HOST_WAIT_SECONDS since their wait began with
    NoLiveHost (taken over, audited, through their kind's fail handler). (sent, failed)"""
    from sharestore.core.dispatch import handler_for

    sent = failed = 0
    deadline = timezone.now() - timedelta(seconds=placement.host_wait_seconds())
    waiting = Operation.objects.filter(placement.unclaimed(), phase__startswith=placement.WAITING_PHASE)
    for operation in waiting.order_by("created"):
        if (operation.waiting_since or operation.created) >= deadline:
            before = operation.phase
            enqueue(operation, now=True, suffix=":placed")
            sent += Operation.objects.filter(pk=operation.pk).exclude(phase=before).exists()
            continue
        owner = f"{worker_identity()}:no-host"
        claimed = _claim(operation.pk, owner)
        if claimed is None:
            continue
        pool = operation.phase[len("waiting for a host that mounts pool ") :] if operation.phase else "?"
        error = errors.NoLiveHost(pool=pool, seconds=int(placement.host_wait_seconds()))
        _fail(claimed, owner, handler_for(claimed.kind), error)
        failed += 1
    return sent, failed


def raise_recorded_failure(operation: Operation) -> None:
    """Raise a failed or cancelled operation's own recorded failure (its scode, messages and details),
    as an answer about it shows it; nothing for any other state."""
    if operation.state in (OperationState.FAILED, OperationState.CANCELLED):
        raise errors.RecordedFailure(
            scode=operation.error_scode or errors.InternalError.scode,
            message=operation.error_message or f"{operation.get_kind_display()} {operation.state}",
            params=operation.error_params,
            desc=operation.error_detail,
        )


def operation_create(
    *,
    kind: OperationKind,
    actor: str,
    volume: models.Model | None = None,  # a volumes.Volume: core imports nothing from the apps above it
    target_type: str = "volume",
    target_uuid=None,
    params: dict | None = None,
    bytes_total: int = 0,
    reservation: Reservation | None = None,
) -> Operation:
    """Record a queued operation and enqueue its task after commit. Its target is the volume unless
    `target_type` and `target_uuid` name another object. `reservation`: the space its copy holds while
    the operation is active (`sharestore.core.services.space`)."""
    operation = Operation.objects.create(
        kind=kind,
        target_type=target_type,
        target_uuid=volume.uuid if target_uuid is None else target_uuid,
        volume=volume,
        params=params or {},
        requested_by=actor[:128],
        request_id=request_id.get(),
        bytes_total=bytes_total,
        reserved_on=reservation.on if reservation else "",
        reserved_bytes=reservation.size if reservation else 0,
    )
    enqueue(operation)
    return operation


def operation_start(
    target: models.Model,
    *,
    volume: models.Model,
    action: str,
    to_state: str = "",
    message: str = "",
    **create,
) -> Operation:
    """`operation_create` on `target` (a volume, a backup: its model name and UUID) filed under
    `volume` (required: the tenant finds its operations through it), and the audit row that records
    the request (`action`, the target's new state) under the new operation. `create`: the rest of
    `operation_create`'s keywords (kind, actor, params, bytes_total, reservation)."""
    operation = operation_create(
        target_type=target._meta.model_name, target_uuid=target.uuid, volume=volume, **create
    )
    audit_of(target, OperationContext.of(operation), action=action, to_state=to_state, message=message)
    return operation


@dataclass
class Reporter:
    """Progress and lease renewal for one running operation, written at most once a second."""

    operation: Operation
    owner: str
    _last_write: float = field(default=0.0)
    lost: bool = False
    # Set once a cancel of the operation is seen (here or by the heartbeat): the copy stops.
    cancel: threading.Event = field(default_factory=threading.Event)

    def _write(self, **values) -> None:
        if not _renew(self.operation, self.owner, self.cancel, **values):
            # Someone else took the lease over (the sweeper judged us dead): stop at the next check.
            self.lost = True
        self._last_write = time.monotonic()

    @property
    def cancelled(self) -> bool:
        """Whether a cancel of the operation was seen."""
        return self.cancel.is_set()

    def phase(self, name: str) -> None:
        self.operation.phase = name
        self._write(phase=name)

    def progress(
        self, percent: float, bytes_done: int = 0, bytes_total: int = 0, *, force: bool = False
    ) -> None:
        percent = max(0.0, min(100.0, float(percent)))
        # Progress never goes down, whatever a retried command reports.
        percent = max(percent, self.operation.progress)
        self.operation.progress = percent
        self.operation.bytes_done = max(bytes_done, self.operation.bytes_done)
        if bytes_total:
            self.operation.bytes_total = bytes_total
        if force or time.monotonic() - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self._write(
                progress=percent, bytes_done=self.operation.bytes_done, bytes_total=self.operation.bytes_total
            )

    def heartbeat(self) -> None:
        self._write()

    def driver_progress(self, percent: float, bytes_done: int, bytes_total: int) -> None:
        """Adapter for drivers' ProgressCallback (percent, done, total)."""
        self.progress(percent, bytes_done, bytes_total)


class Heartbeat:
    """Renews one attempt's lease every `interval` seconds from its own thread, however long the
    handler stays silent; stops when the handler ends. A failed compare-and-set marks the reporter
    lost (the attempt was taken over), and the publish fence then refuses its outputs."""

    def __init__(self, reporter: Reporter, interval: float):
        self.reporter = reporter
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{reporter.operation.pk}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 30)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    held = _renew(self.reporter.operation, self.reporter.owner, self.reporter.cancel)
                except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                    logger.exception("heartbeat of operation %s failed", self.reporter.operation.pk)
                    connection.close()
                    continue
                if not held:
                    self.reporter.lost = True
                    logger.warning("operation %s: lease lost", self.reporter.operation.uuid)
                    return
        finally:
            connection.close()  # this thread's own connection


def _heartbeat_possible() -> bool:
    """A heartbeat thread uses its own connection: it must be able to see the operation's row."""
    if connection.in_atomic_block:
        return False  # sync mode inside a caller's transaction: the row is not committed yet
    name = str(connection.settings_dict.get("NAME", ""))
    return not (connection.vendor == "sqlite" and (not name or "memory" in name))


def operation_fence(operation: Operation, owner: str, cancel: threading.Event | None = None):
    """A guard for one publish: in one transaction, check that this attempt still holds the lease
    (owner + attempt + running, rowcount checked) and that no cancel was asked, renew it, and keep the
    row locked while the file is renamed into place, so neither a takeover nor a cancel can slip in
    between the check and the rename: a cancel asked before the publish wins, one asked after it is
    too late (the copy is complete and the operation ends succeeded)."""
    cancel = cancel if cancel is not None else threading.Event()

    @contextlib.contextmanager
    def guard():
        with transaction.atomic():
            if not _renew(operation, owner, cancel):
                raise errors.OperationLeaseLost(uuid=operation.uuid, attempt=operation.attempts)
            if cancel.is_set():
                raise cancelled_error(operation, desc="cancelled before the publish")
            yield

    return guard


@dataclass(frozen=True)
class OperationHandler:
    """What a task does: run the storage work, then make the outcome visible, or undo it."""

    run: Callable[[Operation, Reporter], None]
    succeed: Callable[[Operation], None]
    fail: Callable[[Operation, errors.ServiceError], None]


def _claim(operation_id: int, owner: str) -> Operation | None:
    """queued -> running, or take over a running attempt whose lease expired (audited)."""
    now = timezone.now()
    values = {
        "state": OperationState.RUNNING,
        "owner": owner,
        "lease_expires_at": _lease_deadline(),
        "attempts": F("attempts") + 1,
        "started": now,
        "waiting_since": None,  # a later wait for a host starts its own deadline
    }
    if Operation.objects.filter(pk=operation_id, state=OperationState.QUEUED).update(**values) == 1:
        return Operation.objects.get(pk=operation_id)
    stale = (
        Operation.objects.filter(pk=operation_id, state=OperationState.RUNNING, lease_expires_at__lt=now)
        .values("owner", "attempts", "lease_expires_at")
        .first()
    )
    if stale is None:
        return None
    with transaction.atomic():
        rows = Operation.objects.filter(
            pk=operation_id,
            state=OperationState.RUNNING,
            owner=stale["owner"],
            attempts=stale["attempts"],
            lease_expires_at__lt=now,
        ).update(**values)
        if rows != 1:
            return None  # another worker took it over first, or the owner renewed just in time
        operation = Operation.objects.get(pk=operation_id)
        audit(
            OperationContext(actor=f"worker {owner}"[:128], operation=operation),
            action="operation.takeover",
            object_type=operation.target_type,
            object_uuid=operation.target_uuid,
            message=(
                f"attempt {operation.attempts} ({owner}) took over from {stale['owner']} "
                f"(attempt {stale['attempts']}), "
                f"whose lease expired at {stale['lease_expires_at'].isoformat()}"
            ),
        )
    return operation


def _finish(
    operation: Operation, owner: str, state: OperationState, error: errors.ServiceError | None
) -> bool:
    values = {"state": state, "finished": timezone.now(), "lease_expires_at": None}
    if state == OperationState.SUCCEEDED:
        values.update(progress=100.0, phase="done")
        if operation.bytes_total:
            values["bytes_done"] = operation.bytes_total
    if error is not None:
        # The code and parameters, not only the English text: every language renders from them.
        values.update(
            error_scode=error.scode,
            error_message=error.render_message(),
            error_params=errors.json_params(error.params),
            error_detail=(error.desc or "")[:20000],
        )
    return _held(operation, owner).update(**values) == 1


def operation_run(operation_id: int, handler: OperationHandler) -> Operation | None:
    """Claim and run one operation. Safe to call any number of times for the same operation."""
    # The worker's log lines carry the id of the request that created the operation.
    rid = Operation.objects.filter(pk=operation_id).values_list("request_id", flat=True).first()
    token = request_id.set(rid or "")
    try:
        return _operation_run(operation_id, handler)
    finally:
        request_id.reset(token)


def _operation_run(operation_id: int, handler: OperationHandler) -> Operation | None:
    owner = worker_identity()
    operation = _claim(operation_id, owner)
    if operation is None:
        logger.info("operation %s is finished, missing or held by a live owner; nothing to do", operation_id)
        return None
    if operation.attempts > MAX_ATTEMPTS:
        error = errors.InternalError(desc=f"gave up after {operation.attempts - 1} interrupted attempts")
        _fail(operation, owner, handler, error)
        return operation
    if operation.cancel_requested_at is not None:
        # Cancelled while its previous attempt's worker was gone: undo, do not copy again.
        _fail(operation, owner, handler, cancelled_error(operation, desc="cancelled before this attempt"))
        return operation
    logger.info("operation %s (%s) started, attempt %s", operation.uuid, operation.kind, operation.attempts)
    reporter = Reporter(operation, owner)
    heartbeat = (
        Heartbeat(reporter, heartbeat_seconds()) if _heartbeat_possible() else contextlib.nullcontext()
    )
    try:
        fence = operation_fence(operation, owner, reporter.cancel)
        with (
            heartbeat,
            fencing.installed(
                fence, operation_id=operation.pk, attempt=operation.attempts, cancel=reporter.cancel
            ),
        ):
            placement.preflight(operation)
            faults.pause("run")
            handler.run(operation, reporter)
    except errors.OperationLeaseLost:
        logger.warning(
            "operation %s attempt %s was fenced off; the new owner finishes it",
            operation.uuid,
            operation.attempts,
        )
        return operation
    except errors.ServiceError as error:
        if reporter.cancelled or isinstance(error, errors.OperationCancelled):
            # However the stopped copy surfaced (its command killed, a refused publish): cancelled.
            error = cancelled_error(
                operation, desc=error.desc if isinstance(error, errors.OperationCancelled) else ""
            )
        _fail(operation, owner, handler, error)
        return operation
    except Exception as exc:
        logger.exception("operation %s (%s) crashed", operation.uuid, operation.kind)
        _fail(operation, owner, handler, errors.InternalError(desc=f"{type(exc).__name__}: {exc}"))
        return operation
    if reporter.lost:
        logger.warning("operation %s lost its lease; the new owner finishes it", operation.uuid)
        return operation
    with transaction.atomic():
        if _finish(operation, owner, OperationState.SUCCEEDED, None):
            handler.succeed(operation)
            audit(
                OperationContext.of(operation),
                action=f"{operation.kind}.succeeded",
                object_type=operation.target_type,
                object_uuid=operation.target_uuid,
            )
    operation.refresh_from_db()
    logger.info("operation %s (%s) ended %s", operation.uuid, operation.kind, operation.state)
    return operation


def _fail(operation: Operation, owner: str, handler: OperationHandler, error: errors.ServiceError) -> None:
    """End the attempt failed (or cancelled, for an OperationCancelled) with its kind's undo."""
    cancelled = isinstance(error, errors.OperationCancelled)
    state = OperationState.CANCELLED if cancelled else OperationState.FAILED
    with transaction.atomic():
        if _finish(operation, owner, state, error):
            handler.fail(operation, error)
            audit(
                OperationContext.of(operation),
                action=f"{operation.kind}.{state}",
                object_type=operation.target_type,
                object_uuid=operation.target_uuid,
                result=str(state),
                error=error,
            )
    operation.refresh_from_db()


def operations_expired(*, queued: bool = True) -> list[Operation]:
    """Running operations whose owner stopped renewing the lease, and (with `queued`) queued ones
    nobody picked up within a lease."""
    now = timezone.now()
    stale_queue = now - timedelta(seconds=lease_seconds())
    condition = placement.expired_lease_q(now)
    if queued:
        condition |= Q(state=OperationState.QUEUED, created__lt=stale_queue)
    return list(Operation.objects.filter(condition).order_by("created"))


def operations_sweep(*, dry_run: bool = False, queued: bool = True) -> list[Operation]:
    """Re-enqueue every expired operation; its kind's handler finishes or rolls back the work.

    Several workers may sweep at once: each re-enqueues, and the claim's compare-and-set lets exactly
    one attempt take the operation over; the others find it held and return.
    """
    expired = operations_expired(queued=queued)
    if not dry_run:
        for operation in expired:
            enqueue(operation, now=True, suffix=":sweep")
    return expired
