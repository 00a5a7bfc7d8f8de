"""Writes on the snapshot tree: create, delete (merge or hide) and rollback, and the tasks' handlers.

A snapshot is an external qcow2 layer (docs/snapshots.md). Services lock the volume, validate
everything, then move the volume into a transitional state (snapshotting, merging, rolling back)
and queue an operation; the handlers below do the storage work from a task and resume from
whatever the files show when a task is delivered again.

The tree is planned on an in-memory model (`_Tree`) loaded from the database: a run executes the
plan on disk, and the handlers' `succeed` / `fail` apply to the database exactly the steps whose
work the files show done (a merged or removed layer's file is gone). The database only changes in
those handlers, so a plan recomputed by a redelivered task is the same plan.
"""

from __future__ import annotations

import logging
import uuid as uuid_lib
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_create
from sharestore.core.services.state import OperationContext, audit, transition
from volumes import selectors
from volumes.choices import LIVE_STATES, EventState, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.drivers.base import MERGE_COMMIT, MERGE_REBASE
from volumes.models import Snapshot, Volume
from volumes.services.volumes import pool_driver, validate_name

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHAIN_DEPTH = 32
HEAD = "head"  # the tree's pseudo-node for the active layer; no snapshot may take this name
DESC_MAX_LENGTH = 1024


def max_chain_depth() -> int:
    """Most layers allowed under a volume's active layer (SHARESTORE_SNAPSHOT_MAX_DEPTH, docs/snapshots.md)."""
    return int(getattr(settings, "SHARESTORE_SNAPSHOT_MAX_DEPTH", DEFAULT_MAX_CHAIN_DEPTH))


def snapshot_layer_name(volume: Volume, snapshot_uuid) -> str:
    return f"snapshots/{volume.uuid}/{snapshot_uuid}.qcow2"


# -- validation ----------------------------------------------------------------------------------


def validate_snapshot_name(value, *, field: str = "snapshot_name") -> str:
    name = validate_name(value, field=field)
    if name == HEAD:
        raise errors.InvalidName(
            field=field,
            reason=f"{HEAD!r} is reserved for the active layer in the tree",
            reason_cn=f"{HEAD!r} 是快照树中活动层的保留名称",
        )
    return name


