"""Clones of a snapshot into a new volume, the flatten that makes a linked clone independent, and the
reads behind `clone` and `clone/progress` (docs/clones.md).

- A linked clone reads the snapshot in constant time at any size (the directory driver: an empty
  overlay on the snapshot's layer). Into another pool only when the driver says every host that
  mounts the destination pool reaches the source pool the way the workers do (`PoolMount` rows).
- A full clone is an independent copy of the snapshot's content into any pool, for any tenant, with
  progress.
- A flatten makes a linked clone independent of the source's snapshot.

Services validate everything, reserve the volume (`volume_reserve`, state cloning) or move it to
flattening, and queue the operation; the handlers below run from tasks and start by looking at the
files, so a redelivered task finishes the work. Copies are written under a partial name tagged per
attempt and published by one rename: a volume never looks usable before it is. An operation's
progress stays below 100 until `operation_run` records it succeeded, in the same transaction that
makes the volume available.
"""

from __future__ import annotations

import uuid as uuid_lib

from django.db import transaction
from django.db.models import Q

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.operations import (
    OperationHandler,
    Reporter,
    operation_start,
    raise_recorded_failure,
)
from volumes.choices import LIVE_STATES, EventState
from volumes.drivers import SnapshotSource, StorageDriver
from volumes.models import Cluster, Pool, Snapshot, Tenant, Volume
from volumes.selectors import live_volume_get
from volumes.services.busy import refuse_if_busy
from volumes.services.shapes import VolumeShape
from volumes.services.snapshot_rules import (
    chain_depth,
    max_chain_depth,
    refuse_if_read,
    require_snapshot_readable,
    snapshot_readable,
)
from volumes.services.snapshot_tree import checkpoint_for, load_tree
from volumes.services.space import pool_reservation
from volumes.services.volumes import (
    operation_volume,
    pool_driver,
    start_operation,
    validate_name,
    volume_leaves,
    volume_lock,
    volume_population_failed,
    volume_population_succeeded,
    volume_reserve,
    volume_snap_length,
)

CLONE_KINDS = [OperationKind.CLONE_LINKED, OperationKind.CLONE_FULL]
PROGRESS_KINDS = [*CLONE_KINDS, OperationKind.FLATTEN]
# The copy's share of an operation's progress. 100 is written only when the operation succeeds, in
# the transaction that makes the volume available.
COPY_SHARE = 99.0
# States in which a volume's layers are being rewritten: nothing may start reading them then.
REWRITING_STATES = [EventState.MERGING, EventState.ROLLING_BACK]


# -- reads ---------------------------------------------------------------------------------------


def clone_source_get(*, uuid, cluster: Cluster, allowed_tenant_id: int | None) -> Volume:
    """The live volume to clone. `clone` names no tenant in the contract: a tenant-bound caller reaches
    its own tenant's volumes only (another tenant's answers like a missing one), a platform caller any
    volume of the cluster."""
    return live_volume_get(uuid=uuid, cluster=cluster, allowed_tenant_id=allowed_tenant_id)


def clone_operation_for(*, volume: Volume) -> Operation:
    """The newest operation `clone/progress` reports for `volume`: the clone or flatten of the volume
    itself, or a clone made from it (the caller may poll with the source's UUID)."""
    operation = (
        Operation.objects.select_related("volume")
        .filter(
            Q(volume=volume, kind__in=PROGRESS_KINDS)
            | Q(volume__source_volume=volume, volume__state__in=LIVE_STATES, kind__in=CLONE_KINDS)
        )
        .order_by("-created", "-id")
        .first()
    )
    if operation is None:
        raise errors.OperationNotFound(uuid=volume.uuid)
    return operation


def clone_progress(operation: Operation) -> float:
    """Percent done, never decreasing: 100.0 only once the volume is usable. A failed operation raises
    its own recorded failure (scode, messages, details)."""
    if operation.state == OperationState.SUCCEEDED:
        return 100.0
    raise_recorded_failure(operation)
    return round(min(float(operation.progress), COPY_SHARE), 2)


