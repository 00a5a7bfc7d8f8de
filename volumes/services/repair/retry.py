"""Retry of a failed operation: the app that owns a kind says when and how it is safely retried.

A retry is a new operation with the same parameters (`params["retry_of"]` names the failed one, which
stays as history). Volume creations, imports, full clones and restores are retried from `error` when
the failed run left no image; a delete from `deleting`. The backups app registers the restore's check
(the backup must still be complete) through `register_retry`."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.operations import operation_create
from sharestore.core.services.space import Reservation
from sharestore.core.services.state import audit, transition
from volumes.choices import EventState
from volumes.models import Snapshot, Volume
from volumes.services.repair.common import active_operations_filter
from volumes.services.repair.words import Words
from volumes.services.snapshot_rules import snapshot_readable
from volumes.services.space import pool_reservation
from volumes.services.volumes import pool_driver

# -- retry of a failed operation ---------------------------------------------------------------------

RetryFn = Callable[[Operation, str], Operation]
RETRY_HANDLERS: dict[str, tuple[Callable[[Operation], str], RetryFn]] = {}


def register_retry(kind: str, check: Callable[[Operation], str], retry: RetryFn) -> None:
    """Let the app that owns an operation kind say when and how a failed one is safely retried.

    check(operation) returns "" when a retry is safe, else the reason it is not.
    """
    RETRY_HANDLERS[kind] = (check, retry)


def _is_latest_for_volume(operation: Operation) -> bool:
    latest = Operation.objects.filter(target_uuid=operation.target_uuid).order_by("-created", "-id").first()
    return latest is not None and latest.pk == operation.pk


def operation_retry_check(operation: Operation) -> str:
    """ "" when the failed operation can be retried safely now, else the reason it cannot."""
    if operation.state != OperationState.FAILED:
        return Words("retry_not_failed", state=OperationState(operation.state).label)
    handler = RETRY_HANDLERS.get(operation.kind)
    if handler is None:
        return Words("retry_undefined", kind=OperationKind(operation.kind).label)
    if not _is_latest_for_volume(operation):
        return Words("retry_superseded")
    return handler[0](operation)


@transaction.atomic
def operation_retry(*, actor: str, operation: Operation) -> Operation:
    """Queue a new operation that repeats a failed one; the failed row stays as history."""
    operation = Operation.objects.select_related("volume").get(pk=operation.pk)
    reason = operation_retry_check(operation)
    if reason:
        chinese = {"reason_cn": reason.chinese} if isinstance(reason, Words) else {}
        raise errors.OperationNotRetryable(uuid=operation.uuid, reason=str.__str__(reason), **chinese)
    retried = RETRY_HANDLERS[operation.kind][1](operation, actor)
    audit(
        actor=actor,
        action="operation.retry",
        object_type=operation.target_type,
        object_uuid=operation.target_uuid,
        volume_id=operation.volume_id,
        operation_id=operation.pk,
        message=f"retried as {retried.uuid}",
    )
    return retried


def _volume_retry_check(operation: Operation, *, expected: EventState) -> str:
    """Why the volume of `operation` cannot be retried from `expected` ("" when it can)."""
    volume = operation.volume
    if volume is None:
        return Words("retry_volume_gone")
    if volume.state != expected:
        return Words(
            "retry_volume_state", state=EventState(volume.state).label, expected=EventState(expected).label
        )
    if Operation.objects.filter(active_operations_filter(), volume=volume).exists():
        return Words("retry_volume_busy")
    return ""


def _requeue(
    operation: Operation,
    actor: str,
    *,
    drop: tuple[str, ...] = (),
    bytes_total: int = 0,
    reservation: Reservation | None = None,
) -> Operation:
    """A new operation repeating `operation` on its target, its parameters without `drop`."""
    params = {k: v for k, v in operation.params.items() if k not in drop}
    params["retry_of"] = str(operation.uuid)
    return operation_create(
        kind=operation.kind,
        target_type=operation.target_type,
        target_uuid=operation.target_uuid,
        actor=actor,
        volume=operation.volume,
        params=params,
        bytes_total=bytes_total,
        reservation=reservation,
    )


def population_retry_check(operation: Operation) -> str:
    """Why a failed create, import, clone or restore cannot be populated again ("" when it can): the
    volume must be in error, idle, and have no image (a published one needs reset state instead)."""
    reason = _volume_retry_check(operation, expected=EventState.ERROR)
    if not reason and pool_driver(operation.volume.pool).exists(operation.volume.image_name):
        return Words("retry_image_exists")
    return reason


# The state a volume is populated in, by the kind that populates it (a retry moves it back there).
POPULATING_STATES = {
    OperationKind.VOLUME_CREATE: EventState.CREATING,
    OperationKind.VOLUME_IMPORT: EventState.IMPORTING,
    OperationKind.CLONE_FULL: EventState.CLONING,
    OperationKind.BACKUP_RESTORE: EventState.RESTORING,
}


def population_retry(operation: Operation, actor: str) -> Operation:
    """Populate the volume again: error -> its populating state (audited), and a new operation with
    the same parameters; a copy reserves its space in the pool again (or is refused, 5201)."""
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    reservation = None
    if operation.kind in (OperationKind.CLONE_FULL, OperationKind.BACKUP_RESTORE):
        reservation = pool_reservation(volume.pool, operation.reserved_bytes)
    transition(
        volume,
        allowed=[EventState.ERROR],
        to=POPULATING_STATES[operation.kind],
        action="volume.retry",
        actor=actor,
        message=f"retry of operation {operation.uuid}",
    )
    return _requeue(
        operation, actor, drop=("used",), bytes_total=operation.bytes_total, reservation=reservation
    )


def _full_clone_retry_check(operation: Operation) -> str:
    """A full clone is copied again from the same snapshot: it must still be readable, and no layer
    of its volume may be being rewritten (the copy reads every layer down the chain)."""
    reason = population_retry_check(operation)
    if reason:
        return reason
    snapshot = Snapshot.objects.select_related("volume").filter(uuid=operation.params.get("snapshot")).first()
    return source_snapshot_retry_check(snapshot)


def source_snapshot_retry_check(snapshot: Snapshot | None) -> str:
    """Why a copy cannot be made again from its source snapshot ("" when it can): the snapshot must
    still exist and be readable (a full clone's and a backup's retry read it again)."""
    if snapshot is None:
        return "its source snapshot is gone"
    if not snapshot_readable(snapshot):
        return f"its source snapshot is {snapshot.get_status_display()}"
    return ""


def _full_clone_retry(operation: Operation, actor: str) -> Operation:
    # The rule a new clone checks (private to the clone service: one home, read from there).
    from volumes.services.clones import _refuse_if_layers_rewritten as refuse_if_layers_rewritten

    snapshot = Snapshot.objects.select_related("volume").get(uuid=operation.params["snapshot"])
    # Locks the source's chain as a new clone does: a delete or rollback of it sees this reader.
    refuse_if_layers_rewritten(snapshot.volume, action="clone", action_cn="克隆")
    return population_retry(operation, actor)


def _delete_retry_check(operation: Operation) -> str:
    return _volume_retry_check(operation, expected=EventState.DELETING)


def _delete_retry(operation: Operation, actor: str) -> Operation:
    return _requeue(operation, actor)


register_retry(OperationKind.VOLUME_CREATE, population_retry_check, population_retry)
register_retry(OperationKind.VOLUME_IMPORT, population_retry_check, population_retry)
register_retry(OperationKind.CLONE_FULL, _full_clone_retry_check, _full_clone_retry)
register_retry(OperationKind.VOLUME_DELETE, _delete_retry_check, _delete_retry)
