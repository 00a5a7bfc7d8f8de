"""Retry of a failed restore: the volume is populated again from the same backup, which must still be
complete and readable (its point available, no backup of its chain being deleted)."""

from __future__ import annotations

from backups import choices
from backups.models import Backup
from backups.services.common import backup_store, lock_completed_backup
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from volumes.services.repair.retry import population_retry, population_retry_check, register_retry


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


def register() -> None:
    register_retry(OperationKind.BACKUP_RESTORE, _restore_retry_check, _restore_retry)
