"""Writes on backup points and backups: add (full or incremental), delete (merging into a dependent),
restore into a new volume, verification, expiry; and the handlers their tasks run.

Each public function validates everything before it writes, so a rejected request changes nothing.
Storage work runs in the task entry (`sharestore.core.tasks`) through `operation_run`; files are `backups.storage`'s.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid as uuid_lib

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from backups import choices
from backups.models import Backup, BackupPoint, BackupVerification
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_create, operation_run
from sharestore.core.services.state import audit, transition
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.models import Cluster, Pool, Snapshot, Tenant, Volume
from volumes.services.pools import validate_byte_capacity, validate_directory
from volumes.services.volumes import pool_driver, validate_name, volume_population_failed, volume_reserve

logger = logging.getLogger(__name__)

# Measured in bench/backup.py (docs/backups.md): see there before changing it.
DEFAULT_COMPRESS = True


@transaction.atomic
def backup_point_create(
    *,
    name: str,
    cluster: Cluster,
    path: str,
    capacity: int,
    btype: str = "local",
    tenant: Tenant | None = None,
    uuid=None,
) -> BackupPoint:
    """Register a directory as a backup point (or return the one with this UUID)."""
    if uuid is not None:
        existing = BackupPoint.objects.filter(uuid=uuid).first()
        if existing is not None:
            return existing
    name = validate_name(name, field="name")
    path = validate_directory(path)
    capacity = validate_byte_capacity(capacity)
    return BackupPoint.objects.create(
        uuid=uuid or uuid_lib.uuid4(),
        name=name,
        cluster=cluster,
        path=path,
        capacity=capacity,
        btype=btype,
        tenant=tenant,
    )


# -- backups -------------------------------------------------------------------------------------
# Life of a backup (docs/backups.md): backup_add records it BackupStarted and queues the operation;
# the task moves it to BackupRunning, writes the file under a temporary name, publishes it by
# rename, hashes the snapshot's content, and the operation's succeed handler marks it
# BackupCompleted with its size and checksum, or its fail handler removes every file it may have
# left and marks it BackupFailed. Deleting moves it to BackupDeleting, merges it into its dependent
# (if an incremental backup sits on it), removes its file, and ends at BackupDeleted.

DESC_MAX_LENGTH = 1024
# Epoch seconds beyond this are not dates (year 9999): refused rather than stored.
MAX_EPOCH = 253402300799


def default_compress() -> bool:
    """Whether backups are zstd-compressed unless the request says (SHARESTORE_BACKUP_COMPRESS)."""
    return bool(getattr(settings, "SHARESTORE_BACKUP_COMPRESS", DEFAULT_COMPRESS))


def backup_store(point: BackupPoint) -> BackupStore:
    return BackupStore(point.path)


def _validate_desc(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.InvalidParameter(field="desc", reason="must be a string")
    if len(value) > DESC_MAX_LENGTH:
        raise errors.InvalidParameter(field="desc", reason=f"longer than {DESC_MAX_LENGTH} characters")
    return value


def _validate_expired_time(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_EPOCH:
        raise errors.InvalidParameter(
            field="expired_time", reason="must be epoch seconds (0 = never expires)"
        )
    return value


def _lock_point(point: BackupPoint) -> BackupPoint:
    """Lock the backup point's row: capacity and per-chain checks hold until the transaction commits."""
    locked = BackupPoint.objects.select_for_update().filter(pk=point.pk).first()
    if locked is None:
        raise errors.BackupPointNotFound(uuid=point.uuid)
    return locked


def _chain_busy(
    *, point: BackupPoint, volume_uuid, exclude_backup_id: int | None = None, readers: bool
) -> list[str]:
    """What works on the volume's backups on this point now: backups being written or deleted and,
    with `readers`, restores and verifications reading them."""
    busy = []
    writing = Backup.objects.filter(
        backup_point=point, volume_uuid=volume_uuid, status__in=choices.IN_PROGRESS_STATUSES
    ).exclude(pk=exclude_backup_id)
    busy += [f"backup {b.uuid} {b.status}" for b in writing.only("uuid", "status")]
    if readers:
        reading = Operation.objects.filter(
            kind__in=[OperationKind.BACKUP_RESTORE, OperationKind.BACKUP_VERIFY],
            state__in=ACTIVE_OPERATION_STATES,
            params__backup_point=str(point.uuid),
            params__source_volume=str(volume_uuid),
        )
        busy += [f"{o.kind} {o.uuid}" for o in reading.only("uuid", "kind")]
    return busy


