"""Helpers several repairs share: what operations may be writing, partial files, image chains read
once, orphan classification, and the backing files the snapshot tree expects."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from django.db.models import Q

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES
from sharestore.core.models import Operation
from sharestore.core.services.state import audit
from volumes.choices import SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.drivers.qcow2_dir import TMP_PREFIX
from volumes.models import Snapshot, Volume
from volumes.services.repair.findings import Finding, FindingKind, FixAction, KeptReason, ReconcileReport

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


def is_partial(name: str) -> bool:
    return os.path.basename(name).startswith(TMP_PREFIX)


def file_age_seconds(path: str, now: float | None = None) -> float | None:
    try:
        return (now or time.time()) - os.lstat(path).st_mtime
    except FileNotFoundError:
        return None


def resolve_backing(name: str, backing: str | None, root: str) -> str | None:
    """The backing file of image `name`, as a name relative to `root` (or the absolute path if outside)."""
    if not backing:
        return None
    if backing.startswith("/"):
        absolute = os.path.normpath(backing)
        root = os.path.normpath(root)
        return os.path.relpath(absolute, root) if absolute.startswith(root + "/") else absolute
    return os.path.normpath(os.path.join(os.path.dirname(name), backing))


class ImageReader:
    """Caches `info` per image name so each file is read once per reconcile."""

    def __init__(self, driver: StorageDriver):
        self.driver = driver
        self.cache: dict[str, object] = {}

    def info(self, name: str):
        """ImageInfo, or the ServiceError that reading it raised."""
        if name not in self.cache:
            try:
                self.cache[name] = self.driver.info(name)
            except errors.ServiceError as exc:
                self.cache[name] = exc
        return self.cache[name]

    def chain(self, name: str) -> list[str]:
        """Backing files of `name`, nearest first, as far as they can be read."""
        names, seen, current = [], {name}, name
        while True:
            info = self.info(current) if self.driver.exists(current) else None
            if info is None or isinstance(info, errors.ServiceError):
                return names
            backing = resolve_backing(current, info.backing, self.driver.root)
            if not backing or backing in seen or backing.startswith("/"):
                return names
            names.append(backing)
            seen.add(backing)
            current = backing


def remove_orphans(
    *,
    report: ReconcileReport,
    driver_delete: Callable[[str], object],
    root: str,
    actor: str,
    object_type: str,
    object_uuid,
) -> None:
    """Remove every orphan finding that is fixable; record each removal in the audit trail."""
    for finding in report.findings:
        if finding.kind != FindingKind.ORPHAN_FILE or not finding.fixable:
            continue
        try:
            driver_delete(finding.name)
        except (OSError, errors.ServiceError) as exc:
            finding.error = str(exc)
            continue
        finding.fixed = not os.path.lexists(os.path.join(root, finding.name))
        audit(
            actor=actor,
            action="reconcile.remove_orphan",
            object_type=object_type,
            object_uuid=object_uuid,
            result="ok" if finding.fixed else "failed",
            message=f"{finding.name} ({finding.found})",
        )


def classify_orphans(
    *,
    report: ReconcileReport,
    orphans: list[str],
    root: str,
    busy: set[str],
    protected_backings: Callable[[], set[str]],
    grace_seconds: int,
) -> None:
    """Add an orphan finding per file, with the reason a fix would keep it, if any."""
    if not orphans:
        return
    backings = protected_backings()
    now = time.time()
    kept_names = set()
    for name in orphans:
        path = os.path.join(root, name)
        age = file_age_seconds(path, now)
        try:
            size = os.lstat(path).st_size
        except FileNotFoundError:
            continue
        kept = ""
        if name_mentions(name, busy):
            kept = KeptReason.BUSY
        elif name in backings:
            kept = KeptReason.BACKS_IMAGE
        elif age is not None and age < grace_seconds:
            kept = KeptReason.GRACE
        if kept:
            kept_names.add(name)
        report.findings.append(
            Finding(
                kind=FindingKind.ORPHAN_FILE,
                name=name,
                detail=("partial write" if is_partial(name) else "no database row refers to this file"),
                found=f"{size} bytes, modified {int(age or 0)} s ago",
                fix=FixAction.REMOVE,
                kept=kept,
            )
        )
    # Removing a file also removes its partial write (the driver's delete does both): keep the
    # file when its `.tmp-` sibling must stay.
    for finding in report.findings:
        if finding.kind == FindingKind.ORPHAN_FILE and not finding.kept and not is_partial(finding.name):
            directory, base = os.path.split(finding.name)
            sibling = os.path.join(directory, TMP_PREFIX + base) if directory else TMP_PREFIX + base
            if sibling in kept_names:
                finding.kept = KeptReason.TMP_SIBLING


# -- what the tree expects on disk ---------------------------------------------------------------

# Snapshot statuses whose layer must exist.
LAYER_EXPECTED_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.HIDDEN]

def linked_base_name(volume: Volume) -> str | None:
    """A linked clone's base layer as a name relative to the clone's pool root.

    In the same pool that is the layer's own name; a clone in another pool reaches the layer
    through a relative path that leaves its pool (`../pool-b/snapshots/...`), as resolve_backing
    reports it.
    """
    if not volume.parent_snapshot_id or volume.parent_snapshot is None:
        return None
    layer = volume.parent_snapshot.layer_name
    source_pool = volume.parent_snapshot.volume.pool
    if source_pool.pk == volume.pool_id:
        return layer
    return os.path.normpath(os.path.relpath(os.path.join(source_pool.path, layer), volume.pool.path))


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
