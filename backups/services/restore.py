"""Backup restore: reserve a new volume and copy a backup's content into it."""

from __future__ import annotations

import uuid as uuid_lib

from django.db import transaction

from backups import choices
from backups.models import Backup
from backups.secrets import backup_encryption
from backups.services.common import (
    backup_of,
    backup_store,
    lock_completed_backup,
)
from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_start
from volumes.choices import EventState
from volumes.models import Cluster, Pool, Tenant, Volume
from volumes.services.shapes import VolumeShape
from volumes.services.space import pool_reservation
from volumes.services.volumes import (
    operation_volume,
    pool_driver,
    volume_population_failed,
    volume_population_succeeded,
    volume_reserve,
)

# -- restore -------------------------------------------------------------------------------------


def backup_restore(
    *, actor: str, backup: Backup, tenant: Tenant, cluster: Cluster, pool: Pool, name: str
) -> Volume:
    """Reserve a new volume in `restoring` and queue the copy of the backup's content into it.

    The backup's chain is read from the backup point only: the source volume and its snapshots may
    be gone. The new volume gets the backup's capacity, type and the source's SnapCap. The space the
    copy needs is measured first (a qemu-img read of the chain, out of the transaction) and reserved
    in the pool under its lock, or the restore is refused at once (5201).
    """
    needed = 0
    if backup.status == choices.BackupStatus.COMPLETED:
        needed = backup_store(backup.backup_point).restore_needs(backup.file_name, backup.volume_capacity)
    return _backup_restore_begin(
        actor=actor, backup=backup, tenant=tenant, cluster=cluster, pool=pool, name=name, needed=needed
    )


@transaction.atomic
def _backup_restore_begin(
    *, actor: str, backup: Backup, tenant: Tenant, cluster: Cluster, pool: Pool, name: str, needed: int
) -> Volume:
    point, backup = lock_completed_backup(backup, action="restored", action_cn="恢复")
    backup_store(point).check_available(point.name)
    pool_driver(pool).check_available()
    shape = VolumeShape.of_backup(backup)
    volume = volume_reserve(
        tenant=tenant, cluster=cluster, pool=pool, name=name, shape=shape, state=EventState.RESTORING
    )
    # Its lineage: the console's volume page links to this backup (volumes cannot import backups).
    Volume.objects.filter(pk=volume.pk).update(restored_from_backup_uuid=backup.uuid)
    volume.restored_from_backup_uuid = backup.uuid
    operation_start(
        volume,
        kind=OperationKind.BACKUP_RESTORE,
        actor=actor,
        volume=volume,
        params={
            "backup": str(backup.uuid),
            "backup_point": str(point.uuid),
            "source_volume": str(backup.volume_uuid),
        },
        bytes_total=backup.volume_capacity,
        reservation=pool_reservation(pool, needed),
        action="backup.restore",
        to_state=str(EventState.RESTORING.label),
        message=f"from backup {backup.name!r} ({backup.uuid}) of volume {backup.volume_uuid} in {pool.name}",
    )
    return volume


def _backup_restore_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(
        operation, allowed=[EventState.RESTORING], action="restore", with_value=False
    )
    backup = backup_of(operation)
    store = backup_store(backup.backup_point)
    total = backup.volume_capacity
    if not driver.exists(volume.image_name):
        # A dead attempt's partial is ours now (the lease is); ours is tagged so a lost lease never
        # publishes another attempt's copy.
        driver.discard_partials(volume.image_name)
        reporter.phase("copying the backup into the volume")
        tag = f"a{operation.attempts}-{uuid_lib.uuid4().hex[:8]}"
        with backup_encryption(store, backup):
            partial = driver.restore_export(
                store.path(backup.file_name),
                volume.image_name,
                volume.capacity,
                tag,
                lambda p, _done=0, _total=0: reporter.progress(p, int(total * p / 100), total),
            )
        reporter.heartbeat()
        if reporter.lost:
            driver.remove_object(partial)
            raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")
        reporter.phase("publishing")
        driver.publish_partial(partial, volume.image_name)
    image = driver.info(volume.image_name)
    if image.virtual_size != volume.capacity:
        raise errors.StorageError(
            reason=f"restored image has {image.virtual_size} bytes, expected {volume.capacity}"
        )
    operation.params["used"] = image.allocated


def _backup_restore_succeed(operation: Operation) -> None:
    volume_population_succeeded(operation, populating=[EventState.RESTORING], action="backup.restore.finish")


def _backup_restore_fail(operation: Operation, error: errors.ServiceError) -> None:
    volume_population_failed(operation, error, populating=EventState.RESTORING, action="backup.restore.fail")


BACKUP_RESTORE_HANDLER = OperationHandler(
    run=_backup_restore_run, succeed=_backup_restore_succeed, fail=_backup_restore_fail
)
