"""Writes on volumes: create (empty or imported), delete, attach and detach; the volume lock and SnapLength.

Each public function validates everything before it writes, so a rejected request changes
nothing. Storage work runs in the task entry (`sharestore.core.tasks.operation_task`) through
`operation_run`.
"""

from __future__ import annotations

import unicodedata
import uuid as uuid_lib
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_create, operation_start
from sharestore.core.services.space import Reservation
from sharestore.core.services.state import OperationContext, audit, audit_of, require_state, transition
from volumes.choices import LIVE_STATES, EventState, SnapshotStatus, VolumeType
from volumes.drivers import StorageDriver, get_driver
from volumes.models import Cluster, Pool, Snapshot, Tenant, Volume, VolumeAttachment
from volumes.selectors import volume_snapshot_readers
from volumes.services.busy import readers_words, refuse_if_busy, volume_delete_after_merge
from volumes.services.quotas import quota_check
from volumes.services.shapes import VolumeShape
from volumes.services.space import pool_reservation

MIN_VOLUME_BYTES = 1 << 20
SECTOR = 512


def pool_driver(pool: Pool) -> StorageDriver:
    return get_driver(pool.driver, pool.path, str(pool.uuid))


def volume_lock(volume: Volume, *, action: str) -> Volume:
    """Lock the volume's row for this transaction and require it to be available.

    Snapshot, rollback, delete, clone and attach take the same lock, so either a request sees the
    reader (or the state change) another records, or that one sees it: a VM cannot be attached
    between the check below and the state change that makes the volume busy.
    """
    locked = (
        Volume.objects.select_for_update(of=("self",)).select_related("pool").filter(pk=volume.pk).first()
    )
    if locked is None:
        raise errors.StateConflict(kind="volume", uuid=volume.uuid, state="gone", action=action)
    refuse_if_busy(locked, action=action)
    return locked


def operation_volume(
    operation: Operation, *, allowed, action: str, with_value: bool = True
) -> tuple[Volume, StorageDriver]:
    """Where a task's handler starts: the operation's volume (with its pool), which must be in one of
    the `allowed` states (`require_state`), and its pool's driver."""
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    require_state(volume, allowed, action=action, with_value=with_value)
    return volume, pool_driver(volume.pool)


def volume_leaves(
    volume: Volume, operation: Operation, *, held, action: str, to: EventState = EventState.AVAILABLE, **audit
) -> None:
    """Where a task's handler ends: the volume leaves the state it `held` it in (one, or a list) for
    `to` (available unless said), audited under the operation as `action` (`audit`: extra, message,
    error as `transition` takes them)."""
    allowed = list(held) if isinstance(held, list | tuple) else [held]
    transition(volume, allowed=allowed, to=to, action=action, ctx=OperationContext.of(operation), **audit)


# The state in which each operation that `start_operation` starts holds its volume while it runs.
HOLDING_STATES = {
    OperationKind.SNAPSHOT_CREATE: EventState.SNAPSHOTTING,
    OperationKind.SNAPSHOT_DELETE: EventState.MERGING,
    OperationKind.SNAPSHOT_ROLLBACK: EventState.ROLLING_BACK,
    OperationKind.FLATTEN: EventState.FLATTENING,
}


def start_operation(
    volume: Volume,
    *,
    actor: str,
    kind: OperationKind,
    message: str = "",
    from_states=(EventState.AVAILABLE,),
    to_state: EventState | None = None,
    action: str | None = None,
    target: Snapshot | None = None,
    params: dict | None = None,
    bytes_total: int = 0,
    reservation: Reservation | None = None,
) -> Operation:
    """Move the volume into the operation's holding state (`HOLDING_STATES`, compare-and-set from
    `from_states`, audited as the kind) and queue the operation: how a snapshot create, delete,
    rollback or a flatten starts, in the caller's transaction, after the caller validated everything
    (and reserved the space a copy needs).
    `to_state` and `action` override those defaults. With a `target` snapshot the operation is on it,
    and its UUID (`params["snapshot"]`) and name (the audit message) are the defaults."""
    if target is not None:
        params = {"snapshot": str(target.uuid)} if params is None else params
        message = message or f"snapshot {target.name!r} ({target.uuid})"
    transition(
        volume,
        allowed=list(from_states),
        to=HOLDING_STATES[kind] if to_state is None else to_state,
        action=action or str(kind),
        actor=actor,
        message=message,
    )
    return operation_create(
        kind=kind,
        actor=actor,
        volume=volume,
        target_type="volume" if target is None else "snapshot",
        target_uuid=None if target is None else target.uuid,
        params=params,
        bytes_total=bytes_total,
        reservation=reservation,
    )


