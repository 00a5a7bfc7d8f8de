"""What the files of one volume show and which of its operations are alive: the shared ground of
the reset-state and force-delete previews."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.state import transition
from volumes.choices import SnapshotStatus
from volumes.models import Volume
from volumes.services.repair.common import (
    LAYER_EXPECTED_STATUSES,
    active_operations_filter,
    expected_head_backing,
    expected_layer_backing,
)
from volumes.services.repair.words import Words
from volumes.services.volumes import pool_driver

# -- volume inspection (reset state, force delete) --------------------------------------------------


@dataclass
class VolumeInspection:
    """What the files of one volume show, read for a reset-state or force-delete preview."""

    head: str
    head_exists: bool = False
    head_error: str = ""
    virtual_size: int | None = None
    backing: str | None = None
    expected_backing: str | None = None
    partial_files: list[str] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)

    @property
    def head_usable(self) -> bool:
        return self.head_exists and not self.head_error and self.backing == self.expected_backing

    @property
    def layers_ok(self) -> bool:
        return all(layer["ok"] for layer in self.layers)


class VolumePreview:
    """A volume repair's preview (its dataclass sets `blocked` to why the repair is refused, if it is)."""

    blocked: Words | str

    def refuse_if_blocked(self, volume: Volume, *, action: str) -> None:
        """RepairBlocked naming `action` and the preview's reason, in both languages, when it is blocked."""
        if self.blocked:
            raise errors.RepairBlocked(
                action=action,
                kind="volume",
                uuid=volume.uuid,
                reason=self.blocked.english,
                reason_cn=self.blocked.chinese,
            )


def live_operations(volume: Volume, *, lock: bool = False) -> tuple[list[Operation], list[Operation]]:
    """(live, stale) active operations of the volume: live ones hold a lease or were queued recently."""
    now = timezone.now()
    stale_queue = now - timedelta(seconds=settings.SHARESTORE_LEASE_SECONDS)
    live, stale = [], []
    queryset = Operation.objects.filter(
        active_operations_filter(), Q(volume=volume) | Q(target_uuid=volume.uuid)
    )
    if lock:
        queryset = queryset.select_for_update()
    for operation in queryset.order_by("pk"):
        is_live = (
            operation.state == OperationState.RUNNING
            and operation.lease_expires_at
            and operation.lease_expires_at >= now
        ) or (operation.state == OperationState.QUEUED and operation.created >= stale_queue)
        (live if is_live else stale).append(operation)
    return live, stale


def volume_inspect(volume: Volume) -> VolumeInspection:
    """Read the volume's head and snapshot layers (metadata only) and compare them with the tree."""
    volume = Volume.objects.select_related("pool", "current_snapshot", "parent_snapshot").get(pk=volume.pk)
    driver = pool_driver(volume.pool)
    inspection = VolumeInspection(head=volume.image_name, expected_backing=expected_head_backing(volume))
    snapshots = list(volume.snapshots.select_related("parent").order_by("pk"))
    names = [volume.image_name] + [s.layer_name for s in snapshots if s.layer_name]
    stored = {}
    for obj in driver.inventory(names):
        if obj.partial:
            inspection.partial_files.append(obj.name)
        else:
            stored[obj.name] = obj
    head = stored.get(volume.image_name)
    inspection.head_exists = head is not None
    if head is not None:
        if head.error is not None:
            inspection.head_error = f"scode {head.error.scode}: {head.error.render_message()}"
        else:
            inspection.virtual_size = head.virtual_size
            inspection.backing = head.backing
            if head.virtual_size != volume.capacity:
                inspection.head_error = (
                    f"virtual size {head.virtual_size} differs from capacity {volume.capacity}"
                )
    by_id = {s.pk: s for s in snapshots}
    for snapshot in snapshots:
        if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
            continue
        info = stored.get(snapshot.layer_name)
        layer = {
            "uuid": str(snapshot.uuid),
            "name": snapshot.name,
            "layer": snapshot.layer_name,
            "status": snapshot.get_status_display(),
            "exists": info is not None,
            "ok": True,
            "problem": "",
        }
        if info is None:
            layer["ok"] = snapshot.status not in LAYER_EXPECTED_STATUSES
            layer["problem"] = Words("layer_missing")
        else:
            expected = expected_layer_backing(snapshot, by_id, volume)
            if info.error is not None:
                layer.update(ok=False, problem=Words("layer_unreadable", error=info.error.render_message()))
            elif info.backing != expected:
                layer.update(ok=False, problem=Words("layer_backing", expected=expected or Words("none")))
        inspection.layers.append(layer)
    return inspection


def cancel_stale_operations(volume: Volume, *, actor: str, action: str) -> list[Operation]:
    """Inside the caller's transaction: refuse if an operation came alive since the preview, else
    cancel the ones whose worker is gone, so a late redelivery of their task does nothing.

    The rows are locked (PostgreSQL) or the IMMEDIATE transaction already excludes other writers
    (SQLite), so a worker cannot claim one between this check and the cancel.
    """
    live, stale = live_operations(volume, lock=True)
    if live:
        raise errors.RepairBlocked(
            action=action,
            kind="volume",
            uuid=volume.uuid,
            reason=f"operation {live[0].uuid} ({live[0].kind}) came alive: look at the preview again",
        )
    now = timezone.now()
    for operation in stale:
        transition(
            operation,
            allowed=ACTIVE_OPERATION_STATES,
            to=OperationState.CANCELLED,
            action="operation.cancel",
            actor=actor,
            object_type="operation",
            volume_id=volume.pk,
            operation_id=operation.pk,
            message=f"cancelled by {action}: its lease had expired",
            extra={"finished": now, "lease_expires_at": None, "error_message": f"cancelled by {action}"},
        )
    return stale