# -- checks --------------------------------------------------------------------------------------


def check_linked_placement(*, source: Volume, source_pool: Pool, pool: Pool) -> None:
    """Refuse a linked clone in `pool` of a snapshot in `source_pool` unless every host can follow the link.

    Every host that mounts `pool` must also mount `source_pool`, and reach it from there the way the
    workers do: the driver of `pool` decides (the directory driver: the same relative path from one
    mount to the other).
    """
    if source_pool.pk == pool.pk:
        return

    def refuse(reason: str, reason_cn: str):
        raise errors.LinkedCloneAcrossPools(
            source=source.uuid, pool=pool.name, reason=reason, reason_cn=reason_cn
        )

    driver, source_driver = pool_driver(pool), pool_driver(source_pool)
    if source_pool.driver != pool.driver or not driver.can_link_from(source_driver):
        refuse(
            f"pool {source_pool.name} uses the {source_pool.driver} driver, pool {pool.name} {pool.driver}",
            f"存储池 {source_pool.name} 与 {pool.name} 的驱动不同",
        )
    source_mounts = {m.host_id: m for m in source_pool.mounts.select_related("host")}
    mounts = list(pool.mounts.select_related("host").order_by("host__uuid"))
    missing = [str(m.host.uuid) for m in mounts if m.host_id not in source_mounts]
    if missing:
        hosts = ", ".join(missing)
        refuse(
            f"host(s) {hosts} mount pool {pool.name} but not pool {source_pool.name} (the snapshot's layer)",
            f"主机 {hosts} 挂载了存储池 {pool.name}，但未挂载快照层所在的存储池 {source_pool.name}",
        )
    for mount in mounts:
        source_mount = source_mounts[mount.host_id].mount_path
        if not driver.link_reachable(source_driver, source_mount, mount.mount_path):
            refuse(
                f"host {mount.host.uuid} mounts pool {source_pool.name} at {source_mount} and pool "
                f"{pool.name} at {mount.mount_path}: a linked clone there would not reach the snapshot "
                f"the way the workers do",
                f"主机 {mount.host.uuid} 上两个存储池的相对位置与工作节点上不同",
            )


def _origins(volume: Volume) -> list[Volume]:
    """The volumes whose layers `volume`'s oldest layer sits on, nearest first (linked-clone origins)."""
    found, seen = [], {volume.pk}
    snapshot_id = volume.parent_snapshot_id
    while snapshot_id is not None:
        origin = Volume.objects.filter(snapshots__pk=snapshot_id).first()
        if origin is None or origin.pk in seen:
            break
        found.append(origin)
        seen.add(origin.pk)
        snapshot_id = origin.parent_snapshot_id
    return found


def _refuse_if_layers_rewritten(volume: Volume, *, action: str, action_cn: str) -> None:
    """A copy reads every layer down the chain, in the volume's origins too: none may be merging now.

    Each origin's row is locked, as a delete or rollback of it locks it: either that sees this copy
    among its readers, or this sees it busy.
    """
    for origin in _origins(volume):
        origin = Volume.objects.select_for_update(of=("self",)).get(pk=origin.pk)
        if origin.state in REWRITING_STATES:
            raise errors.CloneSourceBusy(
                uuid=origin.uuid,
                state=f"{origin.state} ({origin.get_state_display()})",
                action=action,
                action_cn=action_cn,
            )


def _check_space(driver: StorageDriver, pool: Pool, needed: int) -> None:
    """In the task, before writing: this copy's own need against free space (its reservation, checked
    with every other one when the request was accepted, is still held)."""
    free = driver.space().free
    if needed > free:
        raise errors.PoolSpaceShort(pool=pool.name, free=free, reserved=0, needed=needed)


# -- clone ---------------------------------------------------------------------------------------


