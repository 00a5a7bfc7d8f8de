"""Operator repairs: reconcile the database with the files, reset a stuck state, force delete,
refresh usage and retry a failed operation.

Each repair is one service function that the console (admin) and `manage.py` call, and each has a
read-only preview: `reconcile(fix=False)`, `reset_state_preview`, `force_delete_preview`,
`refresh_usage(dry_run=True)`, `operation_retry_check`. The apply step inspects again and acts on
what it finds then, never on the stale preview: a reset or a force delete compares-and-sets from
the state the operator saw and refuses (RepairPreviewStale) if the files now tell another story.

Reading images here is metadata only (`qemu-img info` and `check -U`): fast enough for a preview
page. Removing a volume's files always runs in the ordinary delete task, never in the request.
Reconcile never rewrites a backing chain: that is data surgery it only reports.
"""

from __future__ import annotations

import logging
import os
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.operations import operation_create
from sharestore.core.services.state import audit, transition
from volumes.choices import LIVE_STATES, EventState, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.drivers.qcow2_dir import TMP_PREFIX
from volumes.models import Pool, Snapshot, Volume, VolumeAttachment
from volumes.services.volumes import pool_driver

logger = logging.getLogger(__name__)

# Orphans younger than this are left alone: a publish (write .tmp-, rename) and the database row
# that claims the file are not one atomic step, and a slow NFS mount can lag behind.
DEFAULT_GRACE_SECONDS = 3600

ProgressFn = Callable[[int, int, str], None]
"""progress(done, total, label): called once per file a reconcile inspects."""


class FindingKind:
    """What a reconcile finding is about (stable codes for --json; labels for the console)."""

    ORPHAN_FILE = "orphan_file"
    MISSING_FILE = "missing_file"
    CHAIN_MISMATCH = "chain_mismatch"
    SIZE_DRIFT = "size_drift"
    UNREADABLE = "unreadable_image"
    STUCK_STATE = "stuck_state"

    LABELS = {
        ORPHAN_FILE: _("orphan file"),
        MISSING_FILE: _("missing file"),
        CHAIN_MISMATCH: _("backing chain disagrees with the tree"),
        SIZE_DRIFT: _("size out of date"),
        UNREADABLE: _("unreadable image"),
        STUCK_STATE: _("stuck state"),
    }


class FixAction:
    """What `--fix` does with a finding ("" = report only)."""

    REMOVE = "remove"
    MARK_ERROR = "mark_error"
    MARK_FAILED = "mark_failed"
    REFRESH = "refresh"
    NONE = ""

    LABELS = {
        REMOVE: _("remove the file"),
        MARK_ERROR: _("mark the object as error"),
        MARK_FAILED: _("mark the backup as failed"),
        REFRESH: _("write the measured size"),
        NONE: _("report only"),
    }


class KeptReason:
    """Why `--fix` leaves a finding alone."""

    GRACE = "grace"
    BUSY = "busy"
    BACKS_IMAGE = "backs_image"
    TMP_SIBLING = "tmp_sibling"

    LABELS = {
        GRACE: _("younger than the grace period"),
        BUSY: _("an operation on this object is queued or running"),
        BACKS_IMAGE: _("a referenced image uses it as backing file"),
        TMP_SIBLING: _("its partial write is still protected"),
    }


@dataclass
class Finding:
    """One disagreement between the database and the files, and what a fix does about it."""

    kind: str
    name: str
    object_type: str = ""
    object_uuid: str = ""
    detail: str = ""
    expected: str = ""
    found: str = ""
    fix: str = FixAction.NONE
    kept: str = ""
    fixed: bool = False
    error: str = ""

    @property
    def fixable(self) -> bool:
        return bool(self.fix) and not self.kept

    @property
    def kind_label(self):
        return FindingKind.LABELS.get(self.kind, self.kind)

    @property
    def fix_label(self):
        return FixAction.LABELS.get(self.fix, self.fix)

    @property
    def kept_label(self):
        return KeptReason.LABELS.get(self.kept, self.kept)


@dataclass
class ReconcileReport:
    """What reconcile found (and, with fix, did) in one pool or backup point."""

    scope: str
    uuid: str
    name: str
    path: str
    fix: bool
    files_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""

    @property
    def remaining(self) -> list[Finding]:
        """Findings still true after this run (all of them in a dry run)."""
        return [f for f in self.findings if not f.fixed]

    @property
    def fixable_count(self) -> int:
        return sum(1 for f in self.findings if f.fixable)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["remaining"] = len(self.remaining)
        return data