def snap_length_of(snapshots: Iterable[Snapshot], sizes: dict[int, int] | None = None) -> int:
    """SnapLength: allocated bytes of every layer not being deleted (hidden layers still occupy space).

    `sizes` ({snapshot pk: bytes}) overrides the rows' sizes with fresh measurements.
    """
    sizes = sizes or {}
    return sum(
        sizes.get(s.pk, s.size) for s in snapshots if s.status != SnapshotStatus.DELETING and s.layer_name
    )


def volume_snap_length(volume: Volume) -> int:
    """SnapLength of a volume from its snapshot rows as they are now."""
    return snap_length_of(
        Snapshot.objects.filter(volume_id=volume.pk).only("pk", "size", "status", "layer_name")
    )


# -- validation ----------------------------------------------------------------------------------


def validate_name(value, *, field: str) -> str:
    """A name: 1-128 characters after trimming, no control characters; any script (Chinese too)."""
    if not isinstance(value, str):
        raise errors.InvalidName(field=field, reason="must be a string", reason_cn="必须是字符串")
    name = value.strip()
    if not name:
        raise errors.InvalidName(field=field, reason="must not be empty", reason_cn="不能为空")
    limit = settings.SHARESTORE_NAME_MAX_LENGTH
    if len(name) > limit:
        raise errors.InvalidName(
            field=field, reason=f"longer than {limit} characters", reason_cn=f"长度超过 {limit} 个字符"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in name):
        raise errors.InvalidName(field=field, reason="contains control characters", reason_cn="包含控制字符")
    return name


def check_volume_name(volume: Volume, given: str) -> None:
    """The contract names a volume by UUID and name on some actions: a name that differs is refused."""
    if given != volume.name:
        raise errors.VolumeNameMismatch(given=given, uuid=volume.uuid)


DESC_MAX_LENGTH = 1024


