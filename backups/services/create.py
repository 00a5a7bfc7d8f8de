"""Backup create: record a full or incremental backup of a snapshot and queue it; the handlers that
write the file (full, or incremental on the latest completed backup of the chain)."""

from __future__ import annotations

import logging
import uuid as uuid_lib

from django.db import transaction

from backups import choices, chunks
from backups.models import Backup, BackupPoint
from backups.secrets import backup_encryption
from backups.selectors import backup_point_used
from backups.services.common import (
    backup_moves,
    backup_of,
    backup_store,
    default_compress,
    lock_point,
    require_chain_idle,
    validate_expired_time,
)
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_start
from sharestore.core.services.space import reserved_on, space_reservation
from volumes.drivers import StorageDriver
from volumes.models import Snapshot, Volume
from volumes.services.quotas import quota_check
from volumes.services.shapes import VolumeShape
from volumes.services.snapshot_rules import require_snapshot_readable
from volumes.services.volumes import pool_driver, validate_desc, validate_name, volume_lock

logger = logging.getLogger(__name__)

# A backup whose file its task is to write, or writes: the statuses its run and its failure leave.
BEING_WRITTEN = [choices.BackupStatus.STARTED, choices.BackupStatus.RUNNING]


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


def backup_plan(
    *, volume: Volume, snapshot: Snapshot, point: BackupPoint, full: bool
) -> tuple[Backup | None, int]:
    """The backup a new one would be incremental on (None: full) and the bytes it may write, from
    recorded sizes (the console's preview shows them; `backup_add` decides with them)."""
    base = None
    if not full and not point.encrypts:
        base = (
            Backup.objects.filter(
                backup_point=point, volume_uuid=volume.uuid, status=choices.BackupStatus.COMPLETED
            )
            .order_by("-created", "-id")
            .first()
        )
    return base, _estimate(snapshot, base, volume.capacity)


def _source_record(volume: Volume, snapshot: Snapshot) -> dict:
    """What a new backup row records of what it copies: the volume's tenant and cluster, the volume and
    snapshot rows, and what must outlive them (the backup still lists and restores once they are
    deleted): their UUIDs, the snapshot's name and the volume's shape."""
    return {
        "tenant": volume.tenant,
        "cluster": volume.cluster,
        "volume": volume,
        "volume_uuid": volume.uuid,
        **VolumeShape.of(volume).backup_fields(),
        "snapshot": snapshot,
        "snapshot_uuid": snapshot.uuid,
        "snapshot_name": snapshot.name,
    }


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
    desc = validate_desc(desc)
    expired_time = validate_expired_time(expired_time)
    compress = default_compress() if compress is None else bool(compress)
    # Lock the volume first, as snapshot delete and rollback do: either they see this backup as a
    # reader of the layers, or this sees the volume busy merging or rolling back.
    volume = volume_lock(volume, action="backup.add")
    requested = snapshot
    snapshot = Snapshot.objects.filter(pk=requested.pk).first()
    if snapshot is None:
        raise errors.SnapshotNotFound(uuid=requested.uuid, volume=volume.uuid)
    require_snapshot_readable(snapshot, volume, action="backup.add")
    point = lock_point(backup_point)
    store = backup_store(point)
    store.check_available(point.name)
    require_chain_idle(point=point, volume_uuid=volume.uuid)
    # An encrypted backup is always full and uncompressed (docs/backups.md: qemu-img 7.2 neither
    # compresses encrypted images nor rebases onto an encrypted base).
    encrypted = point.encrypts
    compress = compress and not encrypted
    base, estimate = backup_plan(volume=volume, snapshot=snapshot, point=point, full=full)
    used = backup_point_used(point)
    if used + estimate > point.capacity:
        raise errors.BackupPointFull(
            point=point.name,
            needed=estimate,
            available=max(point.capacity - used, 0),
            reason="recorded capacity",
        )
    # One rule with every copy (sharestore.core.services.space): the point's row is locked above.
    free = store.free_bytes()
    reservation = space_reservation(
        on=reserved_on("backup-point", point.uuid),
        needed=estimate,
        free=free,
        refuse=lambda reserved: errors.BackupPointFull(
            point=point.name,
            needed=estimate,
            available=max(free - reserved, 0),
            reason=f"filesystem free space, {reserved} bytes of it reserved by backups in progress",
        ),
    )
    quota_check(tenant=volume.tenant_id, backups=1)
    backup_uuid = uuid_lib.uuid4()
    backup = Backup.objects.create(
        uuid=backup_uuid,
        name=name,
        desc=desc,
        backup_point=point,
        **_source_record(volume, snapshot),
        base=base,
        status=choices.BackupStatus.STARTED,
        file_name=BackupStore.file_name(volume.uuid, backup_uuid),
        size=estimate,  # a reservation until the file's real size replaces it
        compressed=compress,
        encrypted=encrypted,
        expired_time=expired_time,
        protected=protected,
    )
    operation_start(
        backup,
        kind=OperationKind.BACKUP_CREATE,
        actor=actor,
        volume=volume,
        params={"backup": str(backup.uuid)},
        bytes_total=volume.capacity,
        reservation=reservation,
        action="backup.add",
        to_state=choices.BackupStatus.STARTED,
        message=(
            f"{'incremental on ' + str(base.uuid) if base else 'full'} backup of snapshot {snapshot.name!r} "
            f"to {point.name}{' (zstd)' if compress else ''}{' (encrypted)' if encrypted else ''}; "
            f"reserved {estimate} bytes"
        ),
    )
    return backup