# -- reconcile scopes (pools here; other apps register theirs, e.g. backup points) -----------------


@dataclass(frozen=True)
class ReconcileScope:
    """A kind of storage place reconcile walks: how to list targets and reconcile one."""

    name: str
    targets: Callable[[list[str] | None], list]
    run: Callable[..., ReconcileReport]


SCOPES: dict[str, ReconcileScope] = {}


def register_reconcile_scope(scope: ReconcileScope) -> None:
    """Called by other apps (their `services_repair` module) so one reconcile covers them too."""
    SCOPES[scope.name] = scope


def reconcile_scopes() -> dict[str, ReconcileScope]:
    # Apps that depend on volumes register their scope from `<app>.services_repair`; volumes
    # never imports them (imports point one way: backups -> volumes).
    autodiscover_modules("services_repair")
    return SCOPES


def parse_uuids(values: Iterable, *, field_name: str) -> list[str]:
    """Canonical UUID strings, or InvalidParameter naming the first malformed one."""
    parsed = []
    for value in values:
        try:
            parsed.append(str(uuid_lib.UUID(str(value))))
        except ValueError:
            raise errors.InvalidParameter(field=field_name, reason=f"{value!r} is not a UUID") from None
    return parsed


def _pool_targets(uuids: list[str] | None) -> list[Pool]:
    queryset = Pool.objects.order_by("name", "pk")
    if uuids is not None:
        uuids = parse_uuids(uuids, field_name="pool")
        queryset = queryset.filter(uuid__in=uuids)
        found = {str(p.uuid) for p in queryset}
        missing = [u for u in uuids if str(u) not in found]
        if missing:
            raise errors.InvalidParameter(field="pool", reason=f"no pool with UUID {', '.join(map(str, missing))}")
    return list(queryset)


def reconcile(
    *,
    actor: str,
    fix: bool = False,
    targets: dict[str, list[str] | None] | None = None,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    progress: ProgressFn | None = None,
) -> list[ReconcileReport]:
    """Reconcile every pool and backup point, or only `targets` ({scope name: [uuid, ...] | None}).

    Without fix nothing is written (the dry run). With fix: orphan files older than the grace
    period that no queued or running operation may be writing, and that no referenced image uses
    as backing, are removed; volumes (snapshots, backups) whose file is missing are marked error
    (failed) through `transition`; sizes are refreshed. Chain mismatches, unreadable images and
    stuck states are reported only.
    """
    scopes = reconcile_scopes()
    if targets is None:
        targets = {name: None for name in scopes}
    unknown = set(targets) - set(scopes)
    if unknown:
        raise errors.InvalidParameter(field="scope", reason=f"unknown reconcile scope {', '.join(sorted(unknown))}")
    reports = []
    for name, uuids in targets.items():
        scope = scopes[name]
        for target in scope.targets(uuids):
            reports.append(scope.run(actor=actor, target=target, fix=fix, grace_seconds=grace_seconds, progress=progress))
    return reports


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


def final_name(name: str) -> str:
    """The published name a `.tmp-` partial write would be renamed to."""
    directory, base = os.path.split(name)
    if base.startswith(TMP_PREFIX):
        base = base[len(TMP_PREFIX):]
    return os.path.join(directory, base) if directory else base


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


# -- pools -------------------------------------------------------------------------------------------

# Volume states whose head image must exist (whatever else is going on).
HEAD_EXPECTED_STATES = [
    EventState.AVAILABLE,
    EventState.SNAPSHOTTING,
    EventState.ROLLING_BACK,
    EventState.MERGING,
    EventState.FLATTENING,
]
# Snapshot statuses whose layer must exist.
LAYER_EXPECTED_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.HIDDEN]
# Volume states that are resting points; any other state needs an operation to move on.
RESTING_STATES = [EventState.AVAILABLE, EventState.ERROR, EventState.DELETED]


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


def snap_length_of(snapshots: Iterable[Snapshot], sizes: dict[int, int]) -> int:
    """SnapLength: allocated bytes of every layer not being deleted (hidden layers still occupy space)."""
    return sum(sizes.get(s.pk, s.size) for s in snapshots if s.status != SnapshotStatus.DELETING and s.layer_name)


