"""What the files of one volume show and which of its operations are alive: the shared ground of
the reset-state and force-delete previews."""

from __future__ import annotations

import os
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
from volumes.drivers.qcow2_dir import TMP_PREFIX
from volumes.models import Volume
from volumes.services.repair.common import (
    LAYER_EXPECTED_STATUSES,
    ImageReader,
    active_operations_filter,
    expected_head_backing,
    expected_layer_backing,
    resolve_backing,
)
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


def live_operations(volume: Volume, *, lock: bool = False) -> tuple[list[Operation], list[Operation]]:
    """(live, stale) active operations of the volume: live ones hold a lease or were queued recently."""
    now = timezone.now()
    stale_queue = now - timedelta(seconds=settings.SHARESTORE_LEASE_SECONDS)
    live, stale = [], []
    queryset = Operation.objects.filter(active_operations_filter(), Q(volume=volume) | Q(target_uuid=volume.uuid))
    if lock:
        queryset = queryset.select_for_update()
    for operation in queryset.order_by("pk"):
        is_live = (
            operation.state == OperationState.RUNNING and operation.lease_expires_at and operation.lease_expires_at >= now
        ) or (operation.state == OperationState.QUEUED and operation.created >= stale_queue)
        (live if is_live else stale).append(operation)
    return live, stale


def volume_inspect(volume: Volume) -> VolumeInspection:
    """Read the volume's head and snapshot layers (metadata only) and compare them with the tree."""
    volume = Volume.objects.select_related("pool", "current_snapshot", "parent_snapshot").get(pk=volume.pk)
    driver = pool_driver(volume.pool)
    reader = ImageReader(driver)
    inspection = VolumeInspection(head=volume.image_name, expected_backing=expected_head_backing(volume))
    inspection.head_exists = driver.exists(volume.image_name)
    if inspection.head_exists:
        info = reader.info(volume.image_name)
        if isinstance(info, errors.ServiceError):
            inspection.head_error = f"scode {info.scode}: {info.render_message()}"
        else:
            inspection.virtual_size = info.virtual_size
            inspection.backing = resolve_backing(volume.image_name, info.backing, driver.root)
            if info.virtual_size != volume.capacity:
                inspection.head_error = f"virtual size {info.virtual_size} differs from capacity {volume.capacity}"
    snapshots = list(volume.snapshots.select_related("parent").order_by("pk"))
    by_id = {s.pk: s for s in snapshots}
    for snapshot in snapshots:
        if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
            continue
        layer = {"uuid": str(snapshot.uuid), "name": snapshot.name, "layer": snapshot.layer_name,
                 "status": snapshot.get_status_display(), "exists": driver.exists(snapshot.layer_name), "ok": True,
                 "problem": ""}
        if not layer["exists"]:
            layer["ok"] = snapshot.status not in LAYER_EXPECTED_STATUSES
            layer["problem"] = "missing"
        else:
            info = reader.info(snapshot.layer_name)
            expected = expected_layer_backing(snapshot, by_id, volume)
            if isinstance(info, errors.ServiceError):
                layer.update(ok=False, problem=f"unreadable: {info.render_message()}")
            elif resolve_backing(snapshot.layer_name, info.backing, driver.root) != expected:
                layer.update(ok=False, problem=f"backing should be {expected or '(none)'}")
        inspection.layers.append(layer)
    root = volume.pool.path
    for name in [volume.image_name] + [s.layer_name for s in snapshots if s.layer_name]:
        directory, base = os.path.split(name)
        partial = os.path.join(directory, TMP_PREFIX + base)
        if os.path.lexists(os.path.join(root, partial)):
            inspection.partial_files.append(partial)
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
            action=action, kind="volume", uuid=volume.uuid,
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