def clone_create(
    *, actor: str, source: Volume, snapshot: Snapshot, tenant: Tenant, pool: Pool, name: str, linked: bool
) -> Volume:
    """Reserve a new volume (cloning) from `snapshot` of `source`, for `tenant` in `pool`, and queue its
    operation: a linked clone (overlay) or a full one (copy).

    For a full clone the space the copy needs is measured first (a qemu-img read of the chain, kept
    out of the transaction); everything is checked again under the lock, where the space is reserved.
    """
    validate_name(name, field="clone_dst_vol_name")
    needed = 0
    if not linked:
        # Cheap refusals first, so a request that fails anyway does not measure.
        snapshot = Snapshot.objects.get(pk=snapshot.pk)
        source = Volume.objects.select_related("pool", "cluster").get(pk=source.pk)
        require_snapshot_readable(snapshot, source, action="clone")
        refuse_if_busy(source, action="clone")
        driver = pool_driver(pool)
        driver.check_available()
        needed = driver.copy_needs(_source(snapshot))
    return _clone_reserve(
        actor=actor,
        source=source,
        snapshot=snapshot,
        tenant=tenant,
        pool=pool,
        name=name,
        linked=linked,
        needed=needed,
    )


@transaction.atomic
def _clone_reserve(
    *,
    actor: str,
    source: Volume,
    snapshot: Snapshot,
    tenant: Tenant,
    pool: Pool,
    name: str,
    linked: bool,
    needed: int,
) -> Volume:
    name = validate_name(name, field="clone_dst_vol_name")
    source = volume_lock(source, action="clone")
    snapshot = Snapshot.objects.get(pk=snapshot.pk)
    require_snapshot_readable(snapshot, source, action="clone")
    if pool.cluster_id != source.cluster_id:
        raise errors.PoolNotFound(uuid=pool.uuid, cluster=source.cluster.uuid)
    pool_driver(pool).check_available()
    if linked:
        check_linked_placement(source=source, source_pool=source.pool, pool=pool)
        depth, _hidden = chain_depth(source, snapshot.pk)
        limit = max_chain_depth()
        if depth > limit:
            raise errors.CloneChainTooDeep(snapshot=snapshot.uuid, depth=depth, limit=limit)
    else:
        _refuse_if_layers_rewritten(source, action="clone", action_cn="克隆")
    volume = volume_reserve(
        tenant=tenant,
        cluster=source.cluster,
        pool=pool,
        name=name,
        shape=VolumeShape.of(source),
        state=EventState.CLONING,
        source_volume=source,
        parent_snapshot=snapshot if linked else None,
        # Kept whatever becomes of the link: a full clone has none, a flatten or a failure clears it.
        clone_source_snapshot=snapshot,
    )
    operation_start(
        volume,
        kind=OperationKind.CLONE_LINKED if linked else OperationKind.CLONE_FULL,
        actor=actor,
        volume=volume,
        params={"source_volume": str(source.uuid), "snapshot": str(snapshot.uuid), "linked": linked},
        bytes_total=needed,
        reservation=None if linked else pool_reservation(pool, needed),
        action="volume.clone",
        to_state=str(EventState.CLONING.label),
        message=(
            f"{'linked' if linked else 'full'} clone of snapshot {snapshot.name!r} ({snapshot.uuid}) of "
            f"volume {source.uuid} into pool {pool.name} for tenant {tenant.uuid}"
        ),
    )
    return volume


def _source(snapshot: Snapshot) -> SnapshotSource:
    """What a driver needs to read `snapshot`: its pool's driver, its volume's image and its own name."""
    volume = snapshot.volume
    return SnapshotSource(
        driver=pool_driver(volume.pool), volume=volume.image_name, snapshot=snapshot.layer_name
    )


def _check_image(volume: Volume, driver: StorageDriver, *, independent: bool) -> int:
    """The published image's allocated bytes, after checking it is the clone the database describes."""
    image = driver.info(volume.image_name)
    if image.virtual_size != volume.capacity:
        raise errors.StorageError(reason=f"image has {image.virtual_size} bytes, expected {volume.capacity}")
    if independent and image.backing:
        raise errors.StorageError(reason=f"{volume.image_name} still has a backing file {image.backing!r}")
    return image.allocated