def _pool_volumes(pool: Pool) -> list[Volume]:
    return list(
        Volume.objects.filter(pool=pool)
        .exclude(state=EventState.DELETED)
        .select_related("pool", "current_snapshot", "parent_snapshot__volume__pool")
        .order_by("pk")
    )


def _pool_snapshots(volume_ids: list[int]) -> list[Snapshot]:
    return list(Snapshot.objects.filter(volume_id__in=volume_ids).order_by("pk"))


def reconcile_pool(
    *,
    actor: str,
    target: Pool,
    fix: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    progress: ProgressFn | None = None,
) -> ReconcileReport:
    """Compare one pool's volumes and snapshots with its files; with fix, repair what is safe."""
    pool = target
    report = ReconcileReport(scope="pool", uuid=str(pool.uuid), name=pool.name, path=pool.path, fix=fix)
    driver = pool_driver(pool)
    if not os.path.isdir(pool.path):
        report.error = f"pool directory {pool.path} does not exist"
        return report
    try:
        files = driver.list_images()
    except OSError as exc:
        report.error = f"cannot list {pool.path}: {exc}"
        return report
    report.files_checked = len(files)
    file_set = set(files)
    reader = ImageReader(driver)
    busy = busy_uuids()

    volumes = _pool_volumes(pool)
    snapshots = _pool_snapshots([v.pk for v in volumes])
    snapshots_by_volume: dict[int, list[Snapshot]] = {}
    for snapshot in snapshots:
        snapshots_by_volume.setdefault(snapshot.volume_id, []).append(snapshot)
    snapshot_by_id = {s.pk: s for s in snapshots}

    # Every file the database accounts for; everything else is an orphan.
    referenced: dict[str, tuple[str, object]] = {}
    for volume in volumes:
        referenced[volume.image_name] = ("volume", volume)
    for snapshot in snapshots:
        # A layer being deleted is not accounted for; while its volume is busy the orphan check
        # keeps it anyway (its name carries the volume's UUID).
        if snapshot.layer_name and snapshot.status != SnapshotStatus.DELETING:
            referenced[snapshot.layer_name] = ("snapshot", snapshot)

    total = len(files) + len(volumes)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    measured_size: dict[int, int] = {}
    for volume in volumes:
        tick(volume.image_name)
        volume_busy = str(volume.uuid) in busy
        layers = snapshots_by_volume.get(volume.pk, [])
        if volume.state not in RESTING_STATES and not volume_busy:
            report.findings.append(
                Finding(
                    kind=FindingKind.STUCK_STATE,
                    name=volume.image_name,
                    object_type="volume",
                    object_uuid=str(volume.uuid),
                    detail="no queued or running operation will move it on: use reset state or force delete",
                    found=volume.get_state_display(),
                )
            )
        if volume_busy or volume.state == EventState.DELETING:
            continue
        head_exists = volume.image_name in file_set
        if not head_exists and volume.state in HEAD_EXPECTED_STATES:
            report.findings.append(
                Finding(
                    kind=FindingKind.MISSING_FILE,
                    name=volume.image_name,
                    object_type="volume",
                    object_uuid=str(volume.uuid),
                    detail="the volume's image is missing",
                    expected=volume.get_state_display(),
                    found="no file",
                    fix=FixAction.MARK_ERROR,
                )
            )
        # An errored volume promises no usable image: its file (if any) is accounted for, not checked.
        if head_exists and volume.state in HEAD_EXPECTED_STATES:
            _check_image(report, reader, volume.image_name, "volume", volume, expected_head_backing(volume))
            info = reader.info(volume.image_name)
            if not isinstance(info, errors.ServiceError):
                if info.allocated != volume.used:
                    report.findings.append(
                        Finding(
                            kind=FindingKind.SIZE_DRIFT,
                            name=volume.image_name,
                            object_type="volume",
                            object_uuid=str(volume.uuid),
                            detail="Used",
                            expected=str(volume.used),
                            found=str(info.allocated),
                            fix=FixAction.REFRESH,
                        )
                    )
        for snapshot in layers:
            if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
                continue
            layer_exists = snapshot.layer_name in file_set
            if not layer_exists:
                if snapshot.status in LAYER_EXPECTED_STATUSES:
                    report.findings.append(
                        Finding(
                            kind=FindingKind.MISSING_FILE,
                            name=snapshot.layer_name,
                            object_type="snapshot",
                            object_uuid=str(snapshot.uuid),
                            detail=f"layer of snapshot {snapshot.name!r} is missing",
                            expected=snapshot.get_status_display(),
                            found="no file",
                            fix=FixAction.MARK_ERROR,
                        )
                    )
                continue
            _check_image(
                report, reader, snapshot.layer_name, "snapshot", snapshot,
                expected_layer_backing(snapshot, snapshot_by_id, volume),
            )
            info = reader.info(snapshot.layer_name)
            if not isinstance(info, errors.ServiceError):
                measured_size[snapshot.pk] = info.allocated
                if info.allocated != snapshot.size:
                    report.findings.append(
                        Finding(
                            kind=FindingKind.SIZE_DRIFT,
                            name=snapshot.layer_name,
                            object_type="snapshot",
                            object_uuid=str(snapshot.uuid),
                            detail="Size",
                            expected=str(snapshot.size),
                            found=str(info.allocated),
                            fix=FixAction.REFRESH,
                        )
                    )
        if layers and all(s.pk in measured_size or s.status == SnapshotStatus.DELETING or not s.layer_name for s in layers):
            length = snap_length_of(layers, measured_size)
            if length != volume.snap_length:
                report.findings.append(
                    Finding(
                        kind=FindingKind.SIZE_DRIFT,
                        name=f"snapshots/{volume.uuid}/",
                        object_type="volume",
                        object_uuid=str(volume.uuid),
                        detail="SnapLength",
                        expected=str(volume.snap_length),
                        found=str(length),
                        fix=FixAction.REFRESH,
                    )
                )

    orphans = []
    for name in files:
        tick(name)
        if name in referenced:
            continue
        orphans.append(name)

    def protected_backings() -> set[str]:
        chained: set[str] = set()
        for name in referenced:
            if name in file_set:
                chained.update(reader.chain(name))
        return chained

    classify_orphans(
        report=report,
        orphans=orphans,
        root=pool.path,
        busy=busy,
        protected_backings=protected_backings,
        grace_seconds=grace_seconds,
    )

    if fix:
        _fix_pool(report, pool, driver, actor, volumes, snapshots)
    return report