def validate_desc(value) -> str:
    """A description: any string up to DESC_MAX_LENGTH characters ("" when absent)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.InvalidParameter(field="desc", reason="must be a string")
    if len(value) > DESC_MAX_LENGTH:
        raise errors.InvalidParameter(field="desc", reason=f"longer than {DESC_MAX_LENGTH} characters")
    return value


def validate_capacity(value: int | None, *, field: str, allow_zero: bool = False) -> int:
    maximum = settings.SHARESTORE_MAX_VOLUME_BYTES
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidCapacity(field=field, reason="must be an integer", reason_cn="必须是整数")
    if value < 0 or (value == 0 and not allow_zero):
        raise errors.InvalidCapacity(field=field, reason="must be positive", reason_cn="必须为正数")
    if field == "capacity":
        if value < MIN_VOLUME_BYTES:
            raise errors.InvalidCapacity(
                field=field,
                reason=f"must be at least {MIN_VOLUME_BYTES} bytes",
                reason_cn=f"不能小于 {MIN_VOLUME_BYTES} 字节",
            )
        if value % SECTOR:
            raise errors.InvalidCapacity(
                field=field,
                reason=f"must be a multiple of {SECTOR} bytes",
                reason_cn=f"必须是 {SECTOR} 字节的整数倍",
            )
    if value > maximum:
        raise errors.InvalidCapacity(
            field=field, reason=f"exceeds the maximum {maximum} bytes", reason_cn=f"超过上限 {maximum} 字节"
        )
    return value


def validate_volume_type(value) -> str:
    if value not in VolumeType.values:
        raise errors.InvalidVolumeType(value=value)
    return value


def _check_pool_capacity(pool: Pool, requested: int) -> None:
    """Raise PoolCapacityExceeded unless `requested` more bytes fit under capacity x overcommit.

    The pool row is locked first (a no-op on SQLite, where the IMMEDIATE transaction already
    serialises writers), so two concurrent creates cannot both take the last bytes.
    """
    # The locked row's capacity and ratio: a concurrent change (pool API `set`) is seen once it commits.
    pool = Pool.objects.select_for_update().filter(pk=pool.pk).first() or pool
    committed = (
        Volume.objects.filter(pool=pool, state__in=LIVE_STATES).aggregate(total=Sum("capacity"))["total"] or 0
    )
    limit = pool.capacity_limit
    if committed + requested > limit:
        raise errors.PoolCapacityExceeded(
            pool=pool.name,
            requested=requested,
            available=max(limit - committed, 0),
            limit=limit,
            ratio=pool.overcommit_ratio,
        )


# -- create --------------------------------------------------------------------------------------


def volume_reserve(
    *,
    tenant: Tenant,
    cluster: Cluster,
    pool: Pool,
    name: str,
    shape: VolumeShape,
    state: EventState,
    **lineage,
) -> Volume:
    """Insert a new volume row in a populating state after the checks every new volume passes.
    `lineage`: the new volume's links to what it is made from (`source_volume`, `parent_snapshot`,
    `clone_source_snapshot`, `restored_from_backup_uuid`).

    Shared by create, import, clone and restore, which then queue the operation that writes the
    image. Call inside the caller's transaction: name uniqueness and pool capacity hold until it
    commits (the pool row is locked on PostgreSQL; SQLite serialises writers).
    """
    name = validate_name(name, field="volume_name")
    shape = VolumeShape(
        volume_type=validate_volume_type(shape.volume_type),
        capacity=validate_capacity(shape.capacity, field="capacity"),
        snap_capacity=validate_capacity(shape.snap_capacity, field="snap_capacity", allow_zero=True),
    )
    if pool.cluster_id != cluster.pk:
        raise errors.PoolNotFound(uuid=pool.uuid, cluster=cluster.uuid)
    if Volume.objects.filter(tenant=tenant, cluster=cluster, name=name, state__in=LIVE_STATES).exists():
        raise errors.VolumeNameExists(name=name)
    _check_pool_capacity(pool, shape.capacity)
    quota_check(tenant=tenant, volumes=1, bytes=shape.capacity)
    try:
        with transaction.atomic():
            return Volume.objects.create(
                uuid=uuid_lib.uuid4(),
                name=name,
                tenant=tenant,
                namespace=tenant.namespace,
                cluster=cluster,
                pool=pool,
                **shape.volume_fields(),
                state=state,
                **lineage,
            )
    except IntegrityError:
        raise errors.VolumeNameExists(name=name) from None


@transaction.atomic
def volume_create(
    *,
    actor: str,
    tenant: Tenant,
    cluster: Cluster,
    pool: Pool,
    name: str,
    volume_type: str,
    snap_capacity: int,
    capacity: int | None = None,
    backing_file: str | None = None,
) -> Volume:
    """Record a new volume in `creating` (or `importing`) and queue the task that makes its image."""
    name = validate_name(name, field="volume_name")
    volume_type = validate_volume_type(volume_type)
    snap_capacity = validate_capacity(snap_capacity, field="snap_capacity", allow_zero=True)
    if pool.cluster_id != cluster.pk:
        raise errors.PoolNotFound(uuid=pool.uuid, cluster=cluster.uuid)
    driver = pool_driver(pool)
    driver.check_available()

    source = None
    if backing_file:
        source = driver.inspect_import(backing_file, settings.SHARESTORE_IMPORT_ROOTS)
        aligned = -(-source.virtual_size // SECTOR) * SECTOR
        if capacity is None:
            capacity = max(aligned, MIN_VOLUME_BYTES)
        else:
            validate_capacity(capacity, field="capacity")
            if capacity < source.virtual_size:
                raise errors.CapacityTooSmall(capacity=capacity, virtual_size=source.virtual_size)
    elif capacity is None:
        raise errors.MissingParameter(field="capacity")
    capacity = validate_capacity(capacity, field="capacity")

    state = EventState.IMPORTING if source else EventState.CREATING
    shape = VolumeShape(volume_type=volume_type, capacity=capacity, snap_capacity=snap_capacity)
    volume = volume_reserve(tenant=tenant, cluster=cluster, pool=pool, name=name, shape=shape, state=state)
    params = {"capacity": capacity}
    if source:
        params.update(source_path=source.path, source_format=source.format)
    operation_start(
        volume,
        kind=OperationKind.VOLUME_IMPORT if source else OperationKind.VOLUME_CREATE,
        actor=actor,
        volume=volume,
        params=params,
        bytes_total=source.virtual_size if source else 0,
        reservation=pool_reservation(pool, source.needs) if source else None,
        action="volume.create" if not source else "volume.import",
        to_state=str(state.label),
        message=f"capacity={capacity} pool={pool.name}"
        + (f" source={source.path} ({source.format})" if source else ""),
    )
    return volume


def _volume_create_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(
        operation, allowed=(EventState.CREATING, EventState.IMPORTING), action="create", with_value=False
    )
    capacity = operation.params["capacity"]
    if "source_path" in operation.params:
        reporter.phase("copying")
        from volumes.drivers import ImportSource

        source = ImportSource(
            path=operation.params["source_path"], format=operation.params["source_format"], virtual_size=0
        )
        image = driver.import_image(
            source, settings.SHARESTORE_IMPORT_ROOTS, volume.image_name, capacity, reporter.driver_progress
        )
    else:
        reporter.phase("creating image")
        image = driver.create_volume(volume.image_name, capacity)
    if image.virtual_size != capacity:
        raise errors.StorageError(reason=f"image has {image.virtual_size} bytes, expected {capacity}")
    operation.params["used"] = image.allocated


def volume_population_succeeded(operation: Operation, *, populating, action: str) -> None:
    """End a create, import, clone or restore that succeeded: the volume is available, with the space
    its image uses as the run measured it."""
    volume = Volume.objects.get(pk=operation.volume_id)
    volume_leaves(
        volume, operation, held=populating, action=action, extra={"used": operation.params.get("used", 0)}
    )


def _volume_create_succeed(operation: Operation) -> None:
    volume_population_succeeded(
        operation, populating=[EventState.CREATING, EventState.IMPORTING], action="volume.create.finish"
    )


def volume_population_failed(
    operation: Operation,
    error: errors.ServiceError,
    *,
    populating: EventState,
    action: str,
    extra: dict | None = None,
) -> Volume:
    """End a create, import, clone or restore that failed: no file that could look usable stays
    behind, and the volume shows `error` (the operation keeps the scode and message)."""
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    driver = pool_driver(volume.pool)
    driver.delete_image(volume.image_name)
    volume_leaves(
        volume, operation, held=populating, to=EventState.ERROR, action=action, error=error, extra=extra
    )
    return volume


def _volume_create_fail(operation: Operation, error: errors.ServiceError) -> None:
    populating = (
        EventState.IMPORTING if operation.kind == OperationKind.VOLUME_IMPORT else EventState.CREATING
    )
    volume_population_failed(operation, error, populating=populating, action="volume.create.fail")


VOLUME_CREATE_HANDLER = OperationHandler(
    run=_volume_create_run, succeed=_volume_create_succeed, fail=_volume_create_fail
)


# -- delete --------------------------------------------------------------------------------------

DELETABLE_STATES = [EventState.AVAILABLE, EventState.ERROR]


@transaction.atomic
def volume_delete(*, actor: str, volume: Volume, force: bool = False) -> Operation:
    """Take the volume out of the live set and queue the removal of its files.

    Without force, an attached volume or one with snapshots is refused. force detaches it in the
    record (the hypervisor must have let go) and deletes its snapshots with it. Nothing overrides
    a volume that is busy with another operation, nor one whose snapshots back linked clones:
    removing those layers would corrupt the clones.
    """
    # Lock the row before any check: attach, snapshot, clone and backup lock it too, so none of
    # them can slip in between the checks below and the state change.
    volume = Volume.objects.select_for_update().get(pk=volume.pk)
    refuse_if_busy(volume, action="delete", allowed=[*DELETABLE_STATES, EventState.MERGING])
    attachments = list(volume.attachments.all())
    if attachments and not force:
        raise errors.VolumeAttached(
            uuid=volume.uuid,
            vm=", ".join(str(a.vm_uuid) for a in attachments),
            hint=" or pass force=true",
            hint_cn="或使用 force=true",
        )
    # Hidden snapshots are already deleted as far as the caller knows; their layers go with the volume.
    snapshots = volume.snapshots.exclude(status__in=[SnapshotStatus.DELETING, SnapshotStatus.HIDDEN])
    if snapshots.exists() and not force:
        raise errors.VolumeHasSnapshots(uuid=volume.uuid, count=snapshots.count())
    clones = list(
        Volume.objects.filter(parent_snapshot__volume=volume, state__in=LIVE_STATES).values_list(
            "uuid", flat=True
        )
    )
    if clones:
        raise errors.VolumeHasDependents(
            uuid=volume.uuid, dependents="linked clones " + ", ".join(map(str, clones))
        )
    # A full clone being copied (or a backup) reads the layers this delete would remove.
    readers = volume_snapshot_readers(volume=volume)
    if readers:
        english, chinese = readers_words(readers)  # each named with its operation and progress
        raise errors.VolumeHasDependents(uuid=volume.uuid, dependents=english, dependents_cn=chinese)
    if volume.state == EventState.MERGING:
        # The merge ends first (docs/api.md, "Back-to-back calls"); the delete starts from there.
        return volume_delete_after_merge(actor=actor, volume=volume, force=force)
    transition(
        volume,
        allowed=DELETABLE_STATES,
        to=EventState.DELETING,
        action="volume.delete",
        actor=actor,
        message="force" if force else "",
        extra={"deleted_at": timezone.now()},
    )
    if attachments:
        VolumeAttachment.objects.filter(volume=volume).delete()
    return operation_create(
        kind=OperationKind.VOLUME_DELETE, actor=actor, volume=volume, params={"force": force}
    )


def _volume_image_names(volume: Volume) -> list[str]:
    names = [volume.image_name]
    names += list(volume.snapshots.exclude(layer_name="").values_list("layer_name", flat=True))
    return names


def _volume_delete_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(
        operation, allowed=[EventState.DELETING], action="delete", with_value=False
    )
    reporter.phase("removing files")
    names = _volume_image_names(volume)
    for index, name in enumerate(names, start=1):
        # The image and its partials of any attempt; the last one of a volume's own place (its snapshot
        # directory) takes that place away too, and a repeat finishes the work.
        driver.delete_image(name)
        reporter.progress(100.0 * index / len(names))


def _volume_delete_succeed(operation: Operation) -> None:
    volume = Volume.objects.get(pk=operation.volume_id)
    volume.snapshots.all().update(status=SnapshotStatus.DELETING, modified=timezone.now())
    volume_leaves(
        volume, operation, held=EventState.DELETING, to=EventState.DELETED, action="volume.delete.finish"
    )


def _volume_delete_fail(operation: Operation, error: errors.ServiceError) -> None:
    # The row stays out of the live set in `deleting`: the sweeper or an operator retries the
    # removal; putting a half-removed volume back into service would be worse.
    audit(
        OperationContext.of(operation),
        action="volume.delete.stuck",
        object_type="volume",
        object_uuid=operation.target_uuid,
        result="failed",
        error=error,
    )


VOLUME_DELETE_HANDLER = OperationHandler(
    run=_volume_delete_run, succeed=_volume_delete_succeed, fail=_volume_delete_fail
)


# -- attachment ----------------------------------------------------------------------------------


@transaction.atomic
def volume_attach(
    *,
    actor: str,
    volume: Volume,
    vm_uuid,
    device: str = "",
    host_uuid: str = "",
    vm_name: str = "",
    vm_type: str = "",
) -> Volume:
    """Record that a VM has the volume attached. A block or fs volume takes one VM; share, several."""
    locked = Volume.objects.select_for_update().get(pk=volume.pk)
    refuse_if_busy(locked, action="attach")
    current = list(locked.attachments.values_list("vm_uuid", flat=True))
    if any(str(vm) == str(vm_uuid) for vm in current):
        raise errors.AlreadyAttached(uuid=volume.uuid, vm=vm_uuid)
    if current and locked.volume_type != VolumeType.SHARE:
        raise errors.AlreadyAttached(uuid=volume.uuid, vm=current[0])
    try:
        with transaction.atomic():
            VolumeAttachment.objects.create(
                volume=locked,
                vm_uuid=vm_uuid,
                device=device,
                host_uuid=host_uuid,
                vm_name=vm_name,
                vm_type=vm_type,
            )
    except IntegrityError:
        raise errors.AlreadyAttached(uuid=volume.uuid, vm=vm_uuid) from None
    Volume.objects.filter(pk=volume.pk).update(modified=timezone.now())
    audit_of(
        volume, actor=actor, action="volume.attach", message=f"vm={vm_uuid} device={device} host={host_uuid}"
    )
    return Volume.objects.get(pk=volume.pk)


@transaction.atomic
def volume_detach(*, actor: str, volume: Volume, vm_uuid) -> Volume:
    """Forget one VM's attachment."""
    deleted, _ = VolumeAttachment.objects.filter(volume=volume, vm_uuid=vm_uuid).delete()
    if not deleted:
        raise errors.NotAttached(uuid=volume.uuid, vm=vm_uuid)
    Volume.objects.filter(pk=volume.pk).update(modified=timezone.now())
    audit_of(volume, actor=actor, action="volume.detach", message=f"vm={vm_uuid}")
    return Volume.objects.get(pk=volume.pk)
