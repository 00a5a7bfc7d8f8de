"""Operations: records of long-running actions, their leases, progress, and the runner tasks use.

Life of an operation: a service creates it `queued` in the same transaction as the state change it
belongs to, and enqueues the one task entry (`sharestore.core.tasks.operation_task`) on commit. The
task finds the handler registered for the operation's kind and calls `operation_run`, which claims it by
compare-and-set (queued -> running, or running with an expired lease -> running under a new owner),
runs the handler while renewing the lease with every progress report, and ends it succeeded or
failed together with the handler's own state change, in one transaction.

django-q2's ORM broker delivers at least once, and the sweeper re-enqueues operations whose lease
expired: handlers are idempotent and resume from whatever the files show.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid as uuid_lib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from sharestore import errors
from sharestore.core import request_id
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.state import OperationContext, audit

TASK_ENTRY = "sharestore.core.tasks.operation_task"

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
PROGRESS_WRITE_INTERVAL = 1.0


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid_lib.uuid4().hex[:8]}"


def _lease_deadline():
    return timezone.now() + timedelta(seconds=settings.SHARESTORE_LEASE_SECONDS)


def enqueue(operation: Operation) -> None:
    """Hand the operation to the task entry once the surrounding transaction commits."""
    from django_q.tasks import async_task

    operation_id, name = operation.pk, f"{operation.kind}:{operation.uuid}"
    transaction.on_commit(lambda: async_task(TASK_ENTRY, operation_id, task_name=name))


def operation_create(
    *,
    kind: OperationKind,
    target_type: str,
    target_uuid,
    actor: str,
    volume: models.Model | None = None,  # a volumes.Volume: core imports nothing from the apps above it
    params: dict | None = None,
    bytes_total: int = 0,
) -> Operation:
    """Record a queued operation and enqueue its task after commit."""
    operation = Operation.objects.create(
        kind=kind,
        target_type=target_type,
        target_uuid=target_uuid,
        volume=volume,
        params=params or {},
        requested_by=actor[:128],
        request_id=request_id.get(),
        bytes_total=bytes_total,
    )
    enqueue(operation)
    return operation


@dataclass
class Reporter:
    """Progress and lease renewal for one running operation, written at most once a second."""

    operation: Operation
    owner: str
    _last_write: float = field(default=0.0)
    lost: bool = False

    def _write(self, **values) -> None:
        values["lease_expires_at"] = _lease_deadline()
        rows = Operation.objects.filter(
            pk=self.operation.pk, owner=self.owner, state=OperationState.RUNNING
        ).update(**values)
        if rows != 1:
            # Someone else took the lease over (the sweeper judged us dead): stop at the next check.
            self.lost = True
        self._last_write = time.monotonic()

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


@dataclass(frozen=True)
class OperationHandler:
    """What a task does: run the storage work, then make the outcome visible, or undo it."""

    run: Callable[[Operation, Reporter], None]
    succeed: Callable[[Operation], None]
    fail: Callable[[Operation, errors.ServiceError], None]


def _claim(operation_id: int, owner: str) -> Operation | None:
    now = timezone.now()
    claimable = Q(state=OperationState.QUEUED) | Q(state=OperationState.RUNNING, lease_expires_at__lt=now)
    rows = Operation.objects.filter(claimable, pk=operation_id).update(
        state=OperationState.RUNNING,
        owner=owner,
        lease_expires_at=_lease_deadline(),
        attempts=F("attempts") + 1,
        started=now,
    )
    if rows != 1:
        return None
    return Operation.objects.get(pk=operation_id)


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
    rows = Operation.objects.filter(pk=operation.pk, owner=owner, state=OperationState.RUNNING).update(
        **values
    )
    return rows == 1


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
    logger.info("operation %s (%s) started, attempt %s", operation.uuid, operation.kind, operation.attempts)
    reporter = Reporter(operation, owner)
    try:
        handler.run(operation, reporter)
    except errors.ServiceError as error:
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
    with transaction.atomic():
        if _finish(operation, owner, OperationState.FAILED, error):
            handler.fail(operation, error)
            audit(
                OperationContext.of(operation),
                action=f"{operation.kind}.failed",
                object_type=operation.target_type,
                object_uuid=operation.target_uuid,
                result="failed",
                error=error,
            )
    operation.refresh_from_db()


def operations_expired() -> list[Operation]:
    """Running operations whose owner stopped renewing the lease, and queued ones nobody picked up."""
    now = timezone.now()
    stale_queue = now - timedelta(seconds=settings.SHARESTORE_LEASE_SECONDS)
    return list(
        Operation.objects.filter(
            Q(state=OperationState.RUNNING, lease_expires_at__lt=now)
            | Q(state=OperationState.QUEUED, created__lt=stale_queue)
        ).order_by("created")
    )


def operations_sweep(*, dry_run: bool = False) -> list[Operation]:
    """Re-enqueue every expired operation; its kind's handler finishes or rolls back the work."""
    expired = operations_expired()
    if not dry_run:
        from django_q.tasks import async_task

        for operation in expired:
            async_task(TASK_ENTRY, operation.pk, task_name=f"{operation.kind}:{operation.uuid}:sweep")
    return expired