def validate_desc(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.InvalidParameter(field="desc", reason="must be a string")
    if len(value) > DESC_MAX_LENGTH:
        raise errors.InvalidParameter(field="desc", reason=f"longer than {DESC_MAX_LENGTH} characters")
    return value


def _lock_volume(volume: Volume, *, action: str) -> Volume:
    """Lock the volume's row for this transaction and require it to be available.

    Locking first matters: attach locks the same row, so a VM cannot be attached between the
    check below and the state change that makes the volume busy.
    """
    locked = (
        Volume.objects.select_for_update(of=("self",)).select_related("pool").filter(pk=volume.pk).first()
    )
    if locked is None or locked.state != EventState.AVAILABLE:
        state = "gone" if locked is None else f"{locked.state} ({locked.get_state_display()})"
        raise errors.StateConflict(kind="volume", uuid=volume.uuid, state=state, action=action)
    return locked


def _refuse_if_attached(volume: Volume, *, doing: str, doing_cn: str) -> None:
    vms = [str(vm) for vm in volume.attachments.values_list("vm_uuid", flat=True)]
    if vms:
        raise errors.VolumeAttached(
            uuid=volume.uuid,
            vm=", ".join(vms),
            hint=(
                f"; the hypervisor holds the active layer open, and {doing} renames or rewrites it: "
                "doing that under a running VM would corrupt its disk"
            ),
            hint_cn=f"；虚拟机管理程序正打开着活动层，{doing_cn}会重命名或改写它，在运行中的虚拟机下这样做会损坏其磁盘",
        )


def _refuse_if_read(volume: Volume, *, action: str) -> None:
    readers = selectors.volume_snapshot_readers(volume=volume)
    if readers:
        raise errors.SnapshotsBeingRead(uuid=volume.uuid, readers=", ".join(readers), action=action)


def _chain_depth(volume: Volume, snapshot_id: int | None) -> tuple[int, int]:
    """(layers under an overlay on `snapshot_id`, how many are hidden), following linked-clone origins."""
    depth = hidden = 0
    seen: set[int] = set()
    while True:
        rows = dict(
            (pk, (parent, status))
            for pk, parent, status in Snapshot.objects.filter(volume=volume).values_list(
                "pk", "parent_id", "status"
            )
        )
        node = snapshot_id
        while node is not None and node in rows and node not in seen:
            seen.add(node)
            depth += 1
            hidden += rows[node][1] == SnapshotStatus.HIDDEN
            node = rows[node][0]
        origin = volume.parent_snapshot_id
        if origin is None or origin in seen:
            return depth, hidden
        # A linked clone's oldest layer sits on another volume's snapshot: count that chain too.
        origin_snapshot = Snapshot.objects.select_related("volume").get(pk=origin)
        volume, snapshot_id = origin_snapshot.volume, origin


def _check_can_snapshot(volume: Volume, name: str) -> None:
    if Snapshot.objects.filter(volume=volume, name=name).exclude(status=SnapshotStatus.HIDDEN).exists():
        raise errors.SnapshotNameExists(volume=volume.uuid, name=name)
    if volume.snap_length >= volume.snap_cap:
        raise errors.SnapCapReached(
            uuid=volume.uuid, snap_length=volume.snap_length, snap_cap=volume.snap_cap
        )
    depth, hidden = _chain_depth(volume, volume.current_snapshot_id)
    limit = max_chain_depth()
    if depth + 1 > limit:
        raise errors.SnapshotChainTooDeep(uuid=volume.uuid, depth=depth + 1, limit=limit, hidden=hidden)


def _new_snapshot(volume: Volume, *, name: str, desc: str) -> Snapshot:
    snapshot_uuid = uuid_lib.uuid4()
    try:
        with transaction.atomic():
            return Snapshot.objects.create(
                uuid=snapshot_uuid,
                volume=volume,
                name=name,
                desc=desc,
                parent_id=volume.current_snapshot_id,
                status=SnapshotStatus.CREATING,
                layer_name=snapshot_layer_name(volume, snapshot_uuid),
            )
    except IntegrityError:
        raise errors.SnapshotNameExists(volume=volume.uuid, name=name) from None


# -- create --------------------------------------------------------------------------------------


@transaction.atomic
def snapshot_create(*, actor: str, volume: Volume, name: str, desc: str = "") -> Snapshot:
    """Record a snapshot in `creating`, move the volume to `snapshotting` and queue the freeze."""
    name = validate_snapshot_name(name)
    desc = validate_desc(desc)
    volume = _lock_volume(volume, action="snapshot.create")
    _refuse_if_attached(volume, doing="taking a snapshot", doing_cn="创建快照")
    _check_can_snapshot(volume, name)
    snapshot = _new_snapshot(volume, name=name, desc=desc)
    transition(
        volume,
        allowed=[EventState.AVAILABLE],
        to=EventState.SNAPSHOTTING,
        action="snapshot.create",
        actor=actor,
        message=f"snapshot {name!r} ({snapshot.uuid})",
    )
    operation = operation_create(
        kind=OperationKind.SNAPSHOT_CREATE,
        target_type="snapshot",
        target_uuid=snapshot.uuid,
        actor=actor,
        volume=volume,
        params={"snapshot": str(snapshot.uuid)},
    )
    audit(
        actor=actor,
        action="snapshot.create",
        object_type="snapshot",
        object_uuid=snapshot.uuid,
        volume_id=volume.pk,
        operation_id=operation.pk,
        to_state=str(SnapshotStatus.CREATING.label),
        message=f"name={name!r} parent={snapshot.parent_id and snapshot.parent.uuid}",
    )
    return snapshot


def _handler_context(operation: Operation) -> tuple[Volume, StorageDriver]:
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    return volume, pool_driver(volume.pool)


def _require(instance, field: str, expected, *, kind: str, action: str) -> None:
    value = getattr(instance, field)
    if value != expected:
        label = getattr(instance, f"get_{field}_display")()
        raise errors.StateConflict(kind=kind, uuid=instance.uuid, state=f"{value} ({label})", action=action)


def _snapshot_create_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    snapshot = Snapshot.objects.get(uuid=operation.params["snapshot"])
    _require(volume, "state", EventState.SNAPSHOTTING, kind="volume", action="snapshot.create")
    _require(snapshot, "status", SnapshotStatus.CREATING, kind="snapshot", action="snapshot.create")
    reporter.phase("freezing the active layer")
    driver.snapshot_freeze(volume.image_name, snapshot.layer_name)
    reporter.phase("measuring")
    operation.params["sizes"] = {str(snapshot.uuid): driver.allocated_bytes(snapshot.layer_name)}
    operation.params["used"] = driver.allocated_bytes(volume.image_name)


def _snap_length(volume: Volume) -> int:
    # Hidden layers still occupy space: they count. A deleting layer is about to go.
    total = (
        Snapshot.objects.filter(volume=volume)
        .exclude(status=SnapshotStatus.DELETING)
        .aggregate(total=Sum("size"))
    )["total"]
    return total or 0


def _write_sizes(operation: Operation) -> None:
    for snapshot_uuid, size in (operation.params.get("sizes") or {}).items():
        Snapshot.objects.filter(uuid=snapshot_uuid).update(size=size)


def _snapshot_frozen(snapshot: Snapshot, operation: Operation) -> None:
    """A snapshot whose layer is frozen becomes available (after create, or rollback's snapshot_first)."""
    transition(
        snapshot,
        field="status",
        allowed=[SnapshotStatus.CREATING],
        to=SnapshotStatus.AVAILABLE,
        action="snapshot.create.finish",
        actor=operation.requested_by,
        object_type="snapshot",
        volume_id=snapshot.volume_id,
        operation_id=operation.pk,
    )


def _snapshot_create_succeed(operation: Operation) -> None:
    volume = Volume.objects.get(pk=operation.volume_id)
    snapshot = Snapshot.objects.get(uuid=operation.params["snapshot"])
    _write_sizes(operation)
    _snapshot_frozen(snapshot, operation)
    transition(
        volume,
        allowed=[EventState.SNAPSHOTTING],
        to=EventState.AVAILABLE,
        action="snapshot.create.finish",
        actor=operation.requested_by,
        operation_id=operation.pk,
        extra={
            "current_snapshot": snapshot,
            "used": operation.params.get("used", 0),
            "snap_length": _snap_length(volume),
        },
    )


def _discard_snapshot_row(
    snapshot: Snapshot, operation: Operation, error: errors.ServiceError, action: str
) -> None:
    """A snapshot that never came to be: recorded as failed in the audit trail, then removed."""
    transition(
        snapshot,
        field="status",
        allowed=[SnapshotStatus.CREATING],
        to=SnapshotStatus.ERROR,
        action=action,
        actor=operation.requested_by,
        object_type="snapshot",
        volume_id=snapshot.volume_id,
        operation_id=operation.pk,
        message=f"scode {error.scode}: {error.render_message()}; the row is removed",
    )
    snapshot.delete()


def _snapshot_create_fail(operation: Operation, error: errors.ServiceError) -> None:
    volume, driver = _handler_context(operation)
    snapshot = Snapshot.objects.filter(
        uuid=operation.params["snapshot"], status=SnapshotStatus.CREATING
    ).first()
    if snapshot is not None:
        # Back to the state before the request: the frozen layer becomes the head again.
        driver.snapshot_unfreeze(volume.image_name, snapshot.layer_name)
        _discard_snapshot_row(snapshot, operation, error, "snapshot.create.fail")
    transition(
        volume,
        allowed=[EventState.SNAPSHOTTING],
        to=EventState.AVAILABLE,
        action="snapshot.create.fail",
        ctx=OperationContext.of(operation),
        error=error,
    )


SNAPSHOT_CREATE_HANDLER = OperationHandler(
    run=_snapshot_create_run, succeed=_snapshot_create_succeed, fail=_snapshot_create_fail
)


# -- the tree model and merge planning ------------------------------------------------------------


@dataclass
class _Node:
    """One snapshot row as the planner sees it."""

    id: int
    uuid: str
    name: str
    parent: int | None
    status: int
    layer: str
    clones: int


@dataclass
class _Step:
    """Remove a layer nothing reads (`into` None) or fold it into its only dependent (`into`: id or HEAD)."""

    node: _Node
    into: int | str | None


@dataclass
class _Tree:
    """The volume's layers and where its head sits, for planning merges without touching the database."""

    nodes: dict[int, _Node]
    head_on: int | None
    touched: set = field(default_factory=set)

    @classmethod
    def load(cls, volume: Volume) -> _Tree:
        rows = selectors.snapshot_rows(volume=volume)
        nodes = {
            r.pk: _Node(r.pk, str(r.uuid), r.name, r.parent_id, r.status, r.layer_name, r.clone_count)
            for r in rows
        }
        return cls(nodes=nodes, head_on=volume.current_snapshot_id)

    def dependents(self, node_id: int) -> list[int | str]:
        deps: list[int | str] = [n.id for n in self.nodes.values() if n.parent == node_id]
        if self.head_on == node_id:
            deps.append(HEAD)
        return deps

    def step_for(self, node: _Node) -> _Step | None:
        """How `node` leaves the tree, or None when it cannot (two dependents or more, or linked clones)."""
        deps = self.dependents(node.id)
        if node.clones or len(deps) > 1:
            return None
        return _Step(node, deps[0] if deps else None)

    def apply(self, step: _Step) -> None:
        node = self.nodes.pop(step.node.id)
        if step.into == HEAD:
            self.head_on = node.parent
        elif step.into is not None:
            self.nodes[step.into].parent = node.parent
        if step.into is not None:
            self.touched.add(step.into)

    def collect_hidden(self) -> list[_Step]:
        """Steps that fold away every hidden layer left with one dependent or none, cascading up."""
        steps = []
        while True:
            for node in sorted(self.nodes.values(), key=lambda n: n.id):
                if node.status == SnapshotStatus.HIDDEN:
                    step = self.step_for(node)
                    if step is not None:
                        break
            else:
                return steps
            self.apply(step)
            steps.append(step)


def _strategy(operation: Operation, driver: StorageDriver, layer: str, dependent: str, node_uuid: str) -> str:
    """Commit or rebase, whichever copies less; chosen once per layer and kept in the operation.

    Both are correct here because nothing but `dependent` reads the layer. A rebase copies the
    layer's clusters into the dependent and never writes the layer; a commit ("push-down") copies
    the dependent's clusters into the layer, which then replaces the dependent. The choice is
    persisted before any byte moves, so a redelivered task finishes with the same one.

    A commit that stops half-way leaves the layer holding a mix of its own and the dependent's
    data (still a right backing for the dependent, no longer its snapshot's content). A layer that
    a backup names may serve as the base of an incremental backup, which trusts its content: such
    a layer is always rebased, never written.
    """
    strategies = operation.params.setdefault("strategies", {})
    if node_uuid not in strategies:
        if Snapshot.objects.filter(uuid=node_uuid, backups__isnull=False).exists():
            strategies[node_uuid] = MERGE_REBASE
        else:
            layer_bytes = driver.allocated_bytes(layer)
            dependent_bytes = driver.allocated_bytes(dependent)
            strategies[node_uuid] = MERGE_COMMIT if dependent_bytes < layer_bytes else MERGE_REBASE
        Operation.objects.filter(pk=operation.pk).update(params=operation.params)
    return strategies[node_uuid]


def _execute(
    operation: Operation,
    reporter: Reporter,
    driver: StorageDriver,
    volume: Volume,
    tree: _Tree,
    steps: list[_Step],
    *,
    first: int,
    total: int,
) -> None:
    """Run the steps on disk, in order, reporting progress as a share of `total` steps."""
    for index, step in enumerate(steps, start=first):
        layer = step.node.layer
        base = 100.0 * index / total

        def progress(percent: float, _done: int = 0, _total: int = 0, base: float = base) -> None:
            reporter.progress(base + percent / total)

        if step.into is None:
            reporter.phase(f"removing layer of {step.node.name}")
            driver.layer_remove(layer)
        else:
            dependent = volume.image_name if step.into == HEAD else _layer_in_plan(step.into, tree, steps)
            strategy = (
                operation.params.get("strategies", {}).get(step.node.uuid)
                if not driver.exists(layer)
                else _strategy(operation, driver, layer, dependent, step.node.uuid)
            )
            reporter.phase(f"merging layer of {step.node.name} ({strategy or 'done'})")
            driver.layer_merge(layer, dependent, strategy or MERGE_REBASE, progress)
        reporter.progress(100.0 * (index + 1) / total, force=True)
        if reporter.lost:
            raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")


def _layer_in_plan(node_id: int, tree: _Tree, steps: list[_Step]) -> str:
    if node_id in tree.nodes:
        return tree.nodes[node_id].layer
    for step in steps:
        if step.node.id == node_id:
            return step.node.layer
    raise KeyError(node_id)


def _collect_best_effort(
    operation, reporter, driver, volume, tree: _Tree, steps: list[_Step], *, first: int, total: int
) -> None:
    """Fold away hidden layers; a failure only leaves them hidden for a later operation to retry."""
    try:
        _execute(operation, reporter, driver, volume, tree, steps, first=first, total=total)
    except errors.ServiceError as error:
        logger.warning("merging hidden layers of volume %s stopped: %s", volume.uuid, error)
        audit(
            actor=operation.requested_by,
            action="snapshot.merge_hidden.stopped",
            object_type="volume",
            object_uuid=volume.uuid,
            volume_id=volume.pk,
            operation_id=operation.pk,
            result="failed",
            message=f"scode {error.scode}: {error.render_message()} {error.desc[-2000:]}",
        )


def _measure(
    operation: Operation, driver: StorageDriver, volume: Volume, tree: _Tree, extra: list[int]
) -> None:
    sizes = operation.params.setdefault("sizes", {})
    for node_id in [*tree.touched, *extra]:
        if node_id != HEAD and node_id in tree.nodes and driver.exists(tree.nodes[node_id].layer):
            sizes[tree.nodes[node_id].uuid] = driver.allocated_bytes(tree.nodes[node_id].layer)
    operation.params["used"] = driver.allocated_bytes(volume.image_name)


def _settle(
    operation: Operation,
    driver: StorageDriver,
    volume: Volume,
    tree: _Tree,
    steps: list[_Step],
    *,
    finish: bool,
) -> None:
    """Apply to the database, in order, the steps whose layer is gone from disk; stop at the first left.

    With `finish` (the failure path, possibly after a crash) the driver is asked to complete each
    such step first: a commit may have stopped between its rename and its repoint.
    """
    for step in steps:
        dependent = None
        if step.into is not None:
            dependent = volume.image_name if step.into == HEAD else _layer_in_plan(step.into, tree, steps)
        if driver.exists(step.node.layer):
            # A rebase that finished before the failure leaves only the layer's removal to do.
            if not (finish and dependent and driver.backing_name(dependent) != step.node.layer):
                break
            driver.layer_merge(step.node.layer, dependent, MERGE_REBASE, lambda *_: None)
        elif finish and dependent:
            driver.layer_merge(step.node.layer, dependent, MERGE_REBASE, lambda *_: None)
        node = step.node
        if step.into == HEAD:
            Volume.objects.filter(pk=volume.pk).update(current_snapshot_id=node.parent)
        elif step.into is not None:
            Snapshot.objects.filter(pk=step.into).update(parent_id=node.parent, modified=timezone.now())
        # Deleted linked clones may still name the layer (PROTECT): they no longer read it.
        Volume.objects.filter(parent_snapshot_id=node.id).exclude(state__in=LIVE_STATES).update(
            parent_snapshot=None
        )
        Snapshot.objects.filter(pk=node.id).delete()
        audit(
            actor=operation.requested_by,
            action="snapshot.merge" if step.into is not None else "snapshot.remove",
            object_type="snapshot",
            object_uuid=node.uuid,
            volume_id=volume.pk,
            operation_id=operation.pk,
            from_state=str(SnapshotStatus(node.status).label),
            to_state="gone",
            message=(
                f"{node.name!r}: layer folded into "
                + ("the head" if step.into == HEAD else f"snapshot {_node_uuid(step.into, tree, steps)}")
                + f" ({operation.params.get('strategies', {}).get(node.uuid, 'rebase')})"
                if step.into is not None
                else f"{node.name!r}: layer removed (nothing read it)"
            ),
        )


def _node_uuid(node_id: int, tree: _Tree, steps: list[_Step]) -> str:
    if node_id in tree.nodes:
        return tree.nodes[node_id].uuid
    return next(s.node.uuid for s in steps if s.node.id == node_id)


# -- delete --------------------------------------------------------------------------------------

DELETABLE_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR]