def _check_image(report: ReconcileReport, reader: ImageReader, name: str, object_type: str, obj, expected: str | None):
    info = reader.info(name)
    if isinstance(info, errors.ServiceError):
        report.findings.append(
            Finding(
                kind=FindingKind.UNREADABLE,
                name=name,
                object_type=object_type,
                object_uuid=str(obj.uuid),
                detail=f"scode {info.scode}: {info.render_message()}",
                found=(info.desc or "")[:500],
            )
        )
        return
    found = resolve_backing(name, info.backing, reader.driver.root)
    if found != expected:
        report.findings.append(
            Finding(
                kind=FindingKind.CHAIN_MISMATCH,
                name=name,
                object_type=object_type,
                object_uuid=str(obj.uuid),
                detail="backing file differs from the snapshot tree",
                expected=expected or "(none)",
                found=found or "(none)",
            )
        )


def _fix_pool(report: ReconcileReport, pool: Pool, driver: StorageDriver, actor: str, volumes, snapshots) -> None:
    volumes_by_uuid = {str(v.uuid): v for v in volumes}
    snapshots_by_uuid = {str(s.uuid): s for s in snapshots}
    remove_orphans(
        report=report, driver_delete=driver.delete_image, root=pool.path, actor=actor,
        object_type="pool", object_uuid=pool.uuid,
    )
    for finding in report.findings:
        if finding.kind != FindingKind.MISSING_FILE or not finding.fixable:
            continue
        try:
            with transaction.atomic():
                if finding.object_type == "volume":
                    volume = volumes_by_uuid[finding.object_uuid]
                    transition(
                        volume,
                        allowed=[volume.state],
                        to=EventState.ERROR,
                        action="reconcile.missing_image",
                        actor=actor,
                        message=f"{finding.name} is missing in pool {pool.name}",
                    )
                else:
                    snapshot = snapshots_by_uuid[finding.object_uuid]
                    transition(
                        snapshot,
                        allowed=[snapshot.status],
                        to=SnapshotStatus.ERROR,
                        field="status",
                        action="reconcile.missing_layer",
                        actor=actor,
                        volume_id=snapshot.volume_id,
                        message=f"{finding.name} is missing in pool {pool.name}",
                    )
            finding.fixed = True
        except errors.ServiceError as exc:
            finding.error = exc.render_message()
    now = timezone.now()
    for finding in report.findings:
        if finding.kind != FindingKind.SIZE_DRIFT or not finding.fixable:
            continue
        # Compare-and-set on the value the finding saw: a concurrent writer wins.
        if finding.detail == "Used":
            rows = Volume.objects.filter(uuid=finding.object_uuid, used=int(finding.expected)).update(
                used=int(finding.found), modified=now
            )
        elif finding.detail == "Size":
            rows = Snapshot.objects.filter(uuid=finding.object_uuid, size=int(finding.expected)).update(
                size=int(finding.found), modified=now
            )
        else:
            rows = Volume.objects.filter(uuid=finding.object_uuid, snap_length=int(finding.expected)).update(
                snap_length=int(finding.found), modified=now
            )
        finding.fixed = rows == 1
        if not finding.fixed:
            finding.error = "the value changed meanwhile"
    fixed = sum(1 for f in report.findings if f.fixed)
    if report.findings:
        audit(
            actor=actor,
            action="reconcile.fix",
            object_type="pool",
            object_uuid=pool.uuid,
            result="ok" if fixed == report.fixable_count else "partial",
            message=f"{len(report.findings)} finding(s), {fixed} fixed, {len(report.remaining)} remaining",
        )


