"""Retries of the backups app's failed operations, through volumes' retry service.

A failed restore populates its volume again from the same backup, which must still be complete and
readable (its point available, no backup of its chain being deleted). A failed backup is asked for
again: a new backup of the same snapshot to the same point, with the same name, description,
compression, full/incremental choice, expiry and protection, through `backup_add` (every rule of a
new backup is checked again); the failed backup stays as history."""

from __future__ import annotations

from backups import choices
from backups.models import Backup
from backups.services.common import backup_store, lock_completed_backup
from backups.services.create import backup_add
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from volumes.choices import LIVE_STATES
from volumes.services.repair.retry import (
    population_retry,
    population_retry_check,
    register_retry,
    source_snapshot_retry_check,
)
from volumes.services.repair.words import Words


def _restore_retry_check(operation: Operation) -> str:
    reason = population_retry_check(operation)
    if reason:
        return reason
    backup = Backup.objects.select_related("backup_point").filter(uuid=operation.params.get("backup")).first()
    if backup is None:
        return "its backup is gone"
    if backup.status != choices.BackupStatus.COMPLETED:
        return f"its backup is {backup.get_status_display()}"
    return ""


def _restore_retry(operation: Operation, actor: str) -> Operation:
    backup = Backup.objects.select_related("backup_point").get(uuid=operation.params["backup"])
    # Holds the point's row, as a new restore does: a delete of the chain waits for this commit.
    point, backup = lock_completed_backup(backup, action="restored", action_cn="恢复")
    backup_store(point).check_available(point.name)
    return population_retry(operation, actor)


def _backup_retry_check(operation: Operation) -> str:
    # A retry makes a new backup, not a new operation on the failed one's target (which would make
    # this one superseded): look for the operation that names it.
    if Operation.objects.filter(params__retry_of=str(operation.uuid)).exists():
        return Words("retry_done")
    backup = (
        Backup.objects.select_related("volume", "snapshot")
        .filter(uuid=operation.params.get("backup"))
        .first()
    )
    if backup is None:
        return "its backup is gone"
    if backup.status != choices.BackupStatus.FAILED:
        return f"its backup is {backup.get_status_display()}"
    if backup.volume is None or backup.volume.state not in LIVE_STATES:
        return "the volume is gone"
    return source_snapshot_retry_check(backup.snapshot)


def _backup_retry(operation: Operation, actor: str) -> Operation:
    failed = Backup.objects.select_related("volume", "snapshot", "backup_point").get(
        uuid=operation.params["backup"]
    )
    backup = backup_add(
        actor=actor,
        volume=failed.volume,
        snapshot=failed.snapshot,
        backup_point=failed.backup_point,
        name=failed.name,
        desc=failed.desc,
        compress=failed.compressed,
        full=failed.base_id is None,
        expired_time=failed.expired_time,
        protected=failed.protected,
    )
    retried = Operation.objects.get(target_uuid=backup.uuid, kind=OperationKind.BACKUP_CREATE)
    retried.params["retry_of"] = str(operation.uuid)
    Operation.objects.filter(pk=retried.pk).update(params=retried.params)
    return retried


def register() -> None:
    register_retry(OperationKind.BACKUP_RESTORE, _restore_retry_check, _restore_retry)
    register_retry(OperationKind.BACKUP_CREATE, _backup_retry_check, _backup_retry)
