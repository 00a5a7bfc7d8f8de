"""Runs a snapshot tree plan (`volumes.services.snapshot_plan`) on disk and settles it in the database.

The plan is computed on an in-memory tree loaded from the rows: a run executes its steps on disk,
and the handlers' `succeed` / `fail` apply to the database exactly the steps whose work the files
show done (a merged or removed layer's file is gone). The database only changes in those handlers,
so a plan recomputed by a redelivered task is the same plan.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from sharestore import errors
from sharestore.core.models import Operation
from sharestore.core.services.operations import Reporter
from sharestore.core.services.state import audit
from volumes import selectors
from volumes.choices import LIVE_STATES, SnapshotStatus
from volumes.drivers import StorageDriver
from volumes.drivers.base import MERGE_REBASE
from volumes.models import Snapshot, Volume
from volumes.services.snapshot_plan import (
    HEAD,
    Node,
    Step,
    Tree,
    layer_in_plan,
    merge_strategy,
    node_uuid_in_plan,
)

logger = logging.getLogger(__name__)


def load_tree(volume: Volume) -> Tree:
    """The volume's tree as the planner sees it, from its snapshot rows (hidden ones too)."""
    rows = selectors.snapshot_rows(volume=volume)
    nodes = {
        r.pk: Node(
            r.pk,
            str(r.uuid),
            r.name,
            r.parent_id,
            r.status == SnapshotStatus.HIDDEN,
            r.layer_name,
            r.clone_count,
            r.status,
        )
        for r in rows
    }
    return Tree(nodes=nodes, head_on=volume.current_snapshot_id)


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
        strategies[node_uuid] = merge_strategy(
            named_by_backup=Snapshot.objects.filter(uuid=node_uuid, backups__isnull=False).exists(),
            layer_bytes=lambda: driver.allocated_bytes(layer),
            dependent_bytes=lambda: driver.allocated_bytes(dependent),
        )
        Operation.objects.filter(pk=operation.pk).update(params=operation.params)
    return strategies[node_uuid]


def execute_steps(
    operation: Operation,
    reporter: Reporter,
    driver: StorageDriver,
    volume: Volume,
    tree: Tree,
    steps: list[Step],
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
            dependent = volume.image_name if step.into == HEAD else layer_in_plan(step.into, tree, steps)
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


def collect_hidden_best_effort(
    operation, reporter, driver, volume, tree: Tree, steps: list[Step], *, first: int, total: int
) -> None:
    """Fold away hidden layers; a failure only leaves them hidden for a later operation to retry."""
    try:
        execute_steps(operation, reporter, driver, volume, tree, steps, first=first, total=total)
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


def measure_layers(
    operation: Operation, driver: StorageDriver, volume: Volume, tree: Tree, extra: list[int]
) -> None:
    sizes = operation.params.setdefault("sizes", {})
    for node_id in [*tree.touched, *extra]:
        if node_id != HEAD and node_id in tree.nodes and driver.exists(tree.nodes[node_id].layer):
            sizes[tree.nodes[node_id].uuid] = driver.allocated_bytes(tree.nodes[node_id].layer)
    operation.params["used"] = driver.allocated_bytes(volume.image_name)


def settle_steps(
    operation: Operation,
    driver: StorageDriver,
    volume: Volume,
    tree: Tree,
    steps: list[Step],
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
            dependent = volume.image_name if step.into == HEAD else layer_in_plan(step.into, tree, steps)
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
                + ("the head" if step.into == HEAD else f"snapshot {node_uuid_in_plan(step.into, tree, steps)}")
                + f" ({operation.params.get('strategies', {}).get(node.uuid, 'rebase')})"
                if step.into is not None
                else f"{node.name!r}: layer removed (nothing read it)"
            ),
        )




def write_sizes(operation: Operation) -> None:
    for snapshot_uuid, size in (operation.params.get("sizes") or {}).items():
        Snapshot.objects.filter(uuid=snapshot_uuid).update(size=size)