register_reconcile_scope(ReconcileScope(name="pool", targets=_pool_targets, run=reconcile_pool))


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


def _live_operations(volume: Volume, *, lock: bool = False) -> tuple[list[Operation], list[Operation]]:
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


# -- reset state -------------------------------------------------------------------------------------


@dataclass
class ResetProposal:
    """The state the files support for a volume, or why no reset can be proposed."""

    volume_uuid: str
    current_state: int
    proposed_state: int | None
    reasons: list[str]
    blocked: str = ""
    inspection: VolumeInspection | None = None
    live_operations: list[str] = field(default_factory=list)
    stale_operations: list[str] = field(default_factory=list)

    @property
    def current_label(self):
        return EventState(self.current_state).label

    @property
    def proposed_label(self):
        return EventState(self.proposed_state).label if self.proposed_state is not None else ""

    def as_dict(self) -> dict:
        data = asdict(self)
        data["current_label"] = str(self.current_label)
        data["proposed_label"] = str(self.proposed_label)
        return data


def reset_state_preview(*, volume: Volume) -> ResetProposal:
    """Inspect the files and propose the state they support (never a blind overwrite)."""
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    live, stale = _live_operations(volume)
    proposal = ResetProposal(
        volume_uuid=str(volume.uuid),
        current_state=volume.state,
        proposed_state=None,
        reasons=[],
        live_operations=[str(o.uuid) for o in live],
        stale_operations=[str(o.uuid) for o in stale],
    )
    if live:
        proposal.blocked = f"operation {live[0].uuid} ({live[0].kind}) is {live[0].state}: wait for it or let the sweeper take it over"
        return proposal
    if volume.state == EventState.DELETED:
        proposal.blocked = "the volume is deleted"
        return proposal
    inspection = volume_inspect(volume)
    proposal.inspection = inspection
    if volume.state == EventState.DELETING:
        remaining = [inspection.head] if inspection.head_exists else []
        remaining += [layer["layer"] for layer in inspection.layers if layer["exists"]]
        remaining += inspection.partial_files
        if remaining:
            proposal.blocked = f"files remain ({', '.join(remaining)}): use force delete to finish the removal"
            return proposal
        proposal.proposed_state = EventState.DELETED
        proposal.reasons.append("no file of the volume is left: the removal finished")
        return proposal
    if not inspection.head_exists:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append("the volume's image does not exist")
    elif inspection.head_error:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append(f"the image is not usable: {inspection.head_error}")
    elif inspection.backing != inspection.expected_backing:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append(
            f"the image's backing file {inspection.backing or '(none)'} differs from the tree's "
            f"{inspection.expected_backing or '(none)'}"
        )
    elif not inspection.layers_ok:
        proposal.proposed_state = EventState.ERROR
        bad = [f"{layer['name']}: {layer['problem']}" for layer in inspection.layers if not layer["ok"]]
        proposal.reasons.append("snapshot layers disagree with the tree: " + "; ".join(bad))
    else:
        proposal.proposed_state = EventState.AVAILABLE
        proposal.reasons.append("the image exists, is readable, has the volume's capacity and the tree's backing file")
    if inspection.partial_files:
        proposal.reasons.append(f"partial writes left behind (reconcile removes them): {', '.join(inspection.partial_files)}")
    if proposal.proposed_state == volume.state:
        proposal.blocked = "the state already matches the files"
    return proposal