def _copy_into(
    operation: Operation,
    reporter: Reporter,
    driver: StorageDriver,
    pool: Pool,
    source: SnapshotSource,
    name: str,
    *,
    first: int = 0,
    total: int = 1,
    measured: int = 0,
) -> None:
    """Copy the snapshot's content into a partial of `name`, then publish it while this worker still holds
    the operation's lease. Progress: this copy's share of `total` copies, within COPY_SHARE.

    `measured`: what the request measured for this copy. The source's layers are frozen, so only the
    free space needs checking again.
    """
    reporter.phase("measuring")
    # A dead attempt's partial: ours now (the lease is), and it must not count against free space.
    driver.discard_partials(name)
    needed = measured or driver.copy_needs(source)
    _check_space(driver, pool, needed)
    reporter.phase("copying" if total == 1 else f"copying {first + 1} of {total}")

    def progress(percent: float, _done: int = 0, _total: int = 0) -> None:
        share = (first + percent / 100.0) / total
        reporter.progress(share * COPY_SHARE, int(needed * percent / 100.0), needed)

    tag = f"a{operation.attempts}-{uuid_lib.uuid4().hex[:8]}"
    partial = driver.full_clone(source, name, tag, progress)
    reporter.heartbeat()
    if reporter.lost:
        # The sweeper gave the operation to another worker, whose own copy goes on: leave it alone.
        driver.remove_object(partial)
        raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")
    reporter.phase("publishing")
    driver.publish_partial(partial, name)
    reporter.progress((first + 1) / total * COPY_SHARE, force=True)


def _clone_linked_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(operation, allowed=[EventState.CLONING], action="clone")
    snapshot = Snapshot.objects.select_related("volume__pool").get(pk=volume.parent_snapshot_id)
    reporter.phase("linking")
    driver.linked_clone(volume.image_name, _source(snapshot))
    operation.params["used"] = _check_image(volume, driver, independent=False)


def _clone_full_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(operation, allowed=[EventState.CLONING], action="clone")
    if not driver.exists(volume.image_name):
        snapshot = (
            Snapshot.objects.select_related("volume__pool").filter(uuid=operation.params["snapshot"]).first()
        )
        if snapshot is None or not snapshot_readable(snapshot):
            raise errors.StateConflict(
                kind="snapshot",
                uuid=operation.params["snapshot"],
                state="gone" if snapshot is None else f"{snapshot.status} ({snapshot.get_status_display()})",
                action="clone",
            )
        _copy_into(
            operation,
            reporter,
            driver,
            volume.pool,
            _source(snapshot),
            volume.image_name,
            measured=operation.bytes_total,
        )
    # Published by this attempt or an earlier one: only the publish makes the file appear.
    reporter.phase("measuring")
    operation.params["used"] = _check_image(volume, driver, independent=True)


def _clone_succeed(operation: Operation) -> None:
    volume_population_succeeded(operation, populating=[EventState.CLONING], action="volume.clone.finish")


def _clone_fail(operation: Operation, error: errors.ServiceError) -> None:
    # A failed clone reads nothing any more: its snapshot's Ref is released.
    volume_population_failed(
        operation,
        error,
        populating=EventState.CLONING,
        action="volume.clone.fail",
        extra={"parent_snapshot": None},
    )


CLONE_LINKED_HANDLER = OperationHandler(run=_clone_linked_run, succeed=_clone_succeed, fail=_clone_fail)
CLONE_FULL_HANDLER = OperationHandler(run=_clone_full_run, succeed=_clone_succeed, fail=_clone_fail)


# -- flatten -------------------------------------------------------------------------------------


def _refuse_if_attached(volume: Volume) -> None:
    vms = [str(vm) for vm in volume.attachments.values_list("vm_uuid", flat=True)]
    if vms:
        raise errors.VolumeAttached(
            uuid=volume.uuid,
            vm=", ".join(vms),
            hint="; a flatten replaces the clone's oldest layer, which the hypervisor holds open",
            hint_cn="；扁平化会替换克隆最底层的文件，而虚拟机管理程序正打开着它",
        )


