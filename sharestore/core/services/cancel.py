"""Cancel a copy: a full clone, a backup, a restore or a flatten, queued or running.

A queued copy is cancelled at once: compare-and-set queued -> cancelled, then its kind's failure path
undoes its rows in the same transaction (a clone's or a restore's volume leaves its populating state
for `error`, a backup is marked failed), exactly as a failure would; its space reservation is released
because the operation ended. Its task, delivered later (at least once), finds nothing to claim.

A running copy is marked (compare-and-set of `cancel_requested_at` on the running row, never a
read-modify-save): its worker reads the mark with its next lease renewal (at most a heartbeat, a
third of the lease, later), kills the copying command, removes the partial output through the
kind's failure path and ends the operation `cancelled`. The publish is the point of no return: a
cancel that arrives after the copy was published is too late, and the operation ends succeeded.

Every request is audited (`operation.cancel`, naming the actor); the end is audited by the runner
(`<kind>.cancelled`).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.operations import cancelled_error
from sharestore.core.services.state import OperationContext, audit

# The kinds that copy data for as long as their size makes them take; the others are constant time
# or rewrite layers in place (a merge, a rollback), where stopping half-way helps no one.
CANCELLABLE_KINDS = frozenset(
    {
        OperationKind.CLONE_FULL,
        OperationKind.BACKUP_CREATE,
        OperationKind.BACKUP_RESTORE,
        OperationKind.FLATTEN,
    }
)


def cancel_refusal(operation: Operation) -> errors.ServiceError | None:
    """Why `operation` cannot be cancelled now (the error a request would get), or None."""
    if operation.kind not in CANCELLABLE_KINDS:
        return errors.OperationNotCancellable(action=operation.kind, uuid=operation.uuid)
    if operation.state not in ACTIVE_OPERATION_STATES:
        return errors.OperationAlreadyEnded(action=operation.kind, uuid=operation.uuid, state=operation.state)
    return None


def _request_audit(operation: Operation, *, actor: str, message: str) -> None:
    audit(
        OperationContext(actor=actor[:128], operation=operation),
        action="operation.cancel",
        object_type="operation",
        object_uuid=operation.uuid,
        from_state=operation.state,
        message=message,
    )


def operation_cancel(*, actor: str, operation: Operation) -> Operation:
    """Cancel a queued or running copy (see the module's docstring); answers the operation as it is
    now: `cancelled` if it was queued, still `running` with `cancel_requested_at` set if it runs.

    Refused (nothing changed) for a kind that is no copy (4721) and an operation already ended (4722).
    Asking again while the worker stops the copy changes nothing and answers the same.
    """
    from sharestore.core.dispatch import handler_for

    refusal = cancel_refusal(operation)
    if refusal is not None:
        raise refusal
    now = timezone.now()
    with transaction.atomic():
        queued = Operation.objects.filter(pk=operation.pk, state=OperationState.QUEUED)
        if queued.update(cancel_requested_at=now, cancel_requested_by=actor[:128]) == 1:
            operation.refresh_from_db()
            _request_audit(operation, actor=actor, message="cancelled before it started")
            error = cancelled_error(operation, desc="cancelled while queued")
            ended = queued.update(
                state=OperationState.CANCELLED,
                finished=now,
                lease_expires_at=None,
                error_scode=error.scode,
                error_message=error.render_message(),
                error_params=errors.json_params(error.params),
                error_detail=error.desc,
            )
            if ended != 1:  # the row is locked by the first update: cannot happen, but never guess
                raise errors.InternalError(desc=f"operation {operation.uuid} changed while being cancelled")
            operation.refresh_from_db()
            handler_for(operation.kind).fail(operation, error)
            audit(
                OperationContext.of(operation),
                action=f"{operation.kind}.cancelled",
                object_type=operation.target_type,
                object_uuid=operation.target_uuid,
                result=str(OperationState.CANCELLED),
                error=error,
            )
            return operation
        running = Operation.objects.filter(
            pk=operation.pk, state=OperationState.RUNNING, cancel_requested_at__isnull=True
        )
        if running.update(cancel_requested_at=now, cancel_requested_by=actor[:128]) == 1:
            operation.refresh_from_db()
            _request_audit(
                operation,
                actor=actor,
                message=(
                    f"cancel asked at {operation.progress:.1f}% ({operation.bytes_done} of "
                    f"{operation.bytes_total} bytes); the worker stops the copy and removes its partial output"
                ),
            )
            return operation
    operation.refresh_from_db()
    if operation.state == OperationState.RUNNING:
        return operation  # asked before: the worker is stopping it
    raise cancel_refusal(operation) or errors.OperationAlreadyEnded(
        action=operation.kind, uuid=operation.uuid, state=operation.state
    )
