"""The qcow2 driver's snapshot tree: external qcow2 layers, merged, removed or hidden (docs/snapshots.md).

Layout (docs/storage.md "Pool layout"): a volume's head is `volume/<v>` and its snapshot layers sit
beside it, `volume/<v>@<s>.qcow2`. Freezing the head is a rename inside one directory, so every
relative backing reference stays right: a snapshot create is one overlay creation (its one qemu-img
run), two renames under one fence, and a count of the layer's L2 tables (`header.py`). Pools written
before this layout hold layers at `snapshots/<v>/<s>.qcow2` (the name is in `Snapshot.layer_name`,
so each layer is found where it was made); any move between two
directories (an old layer committed into the head, a create whose name was chosen by the old code) is
followed by `_repoint`, a metadata-only rewrite of the reference to the same file. Each step is either
atomic (rename) or leaves every image's guest-visible content unchanged, and each method starts by
looking at what the files show, so calling it again after a crash finishes the work. None of them
opens a backing chain: each reads single layers only.

Which layer goes how is decided by the pure planner (`plan.py`) on the service's `SnapshotTree`; the
one choice that cannot be read back from the files (commit or rebase) is written to the journal before
any byte moves, so a re-call finishes with the same one.
"""

from __future__ import annotations

import os

from sharestore import errors
from sharestore.core import fencing
from volumes.drivers import qemu
from volumes.drivers.base import Journal, ProgressCallback, SnapshotTree, TreeChange, TreeWork
from volumes.drivers.qcow2.header import virtual_size as header_virtual_size
from volumes.drivers.qcow2.plan import (
    HEAD,
    MERGE_COMMIT,
    MERGE_REBASE,
    Node,
    NotMergeable,
    Plan,
    Step,
    Tree,
    layer_in_plan,
    merge_strategy,
    must_hide,
    plan_delete,
    plan_rollback,
)
from volumes.drivers.qemu import fsync_path

# A layer of volume `volume/<v>` is `volume/<v>@<s>.qcow2`; pools written before kept them in
# `snapshots/<v>/<s>.qcow2`, which are still read, merged and removed where they are.
LAYER_SEPARATOR = "@"
LEGACY_LAYER_DIR = "snapshots"
# What `usage` (allocated data clusters x cluster size) answers for an overlay `create -u` just made.
EMPTY_OVERLAY_USAGE = 0


def _no_progress(*_args) -> None:
    pass


def _virtual_size(path: str) -> int:
    """The virtual size of a layer: from its header, read here; qemu-img only if it is not plain."""
    size = header_virtual_size(path)
    return size if size is not None else int(qemu.info(path)["virtual-size"])


def plan_tree(tree: SnapshotTree) -> Tree:
    """The planner's form of a tree. Node ids follow the service's order (oldest first), which keeps
    the planner's choices (it walks nodes by id) the same from one call to the next."""
    index = {s.id: position for position, s in enumerate(tree.snapshots, start=1)}
    nodes = {
        index[s.id]: Node(
            id=index[s.id],
            uuid=s.id,
            name=s.label or s.id,
            parent=index.get(s.parent) if s.parent is not None else None,
            hidden=s.hidden,
            layer=s.name,
            clones=s.clones,
            pinned=s.pinned,
        )
        for s in tree.snapshots
    }
    return Tree(nodes=nodes, head_on=index.get(tree.head_on) if tree.head_on is not None else None)