def volume_flatten(*, actor: str, volume: Volume) -> Operation:
    """Make a linked clone independent of its source's snapshot: its oldest layer is replaced by a copy
    holding everything under it too. The space the copies need is measured before anything is written."""
    if volume.parent_snapshot_id is None:
        raise errors.NotALinkedClone(uuid=volume.uuid)
    # Cheap refusals first (checked again under the lock), so a request that fails anyway does not measure.
    refuse_if_busy(volume, action="flatten")
    _refuse_if_attached(volume)
    driver = pool_driver(volume.pool)
    driver.check_available()
    needed = driver.flatten_needs(volume.image_name, load_tree(volume))
    return _flatten_begin(actor=actor, volume=volume, needed=needed)


@transaction.atomic
def _flatten_begin(*, actor: str, volume: Volume, needed: int) -> Operation:
    volume = volume_lock(volume, action="flatten")
    if volume.parent_snapshot_id is None:
        raise errors.NotALinkedClone(uuid=volume.uuid)
    _refuse_if_attached(volume)
    refuse_if_read(volume, action="flattening")
    _refuse_if_layers_rewritten(volume, action="flatten", action_cn="扁平化")
    snapshot = Snapshot.objects.get(pk=volume.parent_snapshot_id)
    return start_operation(
        volume,
        actor=actor,
        kind=OperationKind.FLATTEN,
        message=f"away from snapshot {snapshot.name!r} ({snapshot.uuid}) of volume {snapshot.volume.uuid}",
        params={"snapshot": str(snapshot.uuid), "source_volume": str(snapshot.volume.uuid)},
        bytes_total=needed,
        reservation=pool_reservation(volume.pool, needed),
    )


def _flatten_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = operation_volume(operation, allowed=[EventState.FLATTENING], action="flatten")
    tree = load_tree(volume)
    reporter.phase("measuring")
    _check_space(driver, volume.pool, driver.flatten_needs(volume.image_name, tree))
    reporter.phase("copying")
    lost = checkpoint_for(reporter)

    def checkpoint() -> None:
        reporter.heartbeat()
        lost()

    def progress(percent: float, _done: int = 0, _total: int = 0) -> None:
        reporter.progress(percent / 100.0 * COPY_SHARE)

    tag = f"a{operation.attempts}-{uuid_lib.uuid4().hex[:8]}"
    result = driver.flatten(volume.image_name, tree, tag=tag, progress=progress, checkpoint=checkpoint)
    _keep_flattened(operation, volume, result)


def _keep_flattened(operation: Operation, volume: Volume, result) -> None:
    names = dict(Snapshot.objects.filter(volume=volume).values_list("layer_name", "uuid"))
    operation.params["sizes"] = {
        str(names[name]): size for name, size in result.sizes.items() if name in names
    }
    operation.params["used"] = result.used
    operation.params["independent"] = result.independent


def _flatten_finish(operation: Operation, error: errors.ServiceError | None) -> None:
    volume, driver = operation_volume(operation, allowed=[EventState.FLATTENING], action="flatten")
    if error is not None:
        # What storage shows decides: a copy already published made the clone independent.
        _keep_flattened(operation, volume, driver.flatten_recover(volume.image_name, load_tree(volume)))
    for snapshot_uuid, size in operation.params.get("sizes", {}).items():
        Snapshot.objects.filter(uuid=snapshot_uuid).update(size=size)
    extra = {"used": operation.params.get("used", volume.used), "snap_length": volume_snap_length(volume)}
    if operation.params.get("independent"):
        extra["parent_snapshot"] = None
    volume_leaves(
        volume,
        operation,
        held=EventState.FLATTENING,
        action="volume.flatten.finish" if error is None else "volume.flatten.fail",
        extra=extra,
        message=(
            (
                "independent"
                if operation.params.get("independent")
                else f"still reads snapshot {operation.params['snapshot']}"
            )
            + (f"; scode {error.scode}: {error.render_message()}" if error else "")
        ),
    )


FLATTEN_HANDLER = OperationHandler(
    run=_flatten_run,
    succeed=lambda operation: _flatten_finish(operation, None),
    fail=_flatten_finish,
)
