"""The qcow2 driver's snapshot tree planner: which layer is merged, removed or hidden (docs/snapshots.md).

Pure: plain dataclasses in, steps out. No database, no qemu-img; the driver (`tree.py`) converts the
service's `SnapshotTree` into this form, runs the steps on disk and reports which snapshots' data is
gone. The rules (measured, see the qemu-img notes):

- a layer nothing reads is removed;
- a layer with exactly one dependent (a child layer or the head) is folded into it;
- a layer with two or more dependents (a branch after a rollback) or read by linked clones is never
  folded: it is hidden, and collected once it is down to one dependent or none;
- folding by commit (push-down) writes the layer, so a layer a backup names (an incremental backup
  trusts its content) is always rebased.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

# How a layer is folded into the one image that reads it.
MERGE_REBASE = "rebase"  # safe rebase of the dependent onto the layer's backing: copies the layer's data
MERGE_COMMIT = "commit"  # commit the dependent into the layer, which then takes the dependent's name

HEAD = "head"  # the tree's pseudo-node for the active layer; no snapshot may take this name

__all__ = [
    "HEAD",
    "MERGE_COMMIT",
    "MERGE_REBASE",
    "Node",
    "NotMergeable",
    "Plan",
    "Step",
    "Tree",
    "layer_in_plan",
    "merge_strategy",
    "must_hide",
    "node_uuid_in_plan",
    "plan_delete",
    "plan_rollback",
]


@dataclass
class Node:
    """One snapshot layer as the planner sees it (`status` is carried for the caller, never read here)."""

    id: int
    uuid: str
    name: str
    parent: int | None
    hidden: bool
    layer: str
    clones: int = 0
    status: int | None = None
    pinned: bool = False  # a backup names the layer: never written by a merge


@dataclass
class Step:
    """Remove a layer nothing reads (`into` None) or fold it into its only dependent (`into`: id or HEAD)."""

    node: Node
    into: int | str | None


@dataclass
class Tree:
    """A volume's layers and where its head sits; `touched` collects the dependents steps folded into."""

    nodes: dict[int, Node]
    head_on: int | None
    touched: set = field(default_factory=set)

    def copy(self) -> Tree:
        return copy.deepcopy(self)

    def find(self, uuid: str) -> Node | None:
        return next((n for n in self.nodes.values() if n.uuid == uuid), None)

    def dependents(self, node_id: int) -> list[int | str]:
        deps: list[int | str] = [n.id for n in self.nodes.values() if n.parent == node_id]
        if self.head_on == node_id:
            deps.append(HEAD)
        return deps

    def step_for(self, node: Node) -> Step | None:
        """How `node` leaves the tree, or None when it cannot (two dependents or more, or linked clones)."""
        deps = self.dependents(node.id)
        if node.clones or len(deps) > 1:
            return None
        return Step(node, deps[0] if deps else None)

    def apply(self, step: Step) -> None:
        node = self.nodes.pop(step.node.id)
        if step.into == HEAD:
            self.head_on = node.parent
        elif step.into is not None:
            self.nodes[step.into].parent = node.parent
        if step.into is not None:
            self.touched.add(step.into)

    def collect_hidden(self) -> list[Step]:
        """Steps that fold away every hidden layer left with one dependent or none, cascading up."""
        steps = []
        while True:
            for node in sorted(self.nodes.values(), key=lambda n: n.id):
                if node.hidden:
                    step = self.step_for(node)
                    if step is not None:
                        break
            else:
                return steps
            self.apply(step)
            steps.append(step)


@dataclass
class Plan:
    """The tree as given, the steps in order, and the tree once they are all done."""

    before: Tree
    steps: list[Step]
    after: Tree


class NotMergeable(Exception):
    """The layer to delete is read by two layers or more, or by linked clones: it can only be hidden."""

    def __init__(self, uuid: str):
        super().__init__(uuid)
        self.uuid = uuid


def must_hide(tree: Tree, node_id: int) -> bool:
    """A delete hides the snapshot instead of merging it while two layers or more read it."""
    return len(tree.dependents(node_id)) > 1


def plan_delete(tree: Tree, snapshot_uuid: str) -> Plan:
    """The snapshot's own step first, then the hidden layers that step leaves collectable.

    An empty plan when the snapshot is no longer in the tree (a redelivered task after its step).
    """
    planned = tree.copy()
    node = planned.find(snapshot_uuid)
    if node is None:
        return Plan(tree, [], planned)
    step = planned.step_for(node)
    if step is None:
        raise NotMergeable(snapshot_uuid)
    planned.apply(step)
    return Plan(tree, [step, *planned.collect_hidden()], planned)


def plan_rollback(tree: Tree, target_id: int) -> Plan:
    """The head moves onto `target_id`: the layer it left may now be a hidden one with one dependent."""
    planned = tree.copy()
    planned.head_on = target_id
    return Plan(tree, planned.collect_hidden(), planned)


def layer_in_plan(node_id: int, tree: Tree, steps: list[Step]) -> str:
    """The layer file of a node, also when an earlier step already took it out of `tree`."""
    if node_id in tree.nodes:
        return tree.nodes[node_id].layer
    for step in steps:
        if step.node.id == node_id:
            return step.node.layer
    raise KeyError(node_id)


def node_uuid_in_plan(node_id: int, tree: Tree, steps: list[Step]) -> str:
    if node_id in tree.nodes:
        return tree.nodes[node_id].uuid
    return next(s.node.uuid for s in steps if s.node.id == node_id)


def merge_strategy(
    *, named_by_backup: bool, layer_bytes: Callable[[], int], dependent_bytes: Callable[[], int]
) -> str:
    """Commit or rebase, whichever copies less; a layer a backup names is always rebased.

    Both are correct when nothing but the dependent reads the layer. A rebase copies the layer's
    clusters into the dependent and never writes the layer; a commit copies the dependent's clusters
    into the layer. Sizes are callables: they are measured only when the choice depends on them.
    """
    if named_by_backup:
        return MERGE_REBASE
    layer = layer_bytes()
    return MERGE_COMMIT if dependent_bytes() < layer else MERGE_REBASE