def _point_used(point: BackupPoint) -> int:
    total = Backup.objects.filter(backup_point=point, status__in=choices.SPACE_HOLDING_STATUSES).aggregate(
        total=Sum("size")
    )["total"]
    return total or 0


def _estimate(snapshot: Snapshot, base: Backup | None, capacity: int) -> int:
    """Bytes the backup may write, from recorded layer sizes (no storage access in a request).

    Full: every layer under the snapshot. Incremental: the layers above the base's snapshot, when
    it is an ancestor; otherwise (rollback, merged layers) the full estimate. Capped at the volume's
    capacity plus qcow2 metadata.
    """
    layers = {
        pk: (parent, size)
        for pk, parent, size in Snapshot.objects.filter(volume_id=snapshot.volume_id).values_list(
            "pk", "parent_id", "size"
        )
    }
    stop = base.snapshot_id if base is not None else None
    total, node, seen, reached = 0, snapshot.pk, set(), stop is None
    while node is not None and node in layers and node not in seen:
        if node == stop:
            reached = True
            break
        seen.add(node)
        total += layers[node][1]
        node = layers[node][0]
    if not reached:
        total = sum(layers[n][1] for n in seen) + (0 if node is None else capacity)
    metadata = capacity // 8192 + (1 << 20)  # L1/L2 tables and refcounts, generously
    return min(total, capacity) + metadata


@transaction.atomic
def backup_add(
    *,
    actor: str,
    volume: Volume,
    snapshot: Snapshot,
    backup_point: BackupPoint,
    name: str,
    desc: str = "",
    compress: bool | None = None,
    full: bool = False,
    expired_time: int | None = 0,
    protected: bool = False,
) -> Backup:
    """Record a backup of the snapshot in BackupStarted and queue the operation that writes it.

    The first backup of a volume on a backup point is full; later ones are incremental on the most
    recent completed one there, unless `full`. While it is started or running, the snapshot layers
    of the volume are not merged or rolled back (the snapshot service counts this backup as a reader).
    """
    name = validate_name(name, field="backup_name")
    desc = _validate_desc(desc)
    expired_time = _validate_expired_time(expired_time)
    compress = default_compress() if compress is None else bool(compress)
    # Lock the volume first, as snapshot delete and rollback do: either they see this backup as a
    # reader of the layers, or this sees the volume busy merging or rolling back.
    locked = (
        Volume.objects.select_for_update(of=("self",)).select_related("pool").filter(pk=volume.pk).first()
    )
    if locked is None or locked.state != EventState.AVAILABLE:
        state = "gone" if locked is None else f"{locked.state} ({locked.get_state_display()})"
        raise errors.StateConflict(kind="volume", uuid=volume.uuid, state=state, action="backup.add")
    volume = locked
    requested = snapshot
    snapshot = Snapshot.objects.filter(pk=requested.pk, volume=volume).first()
    if snapshot is None:
        raise errors.SnapshotNotFound(uuid=requested.uuid, volume=volume.uuid)
    if snapshot.status != SnapshotStatus.AVAILABLE:
        raise errors.StateConflict(
            kind="snapshot",
            uuid=snapshot.uuid,
            state=f"{snapshot.status} ({snapshot.get_status_display()})",
            action="backup.add",
        )
    point = _lock_point(backup_point)
    store = backup_store(point)
    store.check_available(point.name)
    busy = _chain_busy(point=point, volume_uuid=volume.uuid, readers=False)
    if busy:
        raise errors.BackupChainBusy(volume=volume.uuid, point=point.name, busy=", ".join(busy))
    base = None
    if not full:
        base = (
            Backup.objects.filter(
                backup_point=point, volume_uuid=volume.uuid, status=choices.BackupStatus.COMPLETED
            )
            .order_by("-created", "-id")
            .first()
        )
    estimate = _estimate(snapshot, base, volume.capacity)
    used = _point_used(point)
    if used + estimate > point.capacity:
        raise errors.BackupPointFull(
            point=point.name,
            needed=estimate,
            available=max(point.capacity - used, 0),
            reason="recorded capacity",
        )
    free = store.free_bytes()
    if estimate > free:
        raise errors.BackupPointFull(
            point=point.name, needed=estimate, available=free, reason="filesystem free space"
        )
    backup_uuid = uuid_lib.uuid4()
    backup = Backup.objects.create(
        uuid=backup_uuid,
        name=name,
        desc=desc,
        backup_point=point,
        tenant=volume.tenant,
        cluster=volume.cluster,
        volume=volume,
        volume_uuid=volume.uuid,
        volume_capacity=volume.capacity,
        volume_type=volume.volume_type,
        volume_snap_cap=volume.snap_cap,
        snapshot=snapshot,
        snapshot_uuid=snapshot.uuid,
        snapshot_name=snapshot.name,
        base=base,
        status=choices.BackupStatus.STARTED,
        file_name=BackupStore.file_name(volume.uuid, backup_uuid),
        size=estimate,  # a reservation until the file's real size replaces it
        compressed=compress,
        expired_time=expired_time,
        protected=protected,
    )
    operation = operation_create(
        kind=OperationKind.BACKUP_CREATE,
        target_type="backup",
        target_uuid=backup.uuid,
        actor=actor,
        volume=volume,
        params={"backup": str(backup.uuid)},
        bytes_total=volume.capacity,
    )
    audit(
        actor=actor,
        action="backup.add",
        object_type="backup",
        object_uuid=backup.uuid,
        volume_id=volume.pk,
        operation_id=operation.pk,
        to_state=choices.BackupStatus.STARTED,
        message=(
            f"{'incremental on ' + str(base.uuid) if base else 'full'} backup of snapshot {snapshot.name!r} "
            f"to {point.name}{' (zstd)' if compress else ''}; reserved {estimate} bytes"
        ),
    )
    return backup