@transaction.atomic
def snapshot_delete(
    *, actor: str, volume: Volume, snapshot: Snapshot, name: str | None = None
) -> Operation | None:
    """Delete a snapshot: merge its layer away, or hide it while two or more layers still read it.

    Returns the merge operation, or None when the snapshot was hidden (no storage work: the layer
    is kept, still counted in SnapLength, and merged by a later delete or rollback once one
    dependent or none is left).
    """
    if name is not None and name != snapshot.name:
        raise errors.SnapshotNameMismatch(given=name, uuid=snapshot.uuid)
    volume = _lock_volume(volume, action="snapshot.delete")
    # Read again under the lock: a concurrent delete may have removed or hidden it meanwhile.
    snapshot = selectors.snapshot_get(volume=volume, uuid=snapshot.uuid)
    if snapshot.status not in DELETABLE_STATUSES:
        raise errors.StateConflict(
            kind="snapshot",
            uuid=snapshot.uuid,
            state=f"{snapshot.status} ({snapshot.get_status_display()})",
            action="snapshot.delete",
        )
    _refuse_if_attached(volume, doing="deleting a snapshot", doing_cn="删除快照")
    clones, backups = selectors.snapshot_dependents(snapshot=snapshot)
    if clones or backups:
        parts = []
        if clones:
            parts.append("linked clone(s) " + ", ".join(clones))
        if backups:
            parts.append("running backup(s) " + ", ".join(backups))
        raise errors.SnapshotHasDependents(
            uuid=snapshot.uuid, name=snapshot.name, dependents="; ".join(parts)
        )
    tree = _Tree.load(volume)
    dependents = tree.dependents(snapshot.pk)
    if len(dependents) > 1:
        names = [HEAD if d == HEAD else tree.nodes[d].name for d in dependents]
        transition(
            snapshot,
            field="status",
            allowed=DELETABLE_STATUSES,
            to=SnapshotStatus.HIDDEN,
            action="snapshot.delete.hide",
            actor=actor,
            object_type="snapshot",
            volume_id=volume.pk,
            message=f"{snapshot.name!r} hidden: its layer is kept for its dependents {', '.join(names)}",
        )
        return None
    _refuse_if_read(volume, action="deleting this snapshot")
    transition(
        snapshot,
        field="status",
        allowed=DELETABLE_STATUSES,
        to=SnapshotStatus.DELETING,
        action="snapshot.delete",
        actor=actor,
        object_type="snapshot",
        volume_id=volume.pk,
    )
    transition(
        volume,
        allowed=[EventState.AVAILABLE],
        to=EventState.MERGING,
        action="snapshot.delete",
        actor=actor,
        message=f"snapshot {snapshot.name!r} ({snapshot.uuid})",
    )
    return operation_create(
        kind=OperationKind.SNAPSHOT_DELETE,
        target_type="snapshot",
        target_uuid=snapshot.uuid,
        actor=actor,
        volume=volume,
        params={"snapshot": str(snapshot.uuid)},
    )


