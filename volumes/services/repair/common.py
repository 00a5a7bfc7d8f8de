"""Helpers several repairs share: what operations may be writing, orphan classification over what a
driver's inventory lists, and the backing images the snapshot tree expects."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import Q

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES
from sharestore.core.models import Operation
from sharestore.core.services.state import audit
from volumes.choices import SnapshotStatus
from volumes.drivers.base import StoredObject
from volumes.models import Snapshot, Volume
from volumes.services.repair.findings import Finding, FindingKind, FixAction, KeptReason, ReconcileReport
from volumes.services.repair.words import Words, english
from volumes.services.volumes import pool_driver

# -- shared helpers ----------------------------------------------------------------------------------


def active_operations_filter() -> Q:
    return Q(state__in=ACTIVE_OPERATION_STATES)


def busy_uuids() -> set[str]:
    """UUIDs (targets and volumes) that a queued or running operation may be writing files for."""
    rows = Operation.objects.filter(active_operations_filter()).values_list("target_uuid", "volume__uuid")
    found: set[str] = set()
    for target_uuid, volume_uuid in rows:
        found.add(str(target_uuid))
        if volume_uuid:
            found.add(str(volume_uuid))
    return found


def name_mentions(name: str, uuids: set[str]) -> bool:
    """Whether a relative file name contains one of `uuids` (files of an object carry its UUID)."""
    return any(u in name for u in uuids)


def remove_orphans(
    *,
    report: ReconcileReport,
    remove: Callable[[str], object],
    still_there: Callable[[str], bool],
    actor: str,
    object_type: str,
    object_uuid,
) -> None:
    """Remove every orphan finding that is fixable; record each removal in the audit trail."""
    for finding in report.findings:
        if finding.kind != FindingKind.ORPHAN_FILE or not finding.fixable:
            continue
        try:
            remove(finding.name)
        except (OSError, errors.ServiceError) as exc:
            finding.error = str(exc)
            continue
        finding.fixed = not still_there(finding.name)
        audit(
            actor=actor,
            action="reconcile.remove_orphan",
            object_type=object_type,
            object_uuid=object_uuid,
            result="ok" if finding.fixed else "failed",
            message=f"{finding.name} ({english(finding.found)})",
        )


def mark_missing(report: ReconcileReport, mark: Callable[[Finding], object]) -> None:
    """Apply `mark` (a status change) to every fixable missing-file finding, each in its own transaction:
    one that conflicts records its error and the others still go ahead."""
    for finding in report.findings:
        if finding.kind != FindingKind.MISSING_FILE or not finding.fixable:
            continue
        try:
            with transaction.atomic():
                mark(finding)
            finding.fixed = True
        except errors.ServiceError as exc:
            finding.error = exc.render_message()


def audit_fix(report: ReconcileReport, *, actor: str, object_type: str, object_uuid) -> None:
    """One audit row summing up what a fix did to a target, if it found anything."""
    if not report.findings:
        return
    fixed = sum(1 for f in report.findings if f.fixed)
    audit(
        actor=actor,
        action="reconcile.fix",
        object_type=object_type,
        object_uuid=object_uuid,
        result="ok" if fixed == report.fixable_count else "partial",
        message=f"{len(report.findings)} finding(s), {fixed} fixed, {len(report.remaining)} remaining",
    )


def classify_orphans(
    *,
    report: ReconcileReport,
    orphans: list[StoredObject],
    busy: set[str],
    protected_backings: Callable[[], set[str]],
    grace_seconds: int,
) -> None:
    """Add an orphan finding per object no row accounts for, with the reason a fix would keep it, if any.

    Each object is removed on its own (`remove_object`), so a kept partial write no longer holds back
    the removal of its image, nor the other way round.
    """
    if not orphans:
        return
    backings = protected_backings()
    for orphan in orphans:
        kept = ""
        if name_mentions(orphan.name, busy):
            kept = KeptReason.BUSY
        elif orphan.name in backings:
            kept = KeptReason.BACKS_IMAGE
        elif orphan.age < grace_seconds:
            kept = KeptReason.GRACE
        report.findings.append(
            Finding(
                kind=FindingKind.ORPHAN_FILE,
                name=orphan.name,
                detail=Words("partial_write") if orphan.partial else Words("no_row"),
                found=Words("file_found", size=orphan.size, age=int(orphan.age)),
                fix=FixAction.REMOVE,
                kept=kept,
            )
        )


# -- what the tree expects on disk ---------------------------------------------------------------

# Snapshot statuses whose layer must exist.
LAYER_EXPECTED_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.HIDDEN]


def linked_base_name(volume: Volume) -> str | None:
    """A linked clone's base layer as the clone's pool driver names its backing (`backing_name`).

    In the same pool that is the layer's own name; in another pool, the reference that pool's driver
    gives for the layer (`image_ref`), which is how an image names what lies outside its pool.
    """
    if not volume.parent_snapshot_id or volume.parent_snapshot is None:
        return None
    layer = volume.parent_snapshot.layer_name
    source_pool = volume.parent_snapshot.volume.pool
    if source_pool.pk == volume.pool_id:
        return layer
    return pool_driver(source_pool).image_ref(layer)


def expected_head_backing(volume: Volume) -> str | None:
    """The layer the head must be an overlay on: the current snapshot's, else a linked clone's parent."""
    if volume.current_snapshot_id and volume.current_snapshot is not None:
        return volume.current_snapshot.layer_name
    return linked_base_name(volume)


def expected_layer_backing(snapshot: Snapshot, by_id: dict[int, Snapshot], volume: Volume) -> str | None:
    """A snapshot layer sits on its parent's layer; a root layer of a linked clone on the clone's parent."""
    if snapshot.parent_id:
        parent = by_id.get(snapshot.parent_id) or snapshot.parent
        return parent.layer_name
    return linked_base_name(volume)