def _snapshot_source(backup: Backup) -> tuple[str, StorageDriver]:
    """The snapshot's image name in its pool (exported with what it sits on) and the pool's driver."""
    snapshot = backup.snapshot
    if snapshot is None or backup.volume is None:
        raise errors.StorageError(reason=f"snapshot {backup.snapshot_uuid} of backup {backup.uuid} is gone")
    volume = Volume.objects.select_related("pool").get(pk=snapshot.volume_id)
    driver = pool_driver(volume.pool)
    if not driver.exists(snapshot.layer_name):
        raise errors.StorageError(
            reason=f"layer {snapshot.layer_name} of snapshot {snapshot.uuid} is missing"
        )
    return snapshot.layer_name, driver


def _since(backup: Backup) -> str | None:
    """The base backup's snapshot image, while it exists: the driver then exports (and hashes) only the
    change since it, when it is still an ancestor (a snapshot keeps its content for as long as it
    exists, and the base backup was made from it)."""
    base_snapshot = backup.base.snapshot if backup.base is not None else None
    return base_snapshot.layer_name if base_snapshot is not None else None


def _backup_create_run(operation: Operation, reporter: Reporter) -> None:
    backup = backup_of(operation)
    backup_moves(backup, operation, held=BEING_WRITTEN, to=choices.BackupStatus.RUNNING, action="backup.run")
    store = backup_store(backup.backup_point)
    store.check_available(backup.backup_point.name)
    image, driver = _snapshot_source(backup)

    def writing(percent: float, _done: int = 0, _total: int = 0) -> None:
        reporter.progress(percent * 0.7, int(backup.volume_capacity * percent / 100), backup.volume_capacity)

    if store.exists(backup.file_name):
        reporter.phase("written before an interruption")
    elif backup.base is None:
        reporter.phase("writing a full backup")
        with backup_encryption(store, backup):
            store.write(
                backup.file_name,
                lambda target: driver.export(image, target, compress=backup.compressed, progress=writing),
            )
    else:
        if backup.base.status != choices.BackupStatus.COMPLETED or not store.exists(backup.base.file_name):
            raise errors.StorageError(
                reason=f"base backup {backup.base.uuid} is {backup.base.status} or its file is missing"
            )
        reporter.phase("writing an incremental backup")
        base_export = store.path(backup.base.file_name)
        store.write(
            backup.file_name,
            lambda target: driver.export(
                image,
                target,
                base_export=base_export,
                since=_since(backup),
                compress=backup.compressed,
                progress=writing,
            ),
        )
    reporter.progress(70, force=True)
    if reporter.lost:
        raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")
    reporter.phase("hashing the changed chunks")
    index, stats = _backup_index(
        backup, store, image, driver, progress=lambda p: reporter.progress(70 + p * 0.3)
    )
    if index.virtual_size != backup.volume_capacity:
        raise errors.StorageError(
            reason=(
                f"snapshot {backup.snapshot_uuid} has {index.virtual_size} bytes, "
                f"expected {backup.volume_capacity}"
            )
        )
    chunks.save_index(store, backup.file_name, index)
    operation.params["checksum"] = index.digest()
    operation.params["chunks"] = stats.as_dict()
    operation.params["size"] = store.disk_usage(backup.file_name)


def _backup_index(
    backup: Backup, store: BackupStore, image: str, driver: StorageDriver, *, progress
) -> tuple[chunks.ChunkIndex, chunks.IndexStats]:
    """The chunk index of the new backup: from its base's index when that is intact, else from scratch."""
    base = backup.base
    base_index = chunks.load_index(store, base.file_name, base.checksum) if base is not None else None
    if base is not None and base_index is None:
        # A base written before chunk indexes existed, or whose index file does not match its recorded
        # digest: hashing the data chunks once is always right, and later incrementals start from this.
        logger.warning(
            "backup %s: no usable chunk index for base %s; hashing all data", backup.uuid, base.uuid
        )
    if base_index is None:
        return chunks.index_full(driver, image, progress=progress)
    # What changed on the source side since the base's snapshot, when the driver can tell: re-hash
    # those chunks too, so a change the backup file missed is caught.
    since = _since(backup)
    also = (driver.changed_extents(image, since=since) if since is not None else None) or []
    return chunks.index_incremental(
        driver, image, store.path(backup.file_name), base_index, also=also, progress=progress
    )


def _backup_create_succeed(operation: Operation) -> None:
    backup = backup_of(operation)
    # Keep what the hashing cost (chunks read, reused, known zero) on the operation for operators.
    Operation.objects.filter(pk=operation.pk).update(params=operation.params)
    size, checksum = operation.params["size"], operation.params["checksum"]
    backup_moves(
        backup,
        operation,
        held=[choices.BackupStatus.RUNNING],
        to=choices.BackupStatus.COMPLETED,
        action="backup.finish",
        extra={"size": size, "checksum": checksum},
        message=f"{size} bytes, chunk index sha256 {checksum}, chunks {operation.params.get('chunks')}",
    )


def _backup_create_fail(operation: Operation, error: errors.ServiceError) -> None:
    backup = backup_of(operation)
    if backup.status not in BEING_WRITTEN:
        return
    # No file may survive that could be taken for a complete backup.
    try:
        store = backup_store(backup.backup_point)
        chunks.remove_index(store, backup.file_name)
        store.remove(backup.file_name)
    except OSError as exc:
        logger.warning("could not remove the files of failed backup %s: %s", backup.uuid, exc)
    backup_moves(
        backup,
        operation,
        held=BEING_WRITTEN,
        to=choices.BackupStatus.FAILED,
        action="backup.fail",
        extra={"size": 0},  # no file is left: nothing of it counts against the backup point
        error=error,
    )


BACKUP_CREATE_HANDLER = OperationHandler(
    run=_backup_create_run, succeed=_backup_create_succeed, fail=_backup_create_fail
)