def _delete_plan(volume: Volume, snapshot_uuid: str) -> tuple[_Tree, list[_Step], _Tree]:
    """(tree as loaded, steps, tree after them): the snapshot's own step first, then hidden layers."""
    tree = _Tree.load(volume)
    planned = _Tree.load(volume)
    node = next((n for n in planned.nodes.values() if n.uuid == snapshot_uuid), None)
    if node is None:
        return tree, [], planned
    step = planned.step_for(node)
    if step is None:
        raise errors.StateConflict(
            kind="snapshot", uuid=snapshot_uuid, state="read by several layers", action="merge"
        )
    planned.apply(step)
    return tree, [step, *planned.collect_hidden()], planned


def _snapshot_delete_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    _require(volume, "state", EventState.MERGING, kind="volume", action="snapshot.delete")
    tree, steps, planned = _delete_plan(volume, operation.params["snapshot"])
    if steps:
        _execute(operation, reporter, driver, volume, tree, steps[:1], first=0, total=len(steps))
        _collect_best_effort(operation, reporter, driver, volume, tree, steps[1:], first=1, total=len(steps))
    reporter.phase("measuring")
    _measure(operation, driver, volume, planned, [])


def _snapshot_delete_finish(operation: Operation, error: errors.ServiceError | None) -> None:
    volume, driver = _handler_context(operation)
    tree, steps, planned = _delete_plan(volume, operation.params["snapshot"])
    if error is not None:
        _measure(operation, driver, volume, planned, [])
    _write_sizes(operation)
    _settle(operation, driver, volume, tree, steps, finish=error is not None)
    snapshot = Snapshot.objects.filter(
        uuid=operation.params["snapshot"], status=SnapshotStatus.DELETING
    ).first()
    if snapshot is not None:
        # Its own step did not happen. A rebase never writes the layer: it is intact. A commit may
        # have written the dependent's clusters into it: it still backs the dependent correctly but
        # no longer holds its own content alone, so it is marked error (delete it again).
        committed = operation.params.get("strategies", {}).get(str(snapshot.uuid)) == MERGE_COMMIT
        transition(
            snapshot,
            field="status",
            allowed=[SnapshotStatus.DELETING],
            to=SnapshotStatus.ERROR if committed else SnapshotStatus.AVAILABLE,
            action="snapshot.delete.fail",
            actor=operation.requested_by,
            object_type="snapshot",
            volume_id=volume.pk,
            operation_id=operation.pk,
            error=error,
        )
    volume.refresh_from_db()
    transition(
        volume,
        allowed=[EventState.MERGING],
        to=EventState.AVAILABLE,
        action="snapshot.delete.finish" if error is None else "snapshot.delete.fail",
        actor=operation.requested_by,
        operation_id=operation.pk,
        extra={"used": operation.params.get("used", volume.used), "snap_length": _snap_length(volume)},
        error=error,
    )


