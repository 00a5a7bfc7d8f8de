"""Backup delete: move it to BackupDeleting, merge it into its dependent incremental backup (if any)
and remove its file; the handlers that do it."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from backups import choices, chunks
from backups.models import Backup
from backups.services.common import (
    backup_moves,
    backup_of,
    backup_store,
    lock_point,
    require_chain_idle,
)
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_create
from sharestore.core.services.state import OperationContext, audit_of, status_transition

# -- delete --------------------------------------------------------------------------------------

DELETABLE_STATUSES = [
    choices.BackupStatus.COMPLETED,
    choices.BackupStatus.FAILED,
    choices.BackupStatus.DELETING,
]


@transaction.atomic
def backup_delete(*, actor: str, backup: Backup, reason: str = "") -> Operation:
    """Move the backup to BackupDeleting and queue the removal of its file.

    An incremental backup that sits on this one is kept restorable: the task merges this backup's
    data into it first (it then sits on this backup's base, or becomes full). A protected backup is
    refused; so is one whose chain is busy (a backup being written, merged, restored or verified).
    A backup left in BackupDeleting by a failed delete can be deleted again.
    """
    point = lock_point(backup.backup_point)
    backup = Backup.objects.select_related("base").get(pk=backup.pk)
    if backup.protected:
        raise errors.BackupProtected(uuid=backup.uuid)
    if backup.status not in DELETABLE_STATUSES:
        raise errors.StateConflict(
            kind="backup", uuid=backup.uuid, state=backup.status, action="backup.delete"
        )
    if (
        backup.status == choices.BackupStatus.DELETING
        and Operation.objects.filter(
            target_uuid=backup.uuid, kind=OperationKind.BACKUP_DELETE, state__in=ACTIVE_OPERATION_STATES
        ).exists()
    ):
        raise errors.StateConflict(
            kind="backup", uuid=backup.uuid, state=backup.status, action="backup.delete"
        )
    require_chain_idle(point=point, volume_uuid=backup.volume_uuid, exclude_backup_id=backup.pk, readers=True)
    dependents = list(
        backup.dependents.exclude(status__in=[choices.BackupStatus.DELETED, choices.BackupStatus.FAILED])
    )
    if len(dependents) > 1:
        raise errors.BackupHasDependents(
            uuid=backup.uuid, dependents=", ".join(str(d.uuid) for d in dependents)
        )
    dependent = dependents[0] if dependents else None
    # A failed backup has no file to merge: a dependent on it was broken already and stays so.
    merge = dependent is not None and backup.status != choices.BackupStatus.FAILED
    previous = backup.status
    if backup.status != choices.BackupStatus.DELETING:
        status_transition(
            backup,
            OperationContext(actor=actor),
            allowed=[choices.BackupStatus.COMPLETED, choices.BackupStatus.FAILED],
            to=choices.BackupStatus.DELETING,
            action="backup.delete",
            message=(reason + "; " if reason else "")
            + (f"merging into {dependent.uuid}" if merge else "no dependent"),
        )
    return operation_create(
        kind=OperationKind.BACKUP_DELETE,
        target_type="backup",
        target_uuid=backup.uuid,
        actor=actor,
        volume=backup.volume,
        params={
            "backup": str(backup.uuid),
            "dependent": str(dependent.uuid) if merge else None,
            "from": previous if previous != choices.BackupStatus.DELETING else choices.BackupStatus.COMPLETED,
        },
    )


def _delete_context(operation: Operation) -> tuple[Backup, Backup | None, BackupStore, str | None]:
    backup = backup_of(operation)
    dependent = None
    if operation.params.get("dependent"):
        dependent = Backup.objects.get(uuid=operation.params["dependent"])
    new_base = backup.base.file_name if backup.base is not None else None
    return backup, dependent, backup_store(backup.backup_point), new_base


def _backup_delete_run(operation: Operation, reporter: Reporter) -> None:
    backup, dependent, store, new_base = _delete_context(operation)
    if backup.status != choices.BackupStatus.DELETING:
        raise errors.StateConflict(
            kind="backup", uuid=backup.uuid, state=backup.status, action="backup.delete"
        )
    store.check_available(backup.backup_point.name)
    if dependent is not None:
        reporter.phase(f"merging into backup {dependent.uuid}")
        if store.exists(backup.file_name):
            store.merge_into(
                dependent.file_name,
                layer=backup.file_name,
                new_base=new_base,
                progress=lambda p: reporter.progress(p * 0.95),
            )
        elif store.backing_of(dependent.file_name) != new_base:
            raise errors.StorageError(
                reason=f"{backup.file_name} is gone but {dependent.file_name} was not merged"
            )
        operation.params["dependent_size"] = store.disk_usage(dependent.file_name)
    reporter.phase("removing the file")
    # The dependent's content did not change in the merge: its own index stays right.
    chunks.remove_index(store, backup.file_name)
    store.remove(backup.file_name)


def _leave_deleting(backup: Backup, operation: Operation, *, to, action: str, **audit) -> None:
    """The backup leaves BackupDeleting under its delete's operation: deleted, or back in service."""
    backup_moves(backup, operation, held=[choices.BackupStatus.DELETING], to=to, action=action, **audit)


def _apply_merge(operation: Operation, backup: Backup, dependent: Backup) -> None:
    Backup.objects.filter(pk=dependent.pk).update(
        base=backup.base, size=operation.params["dependent_size"], modified=timezone.now()
    )
    audit_of(
        dependent,
        OperationContext.of(operation),
        action="backup.merge",
        message=(
            f"backup {backup.uuid} merged in; now "
            + (f"incremental on {backup.base.uuid}" if backup.base else "a full backup")
        ),
    )


def _backup_delete_succeed(operation: Operation) -> None:
    backup, dependent, _store, _new_base = _delete_context(operation)
    if dependent is not None:
        _apply_merge(operation, backup, dependent)
    _leave_deleting(
        backup,
        operation,
        to=choices.BackupStatus.DELETED,
        action="backup.delete.finish",
        extra={"size": 0, "base": None},
    )


def _backup_delete_fail(operation: Operation, error: errors.ServiceError) -> None:
    backup, dependent, store, new_base = _delete_context(operation)
    message = f"scode {error.scode}: {error.render_message()}"
    try:
        merged = (
            dependent is not None
            and store.exists(dependent.file_name)
            and store.backing_of(dependent.file_name) == new_base
        )
        intact = store.exists(backup.file_name) or backup.status == choices.BackupStatus.FAILED
    except errors.ServiceError:
        merged, intact = False, False
    if merged:
        # The dependent no longer reads this backup: record that, whatever happens to this file.
        operation.params["dependent_size"] = store.disk_usage(dependent.file_name)
        _apply_merge(operation, backup, dependent)
    if intact and not merged:
        # Nothing changed that matters: the backup is back in service as it was.
        back = operation.params.get("from") or choices.BackupStatus.COMPLETED
        _leave_deleting(backup, operation, to=back, action="backup.delete.fail", message=message)
        return
    # Half done: the row stays out of service in BackupDeleting; deleting it again finishes the work.
    audit_of(
        backup, OperationContext.of(operation), action="backup.delete.stuck", result="failed", message=message
    )


BACKUP_DELETE_HANDLER = OperationHandler(
    run=_backup_delete_run, succeed=_backup_delete_succeed, fail=_backup_delete_fail
)