def reset_state(*, actor: str, volume: Volume, expected_from: int, to_state: int) -> ResetProposal:
    """Apply the preview's proposal: inspect again, cancel stale operations, compare-and-set the state.

    Refuses with RepairPreviewStale when the state or the files changed since the preview, and with
    RepairBlocked when a live operation holds the volume or nothing can be proposed. The files are
    read before the transaction opens: no lock is held while qemu-img runs.
    """
    proposal = reset_state_preview(volume=volume)
    if proposal.blocked:
        raise errors.RepairBlocked(action="reset state", kind="volume", uuid=volume.uuid, reason=proposal.blocked)
    if proposal.current_state != expected_from or proposal.proposed_state != to_state:
        raise errors.RepairPreviewStale(
            kind="volume",
            uuid=volume.uuid,
            reason=f"now {EventState(proposal.current_state).label} -> {proposal.proposed_label}",
        )
    with transaction.atomic():
        _cancel_stale_operations(volume, actor=actor, action="reset state")
        if to_state == EventState.DELETED:
            volume.snapshots.all().update(status=SnapshotStatus.DELETING, modified=timezone.now())
        transition(
            volume,
            allowed=[expected_from],
            to=to_state,
            action="volume.reset_state",
            actor=actor,
            message="; ".join(proposal.reasons),
        )
    return proposal


def _cancel_stale_operations(volume: Volume, *, actor: str, action: str) -> list[Operation]:
    """Inside the caller's transaction: refuse if an operation came alive since the preview, else
    cancel the ones whose worker is gone, so a late redelivery of their task does nothing.

    The rows are locked (PostgreSQL) or the IMMEDIATE transaction already excludes other writers
    (SQLite), so a worker cannot claim one between this check and the cancel.
    """
    live, stale = _live_operations(volume, lock=True)
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


# -- force delete ------------------------------------------------------------------------------------


@dataclass
class ForceDeletePlan:
    """What a force delete would remove and change, or why it is refused."""

    volume_uuid: str
    current_state: int
    files: list[str]
    attachments: list[str]
    snapshots: int
    blocked: str = ""
    stale_operations: list[str] = field(default_factory=list)

    @property
    def current_label(self):
        return EventState(self.current_state).label

    def as_dict(self) -> dict:
        data = asdict(self)
        data["current_label"] = str(self.current_label)
        return data


def force_delete_preview(*, volume: Volume) -> ForceDeletePlan:
    """List the files a force delete removes, the attachments it drops, and what blocks it."""
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    driver = pool_driver(volume.pool)
    names = [volume.image_name] + list(
        volume.snapshots.exclude(layer_name="").order_by("pk").values_list("layer_name", flat=True)
    )
    files = []
    for name in names:
        directory, base = os.path.split(name)
        for candidate in (name, os.path.join(directory, TMP_PREFIX + base)):
            if os.path.lexists(os.path.join(driver.root, candidate)):
                files.append(candidate)
    live, stale = _live_operations(volume)
    plan = ForceDeletePlan(
        volume_uuid=str(volume.uuid),
        current_state=volume.state,
        files=files,
        attachments=[str(vm) for vm in volume.attachments.values_list("vm_uuid", flat=True)],
        snapshots=volume.snapshots.count(),
        stale_operations=[str(o.uuid) for o in stale],
    )
    clones = list(
        Volume.objects.filter(parent_snapshot__volume=volume, state__in=LIVE_STATES).values_list("uuid", flat=True)
    )
    if volume.state == EventState.DELETED:
        plan.blocked = "the volume is already deleted"
    elif live:
        plan.blocked = f"operation {live[0].uuid} ({live[0].kind}) is {live[0].state}: wait for it or let the sweeper take it over"
    elif clones:
        # Force never overrides this: removing the layers would corrupt the clones.
        plan.blocked = "linked clones read its snapshots: " + ", ".join(map(str, clones))
    return plan