def _backup_of(operation: Operation) -> Backup:
    return Backup.objects.select_related("backup_point", "snapshot", "base", "volume__pool").get(
        uuid=operation.params["backup"]
    )


def _snapshot_source(backup: Backup) -> tuple[str, StorageDriver, Volume]:
    """The snapshot layer's path in its pool (read with its backing chain), its driver and volume."""
    snapshot = backup.snapshot
    if snapshot is None or backup.volume is None:
        raise errors.StorageError(reason=f"snapshot {backup.snapshot_uuid} of backup {backup.uuid} is gone")
    volume = Volume.objects.select_related("pool").get(pk=snapshot.volume_id)
    driver = pool_driver(volume.pool)
    if not driver.exists(snapshot.layer_name):
        raise errors.StorageError(
            reason=f"layer {snapshot.layer_name} of snapshot {snapshot.uuid} is missing"
        )
    return driver.path(snapshot.layer_name), driver, volume


def _source_base(backup: Backup, driver: StorageDriver) -> str | None:
    """The base backup's snapshot layer, if it is still in the new snapshot's backing chain (same content:
    a layer keeps its snapshot's guest-visible content for as long as it exists)."""
    base_snapshot = backup.base.snapshot if backup.base is not None else None
    if base_snapshot is None or not driver.exists(base_snapshot.layer_name):
        return None
    chain = driver.backing_chain(backup.snapshot.layer_name)
    if base_snapshot.layer_name not in chain[1:]:
        return None
    return driver.path(base_snapshot.layer_name)


