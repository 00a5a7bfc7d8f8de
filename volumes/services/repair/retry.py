"""Retry of a failed operation: the app that owns a kind says when and how it is safely retried."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.operations import operation_create
from sharestore.core.services.state import audit, transition
from volumes.choices import EventState
from volumes.services.repair.common import active_operations_filter
from volumes.services.repair.words import Words
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
    operation: Operation, actor: str, *, drop: tuple[str, ...] = (), bytes_total: int = 0
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
    )


def _create_retry_check(operation: Operation) -> str:
    reason = _volume_retry_check(operation, expected=EventState.ERROR)
    if not reason and pool_driver(operation.volume.pool).exists(operation.volume.image_name):
        return Words("retry_image_exists")
    return reason


def _create_retry(operation: Operation, actor: str) -> Operation:
    to = EventState.IMPORTING if operation.kind == OperationKind.VOLUME_IMPORT else EventState.CREATING
    transition(
        operation.volume,
        allowed=[EventState.ERROR],
        to=to,
        action="volume.retry",
        actor=actor,
        message=f"retry of operation {operation.uuid}",
    )
    return _requeue(operation, actor, drop=("used",), bytes_total=operation.bytes_total)


def _delete_retry_check(operation: Operation) -> str:
    return _volume_retry_check(operation, expected=EventState.DELETING)


def _delete_retry(operation: Operation, actor: str) -> Operation:
    return _requeue(operation, actor)


register_retry(OperationKind.VOLUME_CREATE, _create_retry_check, _create_retry)
register_retry(OperationKind.VOLUME_IMPORT, _create_retry_check, _create_retry)
register_retry(OperationKind.VOLUME_DELETE, _delete_retry_check, _delete_retry)
