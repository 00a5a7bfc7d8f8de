"""Reconcile: compare the database with the files of every pool (and, through registered scopes,
every backup point); with fix, repair what is safe to repair and report the rest."""

from __future__ import annotations

import uuid as uuid_lib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.utils import timezone

from sharestore import errors
from sharestore.core.services.state import OperationContext, status_transition, transition
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.drivers.base import StoredObject
from volumes.models import Pool, Snapshot, Volume
from volumes.services.repair.common import (
    LAYER_EXPECTED_STATUSES,
    audit_fix,
    busy_uuids,
    classify_orphans,
    expected_head_backing,
    expected_layer_backing,
    mark_missing,
    remove_orphans,
)
from volumes.services.repair.findings import (
    DEFAULT_GRACE_SECONDS,
    Finding,
    FindingKind,
    FixAction,
    ProgressFn,
    ReconcileReport,
)
from volumes.services.repair.words import ErrorWords, Words
from volumes.services.volumes import pool_driver, snap_length_of

# -- reconcile scopes (pools here; other apps register theirs, e.g. backup points) -----------------


@dataclass(frozen=True)
class ReconcileOptions:
    """How a reconcile runs, the same for every scope: with fix or as a dry run, the orphans' grace
    period, and who hears of its progress."""

    fix: bool = False
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    progress: ProgressFn | None = None

    def counter(self, total: int) -> Callable[[str], None]:
        """tick(label): one more of the `total` things a scope inspects, told to `progress` if any."""
        done = 0

        def tick(label: str) -> None:
            nonlocal done
            done += 1
            if self.progress is not None:
                self.progress(done, total, label)

        return tick


@dataclass(frozen=True)
class ReconcileScope:
    """A kind of storage place reconcile walks: how to list targets and reconcile one.

    `run(actor=..., target=..., **options)` takes the fields of ReconcileOptions as keywords."""

    name: str
    targets: Callable[[list[str] | None], list]
    run: Callable[..., ReconcileReport]


SCOPES: dict[str, ReconcileScope] = {}


def register_reconcile_scope(scope: ReconcileScope) -> None:
    """Called by other apps (from their AppConfig.ready) so one reconcile covers them too."""
    SCOPES[scope.name] = scope


def reconcile_scopes() -> dict[str, ReconcileScope]:
    # Apps that depend on volumes register their scope when Django readies them (backups: its
    # AppConfig.ready); volumes never imports them (imports point one way: backups -> volumes).
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


def pool_targets(uuids: list[str] | None) -> list[Pool]:
    queryset = Pool.objects.order_by("name", "pk")
    if uuids is not None:
        uuids = parse_uuids(uuids, field_name="pool")
        queryset = queryset.filter(uuid__in=uuids)
        found = {str(p.uuid) for p in queryset}
        missing = [u for u in uuids if str(u) not in found]
        if missing:
            raise errors.InvalidParameter(
                field="pool", reason=f"no pool with UUID {', '.join(map(str, missing))}"
            )
    return list(queryset)


def reconcile(
    *, actor: str, targets: dict[str, list[str] | None] | None = None, **options
) -> list[ReconcileReport]:
    """Reconcile every pool and backup point, or only `targets` ({scope name: [uuid, ...] | None});
    `options` are the fields of ReconcileOptions (fix, grace_seconds, progress).

    Without fix nothing is written (the dry run). With fix: orphan files older than the grace
    period that no queued or running operation may be writing, and that no referenced image uses
    as backing, are removed; volumes (snapshots, backups) whose file is missing are marked error
    (failed) through `transition`; sizes are refreshed. Chain mismatches, unreadable images and
    stuck states are reported only.
    """
    ReconcileOptions(**options)  # an unknown option fails here, before any scope runs
    scopes = reconcile_scopes()
    if targets is None:
        targets = {name: None for name in scopes}
    unknown = set(targets) - set(scopes)
    if unknown:
        raise errors.InvalidParameter(
            field="scope", reason=f"unknown reconcile scope {', '.join(sorted(unknown))}"
        )
    reports = []
    for name, uuids in targets.items():
        scope = scopes[name]
        for target in scope.targets(uuids):
            reports.append(scope.run(actor=actor, target=target, **options))
    return reports