def force_delete(*, actor: str, volume: Volume, expected_state: int) -> Operation:
    """Take the volume out of service whatever its state and queue the ordinary removal task.

    Stale operations are cancelled, attachments are dropped from the record (the hypervisor must
    have let go), and the volume moves to `deleting` by compare-and-set from `expected_state`.
    The files are removed by the delete task, not here.
    """
    plan = force_delete_preview(volume=volume)
    if plan.blocked:
        raise errors.RepairBlocked(action="force delete", kind="volume", uuid=volume.uuid, reason=plan.blocked)
    if plan.current_state != expected_state:
        raise errors.RepairPreviewStale(kind="volume", uuid=volume.uuid, reason=f"now {plan.current_label}")
    with transaction.atomic():
        _cancel_stale_operations(volume, actor=actor, action="force delete")
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
            target_type="volume",
            target_uuid=volume.uuid,
            actor=actor,
            volume=volume,
            params={"force": True, "forced_from": int(expected_state)},
        )


# -- refresh usage -----------------------------------------------------------------------------------


@dataclass
class UsageChange:
    """One size the database holds and what the files measure."""

    volume_uuid: str
    volume_name: str
    field: str
    old: int
    new: int
    object_uuid: str = ""


@dataclass
class UsageReport:
    """What refresh_usage measured and changed."""

    dry_run: bool
    volumes_checked: int = 0
    changes: list[UsageChange] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def refresh_usage(
    *,
    actor: str,
    pools: Iterable[Pool] | None = None,
    volumes: Iterable[Volume] | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> UsageReport:
    """Measure Used, each snapshot's Size and SnapLength from the files; write what changed.

    Volumes that an operation is working on, or whose content is not there yet, are skipped.
    """
    queryset = Volume.objects.exclude(state__in=[EventState.DELETED, EventState.DELETING]).select_related("pool")
    if volumes is not None:
        queryset = queryset.filter(pk__in=[v.pk for v in volumes])
    if pools is not None:
        queryset = queryset.filter(pool__in=list(pools))
    targets = list(queryset.order_by("pool_id", "pk"))
    busy = busy_uuids()
    report = UsageReport(dry_run=dry_run)
    snapshots: dict[int, list[Snapshot]] = {}
    for snapshot in Snapshot.objects.filter(volume__in=targets).order_by("pk"):
        snapshots.setdefault(snapshot.volume_id, []).append(snapshot)
    for index, volume in enumerate(targets, start=1):
        if progress is not None:
            progress(index, len(targets), volume.name)
        if str(volume.uuid) in busy or volume.state not in (EventState.AVAILABLE, EventState.ERROR):
            report.skipped.append({"volume_uuid": str(volume.uuid), "state": str(volume.get_state_display())})
            continue
        driver = pool_driver(volume.pool)
        report.volumes_checked += 1
        try:
            changes = _measure_volume(driver, volume, snapshots.get(volume.pk, []))
        except errors.ServiceError as exc:
            report.errors.append({"volume_uuid": str(volume.uuid), "error": exc.render_message()})
            continue
        report.changes.extend(changes)
        if not dry_run and changes:
            _write_usage(volume, changes, actor)
    return report


def _measure_volume(driver: StorageDriver, volume: Volume, snapshots: list[Snapshot]) -> list[UsageChange]:
    changes = []
    if driver.exists(volume.image_name):
        used = driver.allocated_bytes(volume.image_name)
        if used != volume.used:
            changes.append(UsageChange(str(volume.uuid), volume.name, "used", volume.used, used, str(volume.uuid)))
    sizes = {}
    for snapshot in snapshots:
        if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
            continue
        size = driver.allocated_bytes(snapshot.layer_name) if driver.exists(snapshot.layer_name) else 0
        sizes[snapshot.pk] = size
        if size != snapshot.size:
            changes.append(UsageChange(str(volume.uuid), volume.name, "snapshot.size", snapshot.size, size, str(snapshot.uuid)))
    length = snap_length_of(snapshots, sizes)
    if length != volume.snap_length:
        changes.append(UsageChange(str(volume.uuid), volume.name, "snap_length", volume.snap_length, length, str(volume.uuid)))
    return changes


@transaction.atomic
def _write_usage(volume: Volume, changes: list[UsageChange], actor: str) -> None:
    now = timezone.now()
    for change in changes:
        # Compare-and-set on the value measured against: a concurrent writer's figure wins.
        if change.field == "snapshot.size":
            Snapshot.objects.filter(uuid=change.object_uuid, size=change.old).update(size=change.new, modified=now)
        else:
            Volume.objects.filter(pk=volume.pk, **{change.field: change.old}).update(**{change.field: change.new, "modified": now})
    audit(
        actor=actor,
        action="usage.refresh",
        object_type="volume",
        object_uuid=volume.uuid,
        volume_id=volume.pk,
        message=", ".join(f"{c.field} {c.old} -> {c.new}" for c in changes),
    )


# -- retry of a failed operation ---------------------------------------------------------------------

RetryFn = Callable[[Operation, str], Operation]
RETRY_HANDLERS: dict[str, tuple[Callable[[Operation], str], RetryFn]] = {}


def register_retry(kind: str, check: Callable[[Operation], str], retry: RetryFn) -> None:
    """Let the app that owns an operation kind say when and how a failed one is safely retried.

    check(operation) returns "" when a retry is safe, else the reason it is not.
    """
    RETRY_HANDLERS[kind] = (check, retry)


def _is_latest_for_volume(operation: Operation) -> bool:
    latest = Operation.objects.filter(target_uuid=operation.target_uuid).order_by("-created", "-id").first()
    return latest is not None and latest.pk == operation.pk


def operation_retry_check(operation: Operation) -> str:
    """"" when the failed operation can be retried safely now, else the reason it cannot."""
    if operation.state != OperationState.FAILED:
        return f"it is {operation.get_state_display()}, not failed"
    handler = RETRY_HANDLERS.get(operation.kind)
    if handler is None:
        return f"no safe retry is defined for {operation.get_kind_display()}"
    if not _is_latest_for_volume(operation):
        return "a newer operation exists for the same object"
    return handler[0](operation)


@transaction.atomic
def operation_retry(*, actor: str, operation: Operation) -> Operation:
    """Queue a new operation that repeats a failed one; the failed row stays as history."""
    operation = Operation.objects.select_related("volume").get(pk=operation.pk)
    reason = operation_retry_check(operation)
    if reason:
        raise errors.OperationNotRetryable(uuid=operation.uuid, reason=reason)
    retried = RETRY_HANDLERS[operation.kind][1](operation, actor)
    audit(
        actor=actor,
        action="operation.retry",
        object_type=operation.target_type,
        object_uuid=operation.target_uuid,
        volume_id=operation.volume_id,
        operation_id=operation.pk,
        message=f"retried as {retried.uuid}",
    )
    return retried


def _create_retry_check(operation: Operation) -> str:
    volume = operation.volume
    if volume is None:
        return "the volume is gone"
    if volume.state != EventState.ERROR:
        return f"the volume is {volume.get_state_display()}, not error"
    if Operation.objects.filter(active_operations_filter(), volume=volume).exists():
        return "another operation on the volume is queued or running"
    if pool_driver(volume.pool).exists(volume.image_name):
        return "an image exists for the volume: use reset state instead"
    return ""


def _create_retry(operation: Operation, actor: str) -> Operation:
    volume = operation.volume
    to = EventState.IMPORTING if operation.kind == OperationKind.VOLUME_IMPORT else EventState.CREATING
    transition(volume, allowed=[EventState.ERROR], to=to, action="volume.retry", actor=actor,
               message=f"retry of operation {operation.uuid}")
    params = {k: v for k, v in operation.params.items() if k not in ("used",)}
    params["retry_of"] = str(operation.uuid)
    return operation_create(
        kind=operation.kind, target_type=operation.target_type,
        target_uuid=operation.target_uuid, actor=actor, volume=volume, params=params,
        bytes_total=operation.bytes_total,
    )


def _delete_retry_check(operation: Operation) -> str:
    volume = operation.volume
    if volume is None:
        return "the volume is gone"
    if volume.state != EventState.DELETING:
        return f"the volume is {volume.get_state_display()}, not deleting"
    if Operation.objects.filter(active_operations_filter(), volume=volume).exists():
        return "another operation on the volume is queued or running"
    return ""


def _delete_retry(operation: Operation, actor: str) -> Operation:
    params = dict(operation.params, retry_of=str(operation.uuid))
    return operation_create(
        kind=operation.kind, target_type=operation.target_type,
        target_uuid=operation.target_uuid, actor=actor, volume=operation.volume, params=params,
    )


register_retry(OperationKind.VOLUME_CREATE, _create_retry_check, _create_retry)
register_retry(OperationKind.VOLUME_IMPORT, _create_retry_check, _create_retry)
register_retry(OperationKind.VOLUME_DELETE, _delete_retry_check, _delete_retry)
