"""Rules of the snapshot tree that requests and tasks share: names, depth, readability, refusals.

One home for each: the snapshot services, the clones and the console all call these.
"""

from __future__ import annotations

from django.conf import settings

from sharestore import errors
from volumes.choices import SnapshotStatus
from volumes.models import Snapshot, Volume
from volumes.services.busy import readers_error
from volumes.services.volumes import pool_driver, validate_name

DEFAULT_MAX_CHAIN_DEPTH = 32
HEAD = "head"  # the tree's pseudo-node for the active layer in the API; no snapshot may take this name


def max_chain_depth() -> int:
    """Most layers allowed under a volume's active layer (SHARESTORE_SNAPSHOT_MAX_DEPTH, docs/snapshots.md)."""
    return int(getattr(settings, "SHARESTORE_SNAPSHOT_MAX_DEPTH", DEFAULT_MAX_CHAIN_DEPTH))


def snapshot_layer_name(volume: Volume, snapshot_uuid) -> str:
    """The storage name the volume's driver gives a new snapshot (kept in Snapshot.layer_name)."""
    return pool_driver(volume.pool).snapshot_name(volume.image_name, str(snapshot_uuid))


# -- validation ----------------------------------------------------------------------------------


def validate_snapshot_name(value, *, field: str = "snapshot_name") -> str:
    name = validate_name(value, field=field)
    if name == HEAD:
        raise errors.InvalidName(
            field=field,
            reason=f"{HEAD!r} is reserved for the active layer in the tree",
            reason_cn=f"{HEAD!r} 是快照树中活动层的保留名称",
        )
    return name


# Snapshot statuses whose layer holds the snapshot's content. Hiding writes nothing, so a hidden layer
# is still intact: a clone or copy may read it (merges that could rewrite it wait for the reader).
READABLE_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.HIDDEN]


def snapshot_readable(snapshot: Snapshot) -> bool:
    """Whether the snapshot's layer holds its content: the one rule for requests and tasks alike."""
    return snapshot.status in READABLE_STATUSES


def require_snapshot_readable(snapshot: Snapshot, source: Volume, *, action: str) -> None:
    """Refuse a snapshot of another volume (not found) or one whose layer does not hold its content."""
    if snapshot.volume_id != source.pk:
        raise errors.SnapshotNotFound(uuid=snapshot.uuid, volume=source.uuid)
    if not snapshot_readable(snapshot):
        raise errors.StateConflict(
            kind="snapshot",
            uuid=snapshot.uuid,
            state=f"{snapshot.status} ({snapshot.get_status_display()})",
            action=action,
        )


def refuse_if_attached(volume: Volume, *, doing: str, doing_cn: str) -> None:
    vms = [str(vm) for vm in volume.attachments.values_list("vm_uuid", flat=True)]
    if vms:
        raise errors.VolumeAttached(
            uuid=volume.uuid,
            vm=", ".join(vms),
            hint=(
                f"; the hypervisor holds the active layer open, and {doing} renames or rewrites it: "
                "doing that under a running VM would corrupt its disk"
            ),
            hint_cn=f"；虚拟机管理程序正打开着活动层，{doing_cn}会重命名或改写它，在运行中的虚拟机下这样做会损坏其磁盘",
        )


def refuse_if_read(volume: Volume, *, action: str) -> None:
    """Refuse to rewrite layers that backups or clones read, naming their operations (busy.readers_error)."""
    error = readers_error(volume, action=action)
    if error is not None:
        raise error


def chain_depth(volume: Volume, snapshot_id: int | None) -> tuple[int, int]:
    """(layers under an overlay on `snapshot_id`, how many are hidden), following linked-clone origins."""
    depth = hidden = 0
    seen: set[int] = set()
    while True:
        rows = dict(
            (pk, (parent, status))
            for pk, parent, status in Snapshot.objects.filter(volume=volume).values_list(
                "pk", "parent_id", "status"
            )
        )
        node = snapshot_id
        while node is not None and node in rows and node not in seen:
            seen.add(node)
            depth += 1
            hidden += rows[node][1] == SnapshotStatus.HIDDEN
            node = rows[node][0]
        origin = volume.parent_snapshot_id
        if origin is None or origin in seen:
            return depth, hidden
        # A linked clone's oldest layer sits on another volume's snapshot: count that chain too.
        origin_snapshot = Snapshot.objects.select_related("volume").get(pk=origin)
        volume, snapshot_id = origin_snapshot.volume, origin


def check_can_snapshot(volume: Volume, name: str) -> None:
    if Snapshot.objects.filter(volume=volume, name=name).exclude(status=SnapshotStatus.HIDDEN).exists():
        raise errors.SnapshotNameExists(volume=volume.uuid, name=name)
    if volume.snap_cap == 0:
        # Zero is a decision, not a full quota (docs/api.md): no snapshot, however many are deleted.
        raise errors.SnapshotsDisabled(uuid=volume.uuid)
    if volume.snap_length >= volume.snap_cap:
        raise errors.SnapCapReached(
            uuid=volume.uuid, snap_length=volume.snap_length, snap_cap=volume.snap_cap
        )
    depth, hidden = chain_depth(volume, volume.current_snapshot_id)
    limit = max_chain_depth()
    if depth + 1 > limit:
        raise errors.SnapshotChainTooDeep(uuid=volume.uuid, depth=depth + 1, limit=limit, hidden=hidden)