class LayerTree:
    """Snapshot-tree methods of the directory driver (mixed into Qcow2DirectoryDriver)."""

    # -- the domain interface -----------------------------------------------------------------------

    def snapshot_name(self, volume: str, snapshot_id: str) -> str:
        # Beside the head, in its directory: freezing the head is then a rename that keeps every
        # relative backing reference right (no rewrite), whatever layout the layers below it have.
        directory, base = os.path.split(volume)
        return os.path.join(directory, f"{base}{LAYER_SEPARATOR}{snapshot_id}.qcow2")

    def _own_layer(self, volume: str, name: str) -> bool:
        """Whether `name` is a snapshot layer of `volume`, in the current layout or the one before."""
        directory, base = os.path.split(volume)
        if name.startswith(f"{LEGACY_LAYER_DIR}/{base}/"):
            return True
        return os.path.dirname(name) == directory and os.path.basename(name).startswith(
            base + LAYER_SEPARATOR
        )

    def snapshot_create(self, volume: str, snapshot: str) -> tuple[int, int]:
        created = self._freeze(volume, snapshot)
        # A head this call created is an empty `create -u` overlay: it holds no data cluster, so its
        # usage is known without a measurement. One found in place (a resumed call) is measured.
        head_bytes = EMPTY_OVERLAY_USAGE if created else self.usage(volume)
        return self.usage(snapshot), head_bytes

    def snapshot_create_undo(self, volume: str, snapshot: str) -> None:
        self._unfreeze(volume, snapshot)

    def head_snapshot(self, volume: str) -> str | None:
        if not self.exists(volume):
            return None
        backing = self.backing_name(volume)
        return backing if backing is not None and self._own_layer(volume, backing) else None

    def snapshot_delete_keeps(self, tree: SnapshotTree, snapshot_id: str) -> bool:
        # A layer read by two layers or more cannot be folded into all of them without copying it into
        # each: it is kept (hidden) until one dependent or none is left.
        planned = plan_tree(tree)
        node = planned.find(snapshot_id)
        return node is not None and must_hide(planned, node.id)

    def _delete_plan(self, tree: SnapshotTree, snapshot_id: str) -> Plan | None:
        """The delete's plan; None when the layer must be kept (read by several layers or clones)."""
        try:
            return plan_delete(plan_tree(tree), snapshot_id)
        except NotMergeable:
            return None

    def snapshot_delete(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        plan = self._delete_plan(tree, snapshot_id)
        if plan is None:
            return TreeChange(kept=True, used=self.usage(volume))
        change = TreeChange()
        steps = plan.steps
        if steps:
            self._run_steps(volume, plan.before, steps[:1], change, work, 0, len(steps))
            self._run_best_effort(volume, plan.before, steps[1:], change, work, 1)
        self._measure(volume, plan.after, change)
        return change

    def snapshot_rollback(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        target = tree.get(snapshot_id)
        if target is None:
            raise errors.StorageError(reason=f"snapshot {snapshot_id} is not in the tree of {volume}")
        self._head_reset(volume, target.name)
        work.checkpoint()
        planned = plan_tree(tree)
        plan = plan_rollback(planned, planned.find(snapshot_id).id)
        change = TreeChange()
        self._run_best_effort(volume, plan.before, plan.steps, change, work, 0)
        self._measure(volume, plan.after, change)
        return change

    def tree_recover(
        self, volume: str, tree: SnapshotTree, *, journal: Journal, deleting: str | None = None
    ) -> TreeChange:
        if deleting is not None:
            plan = self._delete_plan(tree, deleting)
            if plan is None:
                return TreeChange(kept=True, used=self.usage(volume))
        else:
            before = plan_tree(tree)
            after = before.copy()
            plan = Plan(before, after.collect_hidden(), after)
        change = TreeChange()
        # The steps whose layer is gone are done, in order; stop at the first still on disk. A rebase
        # that finished leaves only the layer's removal, a commit may have stopped between its rename
        # and its repoint: both copy nothing and are finished here.
        for step in plan.steps:
            dependent = self._dependent(volume, plan.before, plan.steps, step)
            layer = step.node.layer
            if self.exists(layer):
                if dependent is None or self.backing_name(dependent) == layer:
                    break
            if dependent is not None:
                self._layer_merge(layer, dependent, MERGE_REBASE, _no_progress)
            self._record_gone(step, journal, change)
        if deleting is not None and deleting not in change.gone and journal.get(deleting) == MERGE_COMMIT:
            # A commit into this layer may have stopped half-way: it still backs its dependent
            # correctly but no longer holds its own content alone.
            change.damaged.append(deleting)
        self._measure(volume, plan.after, change)
        return change

    # -- running a plan -----------------------------------------------------------------------------

    def _dependent(self, volume: str, tree: Tree, steps: list[Step], step: Step) -> str | None:
        if step.into is None:
            return None
        return volume if step.into == HEAD else layer_in_plan(step.into, tree, steps)

    def _strategy(self, step: Step, layer: str, dependent: str, journal: Journal) -> str:
        """Commit or rebase, whichever copies less; chosen once per layer and kept in the journal.

        Both are correct because nothing but `dependent` reads the layer. A commit that stops half-way
        leaves the layer holding a mix of its own and the dependent's data, so a layer a backup names
        (an incremental base, whose content is trusted) is always rebased, never written.
        """
        uuid = step.node.uuid
        if uuid not in journal:
            journal[uuid] = merge_strategy(
                named_by_backup=step.node.pinned,
                layer_bytes=lambda: self.usage(layer),
                dependent_bytes=lambda: self.usage(dependent),
            )
        return journal[uuid]

    @staticmethod
    def _record_gone(step: Step, journal: Journal, change: TreeChange) -> None:
        change.gone.append(step.node.uuid)
        change.how[step.node.uuid] = (
            "removed" if step.into is None else f"merged ({journal.get(step.node.uuid, MERGE_REBASE)})"
        )

    def _run_steps(
        self,
        volume: str,
        tree: Tree,
        steps: list[Step],
        change: TreeChange,
        work: TreeWork,
        first: int,
        total: int,
    ) -> None:
        for index, step in enumerate(steps, start=first):
            base = 100.0 * index / total

            def on_progress(percent: float, _done: int = 0, _total: int = 0, base: float = base) -> None:
                work.progress(base + percent / total, 0, 0)

            layer = step.node.layer
            dependent = self._dependent(volume, tree, steps, step)
            if dependent is None:
                self._layer_remove(layer)
            else:
                strategy = (
                    self._strategy(step, layer, dependent, work.journal)
                    if self.exists(layer)
                    else work.journal.get(step.node.uuid, MERGE_REBASE)
                )
                self._layer_merge(layer, dependent, strategy, on_progress)
            self._record_gone(step, work.journal, change)
            work.progress(100.0 * (index + 1) / total, 0, 0)
            work.checkpoint()

    def _run_best_effort(
        self, volume: str, tree: Tree, steps: list[Step], change: TreeChange, work: TreeWork, first: int
    ) -> None:
        """Fold away hidden layers; a failure only leaves them hidden for a later operation to retry."""
        total = max(first + len(steps), 1)
        try:
            self._run_steps(volume, tree, steps, change, work, first, total)
        except errors.ServiceError as error:
            change.stopped = f"scode {error.scode}: {error.render_message()} {error.desc[-2000:]}".strip()

    def _measure(self, volume: str, after: Tree, change: TreeChange) -> None:
        # The layers that received data changed size; the others did not.
        for node_id in after.touched:
            if node_id != HEAD and node_id in after.nodes and self.exists(after.nodes[node_id].layer):
                change.sizes[after.nodes[node_id].uuid] = self.usage(after.nodes[node_id].layer)
        change.used = self.usage(volume)

    # -- layer steps --------------------------------------------------------------------------------

    def _set_backing(self, path: str, backing: str) -> None:
        """Rewrite the backing reference of `path` to name `backing` (the same file: metadata only)."""
        qemu.rebase(path, qemu.relative_backing(backing, path), safe=False)
        fsync_path(path)

    def _repoint(self, path: str, former_dir: str, data: dict | None = None) -> None:
        """Make the backing reference of `path`, just moved here from `former_dir`, right from here.

        `rebase -u` only rewrites the name, which is safe because the name keeps designating the
        same file; it is never used to drop a layer (that loses the layer's data).
        """
        if os.path.normpath(former_dir) == os.path.dirname(os.path.normpath(path)):
            return  # moved inside one directory: the relative reference still designates the same file
        raw = qemu.backing_raw(path, data)
        if raw is None or os.path.isabs(raw):
            return
        if os.path.isfile(qemu.resolve(path, raw)):
            return
        target = os.path.normpath(os.path.join(former_dir, raw))
        if not os.path.isfile(target):
            raise errors.StorageError(reason=f"backing {raw!r} of {self._name_of(path)} is missing")
        self._set_backing(path, target)

    def _create_overlay(self, final: str, backing: str, size: int | None = None) -> None:
        """Publish an empty overlay on `backing` at `final`, replacing whatever `final` was."""
        if size is None:
            size = _virtual_size(backing)
        with qemu.publishing(final, publish_with=self._publish) as tmp:
            qemu.create(tmp, size, backing=qemu.relative_backing(backing, final))

    def _freeze(self, head: str, layer: str) -> bool:
        """Make the head's content the layer `layer` and publish an empty overlay on it as the head.

        Whether this call created the overlay (False: a resumed call found it in place)."""
        head_path, layer_path = self.path(head), self.path(layer)
        if os.path.dirname(head_path) != os.path.dirname(layer_path):
            return self._freeze_across(head, layer)
        if os.path.isfile(head_path) and not os.path.isfile(layer_path):
            # The layout beside the head: the overlay is written first (`create -u`: its backing need
            # not exist yet), then the head becomes the layer and the overlay the head under one fence
            # (one lease check for both renames). A crash before the first rename leaves a partial of
            # the head; one between the two leaves the layer without a head, finished below.
            size = _virtual_size(head_path)

            def publish(tmp: str, final: str) -> None:
                qemu.fsync_path(head_path)  # the layer's data is durable before anything moves
                with fencing.publish_guard():
                    self._rename(head_path, layer_path)
                    self._publish(tmp, final)

            with qemu.publishing(head_path, publish_with=publish) as tmp:
                qemu.create(tmp, size, backing=qemu.relative_backing(layer_path, head_path))
            return True
        if not os.path.isfile(layer_path):
            raise errors.StorageError(reason=f"cannot freeze {head}: neither it nor {layer} exists")
        if os.path.isfile(head_path):
            if qemu.backing_path(head_path) != layer_path:
                raise errors.StorageError(reason=f"{head} and {layer} exist, {head} not on {layer}")
            return False
        self._create_overlay(head_path, layer_path, _virtual_size(layer_path))
        return True

    def _freeze_across(self, head: str, layer: str) -> bool:
        """A freeze into another directory (a layer name chosen by the layout before this one): the
        head is renamed, its backing reference rewritten for there, then the overlay published."""
        head_path, layer_path = self.path(head), self.path(layer)
        if os.path.isfile(head_path) and not os.path.isfile(layer_path):
            os.makedirs(os.path.dirname(layer_path), exist_ok=True)
            self._rename(head_path, layer_path)
        if not os.path.isfile(layer_path):
            raise errors.StorageError(reason=f"cannot freeze {head}: neither it nor {layer} exists")
        # One read of the layer serves the repoint and the overlay's size (the repoint changes neither).
        data = qemu.info(layer_path)
        self._repoint(layer_path, os.path.dirname(head_path), data)
        if os.path.isfile(head_path):
            if qemu.backing_path(head_path) != layer_path:
                raise errors.StorageError(reason=f"{head} and {layer} exist, {head} not on {layer}")
            return False
        self._create_overlay(head_path, layer_path, int(data["virtual-size"]))
        return True

    def _unfreeze(self, head: str, layer: str) -> None:
        head_path, layer_path = self.path(head), self.path(layer)
        qemu.discard_partials(head_path)  # an interrupted freeze's overlay, of any attempt
        if not os.path.isfile(layer_path):
            return
        if os.path.isfile(head_path):
            if qemu.backing_path(head_path) != layer_path:
                raise errors.StorageError(reason=f"{head} is not the freeze's overlay on {layer}: kept")
            self._unlink(head_path)
        self._rename(layer_path, head_path)
        self._repoint(head_path, os.path.dirname(layer_path))

    def _head_reset(self, head: str, layer: str) -> None:
        layer_path = self.path(layer)
        if not os.path.isfile(layer_path):
            raise errors.StorageError(reason=f"cannot roll back onto {layer}: the layer is missing")
        self._create_overlay(self.path(head), layer_path)

    def _layer_remove(self, layer: str) -> None:
        self._unlink(self.path(layer))

    def _layer_merge(self, layer: str, dependent: str, strategy: str, progress: ProgressCallback) -> None:
        if strategy not in (MERGE_REBASE, MERGE_COMMIT):
            raise ValueError(strategy)
        layer_path, dependent_path = self.path(layer), self.path(dependent)
        if not os.path.isfile(dependent_path):
            raise errors.StorageError(reason=f"cannot merge {layer} into {dependent}: {dependent} is missing")
        if not os.path.isfile(layer_path):
            # Done earlier; a commit may have stopped between its rename and its repoint.
            self._repoint(dependent_path, os.path.dirname(layer_path))
            return
        layer_backing = qemu.backing_path(layer_path)
        dependent_backing = qemu.backing_path(dependent_path)
        if dependent_backing != layer_path:
            if dependent_backing == layer_backing:
                # A rebase finished; only the removal of the layer was left.
                self._unlink(layer_path)
                return
            raise errors.StorageError(reason=f"{dependent} is not an overlay on {layer}: not merging")

        def on_progress(percent: float) -> None:
            progress(percent, 0, 0)

        if strategy == MERGE_REBASE:
            # Copies into the dependent every cluster it reads from the layer, then points it at the
            # layer's backing. Until the header is rewritten at the end the dependent still reads
            # through the layer, and what it gained is what it read there: a crash changes nothing.
            qemu.rebase(
                dependent_path,
                None if layer_backing is None else qemu.relative_backing(layer_backing, dependent_path),
                cache="writeback",
                source_cache="writeback",
                progress=on_progress,
            )
            fsync_path(dependent_path)
            self._unlink(layer_path)
            return
        # Commit: the dependent's clusters are written into the layer (-d: the dependent keeps
        # them, so the work can be redone). Legal only because nothing else reads the layer; the
        # layer then takes the dependent's name, and the dependent's readers find the same content.
        qemu.commit(dependent_path, progress=on_progress)
        self._rename(layer_path, dependent_path)
        self._repoint(dependent_path, os.path.dirname(layer_path))
