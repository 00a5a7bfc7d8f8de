"""django-q2 tasks: plain functions taking primary keys. Each is idempotent: it claims its
operation by compare-and-set and does nothing if the operation is finished or held by a live owner."""

from volumes.services.operations import operation_run, operations_sweep
from volumes.services.volumes import VOLUME_CREATE_HANDLER, VOLUME_DELETE_HANDLER


def volume_create_task(operation_id: int) -> None:
    operation_run(operation_id, VOLUME_CREATE_HANDLER)


def volume_delete_task(operation_id: int) -> None:
    operation_run(operation_id, VOLUME_DELETE_HANDLER)


def sweep_task() -> int:
    """Scheduled: re-enqueue operations whose lease expired, so their handlers finish or roll back."""
    return len(operations_sweep())


def snapshot_create_task(operation_id: int) -> None:
    from volumes.services.snapshots import SNAPSHOT_CREATE_HANDLER

    operation_run(operation_id, SNAPSHOT_CREATE_HANDLER)


def snapshot_delete_task(operation_id: int) -> None:
    from volumes.services.snapshots import SNAPSHOT_DELETE_HANDLER

    operation_run(operation_id, SNAPSHOT_DELETE_HANDLER)


def snapshot_rollback_task(operation_id: int) -> None:
    from volumes.services.snapshots import SNAPSHOT_ROLLBACK_HANDLER

    operation_run(operation_id, SNAPSHOT_ROLLBACK_HANDLER)


def clone_linked_task(operation_id: int) -> None:
    from volumes.services.clones import CLONE_LINKED_HANDLER

    operation_run(operation_id, CLONE_LINKED_HANDLER)


def clone_full_task(operation_id: int) -> None:
    from volumes.services.clones import CLONE_FULL_HANDLER

    operation_run(operation_id, CLONE_FULL_HANDLER)


def volume_flatten_task(operation_id: int) -> None:
    from volumes.services.clones import FLATTEN_HANDLER

    operation_run(operation_id, FLATTEN_HANDLER)