def _backup_create_run(operation: Operation, reporter: Reporter) -> None:
    backup = _backup_of(operation)
    transition(
        backup,
        field="status",
        allowed=[choices.BackupStatus.STARTED, choices.BackupStatus.RUNNING],
        to=choices.BackupStatus.RUNNING,
        action="backup.run",
        actor=operation.requested_by,
        object_type="backup",
        volume_id=backup.volume_id,
        operation_id=operation.pk,
    )
    store = backup_store(backup.backup_point)
    store.check_available(backup.backup_point.name)
    source, driver, _volume = _snapshot_source(backup)

    def writing(percent: float) -> None:
        reporter.progress(percent * 0.7, int(backup.volume_capacity * percent / 100), backup.volume_capacity)

    if store.exists(backup.file_name):
        reporter.phase("written before an interruption")
    elif backup.base is None:
        reporter.phase("writing a full backup")
        store.write_full(source, backup.file_name, compress=backup.compressed, progress=writing)
    else:
        if backup.base.status != choices.BackupStatus.COMPLETED or not store.exists(backup.base.file_name):
            raise errors.StorageError(
                reason=f"base backup {backup.base.uuid} is {backup.base.status} or its file is missing"
            )
        source_base = _source_base(backup, driver)
        reporter.phase(
            "writing an incremental backup"
            + (" (layers since the base)" if source_base else " (content diff)")
        )
        store.write_incremental(
            source,
            backup.file_name,
            base_name=backup.base.file_name,
            source_base=source_base,
            compress=backup.compressed,
            progress=writing,
        )
    reporter.progress(70, force=True)
    if reporter.lost:
        raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")
    reporter.phase("hashing the snapshot's content")
    checksum, count = store.content_checksum(source)
    if count != backup.volume_capacity:
        raise errors.StorageError(
            reason=f"read {count} bytes of snapshot {backup.snapshot_uuid}, expected {backup.volume_capacity}"
        )
    operation.params["checksum"] = checksum
    operation.params["size"] = store.disk_usage(backup.file_name)


def _backup_create_succeed(operation: Operation) -> None:
    backup = _backup_of(operation)
    transition(
        backup,
        field="status",
        allowed=[choices.BackupStatus.RUNNING],
        to=choices.BackupStatus.COMPLETED,
        action="backup.finish",
        actor=operation.requested_by,
        object_type="backup",
        volume_id=backup.volume_id,
        operation_id=operation.pk,
        extra={"size": operation.params["size"], "checksum": operation.params["checksum"]},
        message=f"{operation.params['size']} bytes, sha256 {operation.params['checksum']}",
    )


def _backup_create_fail(operation: Operation, error: errors.ServiceError) -> None:
    backup = _backup_of(operation)
    if backup.status not in (choices.BackupStatus.STARTED, choices.BackupStatus.RUNNING):
        return
    # No file may survive that could be taken for a complete backup.
    try:
        backup_store(backup.backup_point).remove(backup.file_name)
    except OSError as exc:
        logger.warning("could not remove the files of failed backup %s: %s", backup.uuid, exc)
    transition(
        backup,
        field="status",
        allowed=[choices.BackupStatus.STARTED, choices.BackupStatus.RUNNING],
        to=choices.BackupStatus.FAILED,
        action="backup.fail",
        actor=operation.requested_by,
        object_type="backup",
        volume_id=backup.volume_id,
        operation_id=operation.pk,
        extra={"size": 0},
        error=error,
    )