SNAPSHOT_DELETE_HANDLER = OperationHandler(
    run=_snapshot_delete_run,
    succeed=lambda operation: _snapshot_delete_finish(operation, None),
    fail=_snapshot_delete_finish,
)


# -- rollback ------------------------------------------------------------------------------------


def _auto_name(target: Snapshot) -> str:
    stamp = datetime.now(dt_timezone.utc).strftime("%Y%m%d-%H%M%S")
    prefix = "before-rollback-to-"
    suffix = f"-{stamp}"
    room = settings.SHARESTORE_NAME_MAX_LENGTH - len(prefix) - len(suffix)
    return f"{prefix}{target.name[:room]}{suffix}"


@transaction.atomic
def snapshot_rollback(
    *,
    actor: str,
    volume: Volume,
    snapshot: Snapshot,
    snapshot_first: bool = False,
    snapshot_first_name: str | None = None,
) -> tuple[Operation, Snapshot | None]:
    """Replace the head by an empty overlay on `snapshot`; with `snapshot_first`, snapshot the head first.

    Returns the operation and the snapshot taken first (None without `snapshot_first`).
    """
    if snapshot_first_name:
        snapshot_first_name = validate_snapshot_name(snapshot_first_name, field="snapshot_first_name")
    volume = _lock_volume(volume, action="snapshot.rollback")
    # Read again under the lock: a concurrent delete may have removed or hidden it meanwhile.
    snapshot = selectors.snapshot_get(volume=volume, uuid=snapshot.uuid)
    if snapshot.status != SnapshotStatus.AVAILABLE:
        raise errors.StateConflict(
            kind="snapshot",
            uuid=snapshot.uuid,
            state=f"{snapshot.status} ({snapshot.get_status_display()})",
            action="snapshot.rollback",
        )
    _refuse_if_attached(volume, doing="a rollback", doing_cn="回滚")
    _refuse_if_read(volume, action="rolling back")
    first = None
    if snapshot_first:
        name = snapshot_first_name or _auto_name(snapshot)
        _check_can_snapshot(volume, name)
        first = _new_snapshot(
            volume, name=name, desc=f"taken before rolling back to {snapshot.name}"[:DESC_MAX_LENGTH]
        )
    transition(
        volume,
        allowed=[EventState.AVAILABLE],
        to=EventState.ROLLING_BACK,
        action="snapshot.rollback",
        actor=actor,
        message=f"to snapshot {snapshot.name!r} ({snapshot.uuid})"
        + (f", first snapshot {first.name!r}" if first else ""),
    )
    operation = operation_create(
        kind=OperationKind.SNAPSHOT_ROLLBACK,
        target_type="volume",
        target_uuid=volume.uuid,
        actor=actor,
        volume=volume,
        params={"snapshot": str(snapshot.uuid), "first": str(first.uuid) if first else None},
    )
    if first:
        audit(
            actor=actor,
            action="snapshot.create",
            object_type="snapshot",
            object_uuid=first.uuid,
            volume_id=volume.pk,
            operation_id=operation.pk,
            to_state=str(SnapshotStatus.CREATING.label),
            message=f"name={first.name!r}, before rolling back to {snapshot.name!r}",
        )
    return operation, first


