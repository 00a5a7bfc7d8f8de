"""Usage refresh: measure Used, each snapshot's Size and SnapLength from the files and write what
changed, with an audit row; one service for the API, the console and `manage.py refresh_usage`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.utils import timezone

from sharestore import errors
from sharestore.core.services.state import audit_of
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.models import Pool, Snapshot, Volume
from volumes.services.busy import refuse_if_busy
from volumes.services.repair.common import busy_uuids
from volumes.services.repair.findings import ProgressFn
from volumes.services.volumes import pool_driver, snap_length_of

# What a refresh measures: the head's allocated bytes, and the layers' sizes with their sum.
USED = "used"
SNAP_LENGTH = "snap_length"
USAGE_FIELDS = (USED, SNAP_LENGTH)


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
    queryset = Volume.objects.exclude(state__in=[EventState.DELETED, EventState.DELETING]).select_related(
        "pool"
    )
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
            changes = measure_volume(driver, volume, snapshots.get(volume.pk, []))
        except errors.ServiceError as exc:
            report.errors.append({"volume_uuid": str(volume.uuid), "error": exc.render_message()})
            continue
        report.changes.extend(changes)
        if not dry_run and changes:
            write_usage(volume, changes, actor)
    return report


def volume_usage_refresh(*, actor: str, volume: Volume, fields: Iterable[str] = USAGE_FIELDS) -> Volume:
    """Refresh one settled volume's `fields` (USED, SNAP_LENGTH) from its files; audited like a bulk refresh.

    The API's `used/update` and `snap_length/update` call this. Sizes are read only from an available
    volume (while layers are written or renamed a reading is wrong), and a missing head is an error
    here, not a skip: the caller asked about this volume.
    """
    fields = tuple(fields)
    # As it is now: a request that waited for a short step retries with the same instance.
    refuse_if_busy(Volume.objects.get(pk=volume.pk), action="update usage")
    snapshots = list(Snapshot.objects.filter(volume_id=volume.pk).order_by("pk"))
    changes = measure_volume(pool_driver(volume.pool), volume, snapshots, fields=fields, require_head=True)
    if changes:
        write_usage(volume, changes, actor)
    volume.refresh_from_db()
    return volume


def measure_volume(
    driver: StorageDriver,
    volume: Volume,
    snapshots: list[Snapshot],
    *,
    fields: Iterable[str] = USAGE_FIELDS,
    require_head: bool = False,
) -> list[UsageChange]:
    """What differs between the rows and the files; a missing head is skipped unless `require_head`."""
    changes = []
    if SNAP_LENGTH not in fields:
        snapshots = []
    if USED in fields and (require_head or driver.exists(volume.image_name)):
        used = driver.usage(volume.image_name)
        if used != volume.used:
            changes.append(
                UsageChange(str(volume.uuid), volume.name, "used", volume.used, used, str(volume.uuid))
            )
    sizes = {}
    for snapshot in snapshots:
        if not snapshot.layer_name or snapshot.status == SnapshotStatus.DELETING:
            continue
        size = driver.usage(snapshot.layer_name) if driver.exists(snapshot.layer_name) else 0
        sizes[snapshot.pk] = size
        if size != snapshot.size:
            changes.append(
                UsageChange(
                    str(volume.uuid), volume.name, "snapshot.size", snapshot.size, size, str(snapshot.uuid)
                )
            )
    length = snap_length_of(snapshots, sizes)
    if SNAP_LENGTH in fields and length != volume.snap_length:
        changes.append(
            UsageChange(
                str(volume.uuid), volume.name, "snap_length", volume.snap_length, length, str(volume.uuid)
            )
        )
    return changes


@transaction.atomic
def write_usage(volume: Volume, changes: list[UsageChange], actor: str) -> None:
    now = timezone.now()
    for change in changes:
        # Compare-and-set on the value measured against: a concurrent writer's figure wins.
        if change.field == "snapshot.size":
            Snapshot.objects.filter(uuid=change.object_uuid, size=change.old).update(
                size=change.new, modified=now
            )
        else:
            Volume.objects.filter(pk=volume.pk, **{change.field: change.old}).update(
                **{change.field: change.new, "modified": now}
            )
    audit_of(
        volume,
        actor=actor,
        action="usage.refresh",
        message=", ".join(f"{c.field} {c.old} -> {c.new}" for c in changes),
    )
