"""Force delete: take a volume in any state out of service and queue the ordinary delete task."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import operation_create
from sharestore.core.services.state import transition
from volumes.choices import LIVE_STATES, EventState
from volumes.models import Volume, VolumeAttachment
from volumes.services.repair.inspection import VolumePreview, cancel_stale_operations, live_operations
from volumes.services.repair.words import Words, english, operation_live_words
from volumes.services.volumes import pool_driver

# -- force delete ------------------------------------------------------------------------------------


@dataclass
class ForceDeletePlan(VolumePreview):
    """What a force delete would remove and change, or why it is refused."""

    volume_uuid: str
    current_state: int
    files: list[str]
    attachments: list[str]
    snapshots: int
    blocked: Words | str = ""
    stale_operations: list[str] = field(default_factory=list)

    @property
    def current_label(self):
        return EventState(self.current_state).label

    def as_dict(self) -> dict:
        data = english(asdict(self))
        data["current_label"] = str(self.current_label)
        return data


def force_delete_preview(*, volume: Volume) -> ForceDeletePlan:
    """List the files a force delete removes, the attachments it drops, and what blocks it."""
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    driver = pool_driver(volume.pool)
    names = [volume.image_name] + list(
        volume.snapshots.exclude(layer_name="").order_by("pk").values_list("layer_name", flat=True)
    )
    # What exists of them, and their partial writes (the inventory lists each image before its partials).
    files = [obj.name for obj in driver.inventory(names)]
    live, stale = live_operations(volume)
    plan = ForceDeletePlan(
        volume_uuid=str(volume.uuid),
        current_state=volume.state,
        files=files,
        attachments=[str(vm) for vm in volume.attachments.values_list("vm_uuid", flat=True)],
        snapshots=volume.snapshots.count(),
        stale_operations=[str(o.uuid) for o in stale],
    )
    clones = list(
        Volume.objects.filter(parent_snapshot__volume=volume, state__in=LIVE_STATES).values_list(
            "uuid", flat=True
        )
    )
    if volume.state == EventState.DELETED:
        plan.blocked = Words("volume_already_deleted")
    elif live:
        plan.blocked = operation_live_words(live[0])
    elif clones:
        # Force never overrides this: removing the layers would corrupt the clones.
        plan.blocked = Words("clones_read_snapshots", clones=", ".join(map(str, clones)))
    return plan


def force_delete(*, actor: str, volume: Volume, expected_state: int) -> Operation:
    """Take the volume out of service whatever its state and queue the ordinary removal task.

    Stale operations are cancelled, attachments are dropped from the record (the hypervisor must
    have let go), and the volume moves to `deleting` by compare-and-set from `expected_state`.
    The files are removed by the delete task, not here.
    """
    plan = force_delete_preview(volume=volume)
    plan.refuse_if_blocked(volume, action="force delete")
    if plan.current_state != expected_state:
        raise errors.RepairPreviewStale(kind="volume", uuid=volume.uuid, reason=f"now {plan.current_label}")
    with transaction.atomic():
        cancel_stale_operations(volume, actor=actor, action="force delete")
        transition(
            volume,
            allowed=[expected_state],
            to=EventState.DELETING,
            action="volume.force_delete",
            actor=actor,
            message=f"from {EventState(expected_state).label}; files: {', '.join(plan.files) or 'none'}",
            extra={"deleted_at": volume.deleted_at or timezone.now()},
        )
        VolumeAttachment.objects.filter(volume=volume).delete()
        return operation_create(
            kind=OperationKind.VOLUME_DELETE,
            actor=actor,
            volume=volume,
            params={"force": True, "forced_from": int(expected_state)},
        )