BACKUP_CREATE_HANDLER = OperationHandler(
    run=_backup_create_run, succeed=_backup_create_succeed, fail=_backup_create_fail
)


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
    point = _lock_point(backup.backup_point)
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
    busy = _chain_busy(point=point, volume_uuid=backup.volume_uuid, exclude_backup_id=backup.pk, readers=True)
    if busy:
        raise errors.BackupChainBusy(volume=backup.volume_uuid, point=point.name, busy=", ".join(busy))
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
        transition(
            backup,
            field="status",
            allowed=[choices.BackupStatus.COMPLETED, choices.BackupStatus.FAILED],
            to=choices.BackupStatus.DELETING,
            action="backup.delete",
            actor=actor,
            object_type="backup",
            volume_id=backup.volume_id,
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
    backup = _backup_of(operation)
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
    store.remove(backup.file_name)


def _apply_merge(operation: Operation, backup: Backup, dependent: Backup) -> None:
    Backup.objects.filter(pk=dependent.pk).update(
        base=backup.base, size=operation.params["dependent_size"], modified=timezone.now()
    )
    audit(
        actor=operation.requested_by,
        action="backup.merge",
        object_type="backup",
        object_uuid=dependent.uuid,
        volume_id=dependent.volume_id,
        operation_id=operation.pk,
        message=(
            f"backup {backup.uuid} merged in; now "
            + (f"incremental on {backup.base.uuid}" if backup.base else "a full backup")
        ),
    )


def _backup_delete_succeed(operation: Operation) -> None:
    backup, dependent, _store, _new_base = _delete_context(operation)
    if dependent is not None:
        _apply_merge(operation, backup, dependent)
    transition(
        backup,
        field="status",
        allowed=[choices.BackupStatus.DELETING],
        to=choices.BackupStatus.DELETED,
        action="backup.delete.finish",
        actor=operation.requested_by,
        object_type="backup",
        volume_id=backup.volume_id,
        operation_id=operation.pk,
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
        transition(
            backup,
            field="status",
            allowed=[choices.BackupStatus.DELETING],
            to=operation.params.get("from") or choices.BackupStatus.COMPLETED,
            action="backup.delete.fail",
            actor=operation.requested_by,
            object_type="backup",
            volume_id=backup.volume_id,
            operation_id=operation.pk,
            message=message,
        )
        return
    # Half done: the row stays out of service in BackupDeleting; deleting it again finishes the work.
    audit(
        actor=operation.requested_by,
        action="backup.delete.stuck",
        object_type="backup",
        object_uuid=backup.uuid,
        volume_id=backup.volume_id,
        operation_id=operation.pk,
        result="failed",
        message=message,
    )


BACKUP_DELETE_HANDLER = OperationHandler(
    run=_backup_delete_run, succeed=_backup_delete_succeed, fail=_backup_delete_fail
)


# -- restore -------------------------------------------------------------------------------------


@transaction.atomic
def backup_restore(
    *, actor: str, backup: Backup, tenant: Tenant, cluster: Cluster, pool: Pool, name: str
) -> Volume:
    """Reserve a new volume in `restoring` and queue the copy of the backup's content into it.

    The backup's chain is read from the backup point only: the source volume and its snapshots may
    be gone. The new volume gets the backup's capacity, type and the source's SnapCap.
    """
    point = _lock_point(backup.backup_point)
    backup = Backup.objects.get(pk=backup.pk)
    if backup.status != choices.BackupStatus.COMPLETED:
        raise errors.BackupNotRestorable(
            uuid=backup.uuid, status=backup.status, action="restored", action_cn="恢复"
        )
    busy = [
        b for b in _chain_busy(point=point, volume_uuid=backup.volume_uuid, readers=False) if "Deleting" in b
    ]
    if busy:
        raise errors.BackupChainBusy(volume=backup.volume_uuid, point=point.name, busy=", ".join(busy))
    backup_store(point).check_available(point.name)
    pool_driver(pool).check_available()
    volume = volume_reserve(
        tenant=tenant,
        cluster=cluster,
        pool=pool,
        name=name,
        volume_type=backup.volume_type,
        capacity=backup.volume_capacity,
        snap_capacity=backup.volume_snap_cap,
        state=EventState.RESTORING,
    )
    operation = operation_create(
        kind=OperationKind.BACKUP_RESTORE,
        target_type="volume",
        target_uuid=volume.uuid,
        actor=actor,
        volume=volume,
        params={
            "backup": str(backup.uuid),
            "backup_point": str(point.uuid),
            "source_volume": str(backup.volume_uuid),
        },
        bytes_total=backup.volume_capacity,
    )
    audit(
        actor=actor,
        action="backup.restore",
        object_type="volume",
        object_uuid=volume.uuid,
        volume_id=volume.pk,
        operation_id=operation.pk,
        to_state=str(EventState.RESTORING.label),
        message=f"from backup {backup.name!r} ({backup.uuid}) of volume {backup.volume_uuid} in {pool.name}",
    )
    return volume


def _backup_restore_run(operation: Operation, reporter: Reporter) -> None:
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    if volume.state != EventState.RESTORING:
        raise errors.StateConflict(
            kind="volume", uuid=volume.uuid, state=volume.get_state_display(), action="restore"
        )
    backup = _backup_of(operation)
    store = backup_store(backup.backup_point)
    driver = pool_driver(volume.pool)
    total = backup.volume_capacity
    reporter.phase("copying the backup into the volume")
    store.restore(
        backup.file_name,
        driver.path(volume.image_name),
        progress=lambda p: reporter.progress(p, int(total * p / 100), total),
    )
    image = driver.info(volume.image_name)
    if image.virtual_size != volume.capacity:
        raise errors.StorageError(
            reason=f"restored image has {image.virtual_size} bytes, expected {volume.capacity}"
        )
    operation.params["used"] = image.allocated


def _backup_restore_succeed(operation: Operation) -> None:
    volume = Volume.objects.get(pk=operation.volume_id)
    transition(
        volume,
        allowed=[EventState.RESTORING],
        to=EventState.AVAILABLE,
        action="backup.restore.finish",
        actor=operation.requested_by,
        operation_id=operation.pk,
        extra={"used": operation.params.get("used", 0)},
    )


def _backup_restore_fail(operation: Operation, error: errors.ServiceError) -> None:
    volume_population_failed(operation, error, populating=EventState.RESTORING, action="backup.restore.fail")


BACKUP_RESTORE_HANDLER = OperationHandler(
    run=_backup_restore_run, succeed=_backup_restore_succeed, fail=_backup_restore_fail
)


# -- verification --------------------------------------------------------------------------------


def verify_scratch_dir() -> str:
    """Where verification restores to (SHARESTORE_BACKUP_VERIFY_DIR, default <data dir>/verify)."""
    configured = getattr(settings, "SHARESTORE_BACKUP_VERIFY_DIR", None)
    path = str(configured or os.path.join(settings.SHARESTORE_DATA_DIR, "verify"))
    os.makedirs(path, exist_ok=True)
    return path


def backup_verify(*, actor: str, backup: Backup) -> BackupVerification:
    """Restore the backup to a temporary image, `qemu-img check` it and compare its content's SHA-256 with
    the one recorded at backup time. Runs in the caller (a command or a scheduled task) as an operation,
    so progress shows and a crash is swept; the result is stored on the backup and in its history."""
    with transaction.atomic():
        point = _lock_point(backup.backup_point)
        backup = Backup.objects.get(pk=backup.pk)
        if backup.status != choices.BackupStatus.COMPLETED:
            raise errors.BackupNotRestorable(
                uuid=backup.uuid, status=backup.status, action="verified", action_cn="校验"
            )
        busy = [
            b
            for b in _chain_busy(point=point, volume_uuid=backup.volume_uuid, readers=False)
            if "Deleting" in b
        ]
        if busy:
            raise errors.BackupChainBusy(volume=backup.volume_uuid, point=point.name, busy=", ".join(busy))
        verification = BackupVerification.objects.create(
            backup=backup, actor=actor[:128], checksum_expected=backup.checksum
        )
        operation = Operation.objects.create(
            kind=OperationKind.BACKUP_VERIFY,
            target_type="backup",
            target_uuid=backup.uuid,
            volume=backup.volume,
            requested_by=actor[:128],
            bytes_total=backup.volume_capacity,
            params={
                "backup": str(backup.uuid),
                "verification": verification.pk,
                "backup_point": str(point.uuid),
                "source_volume": str(backup.volume_uuid),
            },
        )
    operation_run(operation.pk, BACKUP_VERIFY_HANDLER)
    verification.refresh_from_db()
    return verification


def _backup_verify_run(operation: Operation, reporter: Reporter) -> None:
    backup = _backup_of(operation)
    store = backup_store(backup.backup_point)
    workdir = tempfile.mkdtemp(prefix=f"verify-{backup.uuid}-", dir=verify_scratch_dir())
    try:
        reporter.phase("checking the backup files")
        for name in store.chain(backup.file_name):
            report = store.check(store.path(name))
            if report["exit"] not in (0, 3):
                operation.params["check"] = report
                raise errors.BackupVerifyFailed(
                    uuid=backup.uuid, reason=f"qemu-img check of {name} exited {report['exit']}"
                )
        reporter.phase("restoring to a temporary image")
        target = os.path.join(workdir, "restored.qcow2")
        store.restore(backup.file_name, target, progress=lambda p: reporter.progress(p * 0.5))
        reporter.phase("checking the restored image")
        report = store.check(target)
        operation.params["check"] = report
        if report["exit"] not in (0, 3):
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid, reason=f"qemu-img check of the restored image exited {report['exit']}"
            )
        reporter.phase("hashing the restored image")
        found, _count = store.content_checksum(target)
        operation.params["checksum_found"] = found
        if not backup.checksum:
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid, reason="no checksum was recorded at backup time"
            )
        if found != backup.checksum:
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid,
                reason=f"content sha256 {found} differs from {backup.checksum} recorded at backup time",
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record_verification(operation: Operation, error: errors.ServiceError | None) -> None:
    now = timezone.now()
    result = choices.VerifyResult.OK if error is None else choices.VerifyResult.FAILED
    BackupVerification.objects.filter(pk=operation.params["verification"]).update(
        finished=now,
        result=result,
        scode=error.scode if error else 0,
        message=(error.render_message() + (f": {error.desc[-2000:]}" if error.desc else "")) if error else "",
        checksum_found=operation.params.get("checksum_found", ""),
        image_check={k: v for k, v in (operation.params.get("check") or {}).items()},
    )
    Backup.objects.filter(uuid=operation.params["backup"]).update(verify_result=result, verified_at=now)


