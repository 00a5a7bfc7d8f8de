"""The contract's JSON shape for a backup, built as a plain dict from prefetched rows, plus the
extension keys (progress, error, chain, verification) documented in docs/backups.md."""

from __future__ import annotations

from backups.models import Backup
from sharestore.core.models import Operation
from volumes.api.representations import epoch
from volumes.choices import EventState


def latest_operations(uuids) -> dict[str, Operation]:
    """The most recent operation of each backup, in one query."""
    latest: dict[str, Operation] = {}
    for operation in Operation.objects.filter(target_uuid__in=list(uuids)).order_by("created", "id"):
        latest[str(operation.target_uuid)] = operation
    return latest


def backup_representation(backup: Backup, operation: Operation | None = None) -> dict:
    """A backup object with the contract's keys and JSON types, and the extension keys after them."""
    volume = backup.volume
    error = None
    if operation is not None and operation.error_scode:
        error = {"scode": operation.error_scode, "message": operation.error_message}
    return {
        "tenant": str(backup.tenant.uuid),
        "tenant_name": backup.tenant.name,
        "UUID": str(backup.uuid),
        "Name": backup.name,
        "BpUUID": str(backup.backup_point.uuid),
        "NsUUID": str(backup.tenant.namespace.uuid),
        "VolumeUUID": str(backup.volume_uuid),
        "VolumeCapacity": backup.volume_capacity,
        "Snapshot": backup.snapshot_name,
        "Ctime": epoch(backup.created),
        "Desc": backup.desc,
        "Attr": None,
        "VolumeType": backup.volume_type,
        "Mtime": epoch(backup.modified),
        "BpName": backup.backup_point.name,
        "ExpiredTime": backup.expired_time,
        # The source volume's EventState now; 6 (deleted) once it is gone.
        "VolumeEventStatus": int(volume.state) if volume is not None else int(EventState.DELETED),
        "SnapshotUUID": str(backup.snapshot_uuid),
        "Status": backup.status,
        "cluster_uuid": str(backup.cluster.uuid),
        "cluster_name": backup.cluster.name,
        "cluster_mode": backup.cluster.mode,
        # Extensions.
        "BaseUUID": str(backup.base.uuid) if backup.base_id else "",
        "Size": backup.size,
        "Compressed": backup.compressed,
        "Protected": backup.protected,
        "Checksum": backup.checksum,
        "Progress": float(operation.progress) if operation is not None else 0.0,
        "Phase": operation.phase if operation is not None else "",
        "Error": error,
        "VerifyResult": backup.verify_result,
        "VerifiedTime": epoch(backup.verified_at),
    }