def _rollback_plan(volume: Volume, target_id: int) -> tuple[_Tree, list[_Step], _Tree]:
    tree = _Tree.load(volume)
    planned = _Tree.load(volume)
    planned.head_on = target_id
    # The head leaves the snapshot it sat on (or the one taken first): that layer may now be a
    # hidden one with a single dependent left.
    return tree, planned.collect_hidden(), planned


def _rollback_rows(operation: Operation) -> tuple[Snapshot, Snapshot | None]:
    target = Snapshot.objects.get(uuid=operation.params["snapshot"])
    first_uuid = operation.params.get("first")
    first = Snapshot.objects.filter(uuid=first_uuid).first() if first_uuid else None
    return target, first


def _snapshot_rollback_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    target, first = _rollback_rows(operation)
    _require(volume, "state", EventState.ROLLING_BACK, kind="volume", action="snapshot.rollback")
    _require(target, "status", SnapshotStatus.AVAILABLE, kind="snapshot", action="snapshot.rollback")
    head = volume.image_name
    if first is not None:
        _require(first, "status", SnapshotStatus.CREATING, kind="snapshot", action="snapshot.create")
        # Both files present means the freeze finished (and maybe the reset too): do not redo it.
        if not (driver.exists(first.layer_name) and driver.exists(head)):
            reporter.phase("snapshotting the current state")
            driver.snapshot_freeze(head, first.layer_name)
    reporter.phase("replacing the active layer")
    driver.head_reset(head, target.layer_name)
    tree, steps, planned = _rollback_plan(volume, target.pk)
    _collect_best_effort(operation, reporter, driver, volume, tree, steps, first=0, total=max(len(steps), 1))
    reporter.phase("measuring")
    _measure(operation, driver, volume, planned, [first.pk] if first else [])