BACKUP_VERIFY_HANDLER = OperationHandler(
    run=_backup_verify_run,
    succeed=lambda operation: _record_verification(operation, None),
    fail=_record_verification,
)


def backups_to_verify(*, limit: int) -> list[Backup]:
    """Completed backups, never verified first, then the longest ago."""
    return list(
        Backup.objects.filter(status=choices.BackupStatus.COMPLETED)
        .select_related("backup_point")
        .order_by(F("verified_at").asc(nulls_first=True), "created", "id")[:limit]
    )


# -- expiry and protection -----------------------------------------------------------------------


@transaction.atomic
def backup_update(
    *, actor: str, backup: Backup, expired_time: int | None = None, protected: bool | None = None
) -> Backup:
    """Change a backup's expiry (epoch seconds, 0 = never) or its protection."""
    values = {}
    if expired_time is not None:
        values["expired_time"] = _validate_expired_time(expired_time)
    if protected is not None:
        if not isinstance(protected, bool):
            raise errors.InvalidParameter(field="protected", reason="must be a boolean")
        values["protected"] = protected
    if values:
        Backup.objects.filter(pk=backup.pk).update(**values, modified=timezone.now())
        audit(
            actor=actor,
            action="backup.update",
            object_type="backup",
            object_uuid=backup.uuid,
            volume_id=backup.volume_id,
            message=", ".join(f"{k}={v}" for k, v in values.items()),
        )
    backup.refresh_from_db()
    return backup