# -- pools -------------------------------------------------------------------------------------------
# Volume states whose head image must exist (whatever else is going on).
HEAD_EXPECTED_STATES = [
    EventState.AVAILABLE,
    EventState.SNAPSHOTTING,
    EventState.ROLLING_BACK,
    EventState.MERGING,
    EventState.FLATTENING,
]  # Volume states that are resting points; any other state needs an operation to move on.
RESTING_STATES = [EventState.AVAILABLE, EventState.ERROR, EventState.DELETED]


def _pool_volumes(pool: Pool) -> list[Volume]:
    return list(
        Volume.objects.filter(pool=pool)
        .exclude(state=EventState.DELETED)
        .select_related("pool", "current_snapshot", "parent_snapshot__volume__pool")
        .order_by("pk")
    )


def _pool_snapshots(volume_ids: list[int]) -> list[Snapshot]:
    return list(Snapshot.objects.filter(volume_id__in=volume_ids).order_by("pk"))


def reconcile_pool(*, actor: str, target: Pool, **options) -> ReconcileReport:
    """Compare one pool's volumes and snapshots with its files; with fix, repair what is safe.
    `options`: the fields of ReconcileOptions."""
    pool, opts = target, ReconcileOptions(**options)
    report = ReconcileReport(scope="pool", uuid=str(pool.uuid), name=pool.name, path=pool.path, fix=opts.fix)
    driver = pool_driver(pool)
    try:
        inventory = {o.name: o for o in driver.inventory()}
    except errors.PoolUnavailable as exc:
        report.error = Words(
            "pool_unavailable", path=pool.path, reason=exc.params.get("reason", "is unavailable")
        )
        return report
    except OSError as exc:
        report.error = Words("cannot_list", path=pool.path, error=exc)
        return report
    report.files_checked = len(inventory)
    file_set = {name for name, o in inventory.items() if not o.partial}
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

    tick = opts.counter(len(inventory) + len(volumes))
    measured_size: dict[int, int] = {}
    for volume in volumes:
        tick(volume.image_name)
        volume_busy = str(volume.uuid) in busy
        layers = snapshots_by_volume.get(volume.pk, [])
        if volume.state not in RESTING_STATES and not volume_busy:
            stuck = _row_finding(
                FindingKind.STUCK_STATE,
                volume,
                volume.image_name,
                detail=Words("stuck"),
                found=EventState(volume.state).label,
            )
            report.findings.append(stuck)
        if volume_busy or volume.state == EventState.DELETING:
            continue
        head_exists = volume.image_name in file_set
        if not head_exists and volume.state in HEAD_EXPECTED_STATES:
            report.findings.append(
                Finding.missing(
                    volume.image_name,
                    "volume",
                    volume,
                    detail=Words("volume_image_missing"),
                    expected=EventState(volume.state).label,
                    fix=FixAction.MARK_ERROR,
                )
            )
        # An errored volume promises no usable image: its file (if any) is accounted for, not checked.
        if head_exists and volume.state in HEAD_EXPECTED_STATES:
            info = inventory[volume.image_name]
            _check_image(report, info, volume, expected_head_backing(volume))
            if info.error is None:
                _check_size(report, volume.image_name, volume, "Used", measured=info.allocated)
        for snapshot in layers:
            if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
                continue
            layer_exists = snapshot.layer_name in file_set
            if not layer_exists:
                if snapshot.status in LAYER_EXPECTED_STATUSES:
                    report.findings.append(
                        Finding.missing(
                            snapshot.layer_name,
                            "snapshot",
                            snapshot,
                            detail=Words("snapshot_layer_missing", name=snapshot.name),
                            expected=SnapshotStatus(snapshot.status).label,
                            fix=FixAction.MARK_ERROR,
                        )
                    )
                continue
            info = inventory[snapshot.layer_name]
            _check_image(report, info, snapshot, expected_layer_backing(snapshot, snapshot_by_id, volume))
            if info.error is None:
                measured_size[snapshot.pk] = info.allocated
                _check_size(report, snapshot.layer_name, snapshot, "Size", measured=info.allocated)
        if layers and all(
            s.pk in measured_size or s.status == SnapshotStatus.DELETING or not s.layer_name for s in layers
        ):
            length = snap_length_of(layers, measured_size)
            _check_size(report, f"snapshots/{volume.uuid}/", volume, "SnapLength", measured=length)

    orphans = []
    for name, stored in inventory.items():
        tick(name)
        if name in referenced:
            continue
        orphans.append(stored)

    def protected_backings() -> set[str]:
        chained: set[str] = set()
        for name in referenced:
            if name in file_set:
                chained.update(inventory[name].reads)
        return chained

    classify_orphans(
        report=report,
        orphans=orphans,
        busy=busy,
        protected_backings=protected_backings,
        grace_seconds=opts.grace_seconds,
    )

    if opts.fix:
        _fix_pool(report, pool, driver, actor, volumes, snapshots)
    return report