def _snapshot_rollback_finish(operation: Operation, error: errors.ServiceError | None) -> None:
    volume, driver = _handler_context(operation)
    target, first = _rollback_rows(operation)
    head = volume.image_name
    if error is None:
        # The run finished: the freeze (if asked) and the reset are done; no need to look at disk.
        first_frozen, reset_done = first is not None, True
    else:
        on_disk = driver.backing_name(head) if driver.exists(head) else None
        first_frozen = first is not None and driver.exists(first.layer_name) and driver.exists(head)
        if first is not None and not first_frozen:
            driver.snapshot_unfreeze(head, first.layer_name)
            on_disk = driver.backing_name(head)
        reset_done = on_disk == target.layer_name
        used = driver.allocated_bytes(head)
        operation.params["used"] = used
        if first_frozen:
            operation.params.setdefault("sizes", {})[str(first.uuid)] = driver.allocated_bytes(
                first.layer_name
            )
    _write_sizes(operation)
    if first is not None:
        if first_frozen:
            _snapshot_frozen(first, operation)
        else:
            _discard_snapshot_row(first, operation, error or errors.InternalError(), "snapshot.create.fail")
    if reset_done:
        Volume.objects.filter(pk=volume.pk).update(current_snapshot=target)
        tree, steps, _planned = _rollback_plan(volume, target.pk)
        _settle(operation, driver, volume, tree, steps, finish=error is not None)
    elif first_frozen:
        # The freeze happened, the reset did not: the head is the empty overlay on the new snapshot.
        Volume.objects.filter(pk=volume.pk).update(current_snapshot=first)
    volume.refresh_from_db()
    transition(
        volume,
        allowed=[EventState.ROLLING_BACK],
        to=EventState.AVAILABLE,
        action="snapshot.rollback.finish" if error is None else "snapshot.rollback.fail",
        actor=operation.requested_by,
        operation_id=operation.pk,
        extra={"used": operation.params.get("used", volume.used), "snap_length": _snap_length(volume)},
        message=(
            f"head on {volume.current_snapshot.name if volume.current_snapshot else 'no snapshot'}"
            + (f"; scode {error.scode}: {error.render_message()}" if error else "")
        ),
    )


SNAPSHOT_ROLLBACK_HANDLER = OperationHandler(
    run=_snapshot_rollback_run,
    succeed=lambda operation: _snapshot_rollback_finish(operation, None),
    fail=_snapshot_rollback_finish,
)