def backups_expired(*, now: int | None = None) -> list[Backup]:
    """Backups whose ExpiredTime has passed and that are not protected, oldest first."""
    now = int(time.time()) if now is None else now
    return list(
        Backup.objects.filter(
            status__in=[choices.BackupStatus.COMPLETED, choices.BackupStatus.FAILED],
            protected=False,
            expired_time__gt=0,
            expired_time__lte=now,
        )
        .select_related("backup_point")
        .order_by("created", "id")
    )


def backups_prune(*, actor: str, dry_run: bool = False, now: int | None = None) -> list[dict]:
    """Delete every expired, unprotected backup through `backup_delete` (dependents are merged, so they
    stay restorable). One whose chain is busy is skipped and picked up by the next run."""
    results = []
    for backup in backups_expired(now=now):
        entry = {"uuid": str(backup.uuid), "name": backup.name, "expired_time": backup.expired_time}
        if dry_run:
            dependents = backup.dependents.filter(status=choices.BackupStatus.COMPLETED).values_list(
                "uuid", flat=True
            )
            entry.update(action="would delete", merge_into=[str(u) for u in dependents])
        else:
            try:
                operation = backup_delete(
                    actor=actor, backup=backup, reason=f"expired at {backup.expired_time}"
                )
            except errors.ServiceError as exc:
                entry.update(action="skipped", scode=exc.scode, reason=exc.render_message())
            else:
                operation.refresh_from_db()
                entry.update(action="deleting", operation=str(operation.uuid), state=operation.state)
        results.append(entry)
    return results