# A size finding's `detail`: the model and column it compares with what the files measure (and a fix
# writes back, by compare-and-set on the value the finding saw).
SIZE_COLUMNS = {"Used": (Volume, "used"), "Size": (Snapshot, "size"), "SnapLength": (Volume, "snap_length")}


def _check_size(report: ReconcileReport, name: str, obj, detail: str, *, measured: int) -> None:
    """A size-drift finding when the row's `detail` column differs from the size the files measure."""
    model, column = SIZE_COLUMNS[detail]
    recorded = getattr(obj, column)
    if measured != recorded:
        object_type = model._meta.model_name
        report.findings.append(
            Finding.size_drift(name, object_type, obj, detail=detail, expected=recorded, found=measured)
        )


def _row_finding(kind: str, obj, name: str, **values) -> Finding:
    """A finding about a volume's or a snapshot's file `name` (object type = model name, its UUID)."""
    return Finding(
        kind=kind, name=name, object_type=obj._meta.model_name, object_uuid=str(obj.uuid), **values
    )


def _check_image(report: ReconcileReport, info: StoredObject, obj, expected: str | None):
    """An image qemu-img cannot read, or one whose backing is not the layer the tree expects."""
    if info.error is not None:
        error = info.error
        unreadable = _row_finding(
            FindingKind.UNREADABLE, obj, info.name, detail=ErrorWords(error), found=(error.desc or "")[:500]
        )
        report.findings.append(unreadable)
        return
    if info.backing != expected:
        mismatch = _row_finding(
            FindingKind.CHAIN_MISMATCH,
            obj,
            info.name,
            detail=Words("backing_differs"),
            expected=expected or Words("none"),
            found=info.backing or Words("none"),
        )
        report.findings.append(mismatch)


def _fix_pool(
    report: ReconcileReport, pool: Pool, driver: StorageDriver, actor: str, volumes, snapshots
) -> None:
    volumes_by_uuid = {str(v.uuid): v for v in volumes}
    snapshots_by_uuid = {str(s.uuid): s for s in snapshots}
    remove_orphans(
        report=report,
        remove=driver.remove_object,
        still_there=driver.exists,
        actor=actor,
        object_type="pool",
        object_uuid=pool.uuid,
    )

    ctx = OperationContext(actor=actor)

    def mark(finding: Finding) -> None:
        message = f"{finding.name} is missing in pool {pool.name}"
        if finding.object_type == "volume":
            volume = volumes_by_uuid[finding.object_uuid]
            transition(
                volume,
                ctx=ctx,
                allowed=[volume.state],
                to=EventState.ERROR,
                action="reconcile.missing_image",
                message=message,
            )
        else:
            snapshot = snapshots_by_uuid[finding.object_uuid]
            status_transition(
                snapshot,
                ctx,
                allowed=[snapshot.status],
                to=SnapshotStatus.ERROR,
                action="reconcile.missing_layer",
                message=message,
            )

    mark_missing(report, mark)
    now = timezone.now()
    for finding in report.findings:
        if finding.kind != FindingKind.SIZE_DRIFT or not finding.fixable:
            continue
        # Compare-and-set on the value the finding saw: a concurrent writer wins.
        model, column = SIZE_COLUMNS[finding.detail]
        seen = model.objects.filter(uuid=finding.object_uuid, **{column: int(finding.expected)})
        rows = seen.update(**{column: int(finding.found)}, modified=now)
        finding.fixed = rows == 1
        if not finding.fixed:
            finding.error = Words("value_changed")
    audit_fix(report, actor=actor, object_type="pool", object_uuid=pool.uuid)


register_reconcile_scope(ReconcileScope(name="pool", targets=pool_targets, run=reconcile_pool))
