"""The database side of the snapshot tree operations the driver runs (docs/snapshots.md).

The service describes a volume's tree to its driver (`load_tree`: plain dataclasses, no ORM), hands
it a journal kept in the operation (`OperationJournal`: a driver writes a choice there before acting
on it, so a redelivered task finishes the same way) and a checkpoint that stops the work when the
lease is lost; the driver answers with a `TreeChange`, which `settle_change` records: rows removed
in the order their data went, parents and the head moved up, sizes written, audit rows. The database
only changes in the handlers' `succeed` / `fail`, so a tree loaded again by a redelivered task is
the same tree.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from sharestore import errors
from sharestore.core.models import Operation
from sharestore.core.services.operations import Reporter
from sharestore.core.services.state import OperationContext, audit, audit_of
from volumes import selectors
from volumes.choices import LIVE_STATES, SnapshotStatus
from volumes.drivers import SnapshotTree, TreeSnapshot
from volumes.drivers.base import TreeChange
from volumes.models import Snapshot, Volume

logger = logging.getLogger(__name__)


def load_tree(volume: Volume, *, head_on: Snapshot | None | bool = False) -> SnapshotTree:
    """The volume's tree as a driver sees it, from its snapshot rows (hidden ones too), oldest first.

    `head_on` overrides where the head sits (a rollback's target once the head was reset).
    """
    rows = selectors.snapshot_rows(volume=volume)
    pinned = set(Snapshot.objects.filter(volume=volume, backups__isnull=False).values_list("pk", flat=True))
    by_pk = {r.pk: str(r.uuid) for r in rows}
    snapshots = tuple(
        TreeSnapshot(
            id=str(r.uuid),
            name=r.layer_name,
            parent=by_pk.get(r.parent_id),
            hidden=r.status == SnapshotStatus.HIDDEN,
            clones=r.clone_count,
            pinned=r.pk in pinned,
            label=r.name,
        )
        for r in rows
    )
    head = volume.current_snapshot_id if head_on is False else (head_on.pk if head_on else None)
    return SnapshotTree(volume=volume.image_name, snapshots=snapshots, head_on=by_pk.get(head))


class OperationJournal(dict):
    """The driver's journal for one operation: kept in its params, each assignment saved at once."""

    def __init__(self, operation: Operation):
        super().__init__(operation.params.get("journal") or {})
        self.operation = operation

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.operation.params["journal"] = dict(self)
        Operation.objects.filter(pk=self.operation.pk).update(params=self.operation.params)


def checkpoint_for(reporter: Reporter):
    """A driver checkpoint that stops the work once another worker took the operation over."""

    def checkpoint() -> None:
        if reporter.lost:
            raise errors.InternalError(desc="lost the operation's lease; the new owner finishes the work")

    return checkpoint


def progress_for(reporter: Reporter):
    def progress(percent: float, _done: int = 0, _total: int = 0) -> None:
        reporter.progress(percent, force=percent >= 100.0)

    return progress


def keep_change(operation: Operation, volume: Volume, change: TreeChange) -> None:
    """Remember what the run did, for `succeed` (which must not touch storage again)."""
    operation.params["change"] = {
        "gone": change.gone,
        "how": change.how,
        "damaged": change.damaged,
        "kept": change.kept,
    }
    operation.params.setdefault("sizes", {}).update(change.sizes)
    operation.params["used"] = change.used
    if change.stopped:
        audit_stopped(operation, volume, change.stopped)


def audit_stopped(operation: Operation, volume: Volume, reason: str) -> None:
    logger.warning("collecting hidden snapshots of volume %s stopped: %s", volume.uuid, reason)
    audit_of(
        volume,
        OperationContext.of(operation),
        action="snapshot.merge_hidden.stopped",
        result="failed",
        message=reason,
    )


def settle_change(operation: Operation, volume: Volume, change: dict) -> None:
    """Apply to the database, in order, the snapshots whose data the driver says is gone."""
    for snapshot_uuid in change.get("gone", []):
        node = Snapshot.objects.filter(volume=volume, uuid=snapshot_uuid).first()
        if node is None:
            continue
        # Whoever read this snapshot now reads the one it was taken on.
        children = list(Snapshot.objects.filter(parent=node).values_list("uuid", flat=True))
        into_head = Volume.objects.filter(pk=volume.pk, current_snapshot=node).exists()
        Snapshot.objects.filter(parent=node).update(parent_id=node.parent_id, modified=timezone.now())
        if into_head:
            Volume.objects.filter(pk=volume.pk).update(current_snapshot_id=node.parent_id)
        # Deleted linked clones may still name the snapshot (PROTECT): they no longer read it.
        Volume.objects.filter(parent_snapshot_id=node.pk).exclude(state__in=LIVE_STATES).update(
            parent_snapshot=None
        )
        status = node.status
        node.delete()
        how = change.get("how", {}).get(snapshot_uuid, "removed")
        readers = (["the head"] if into_head else []) + [f"snapshot {c}" for c in children]
        audit(
            OperationContext.of(operation),
            action="snapshot.remove" if how == "removed" else "snapshot.merge",
            object_type="snapshot",
            object_uuid=snapshot_uuid,
            volume_id=volume.pk,
            from_state=str(SnapshotStatus(status).label),
            to_state="gone",
            message=(
                f"{node.name!r}: data {how}"
                + (
                    f"; {', '.join(readers)} now read{'s' if len(readers) == 1 else ''} its parent"
                    if readers
                    else ""
                )
            ),
        )


def write_sizes(operation: Operation) -> None:
    for snapshot_uuid, size in (operation.params.get("sizes") or {}).items():
        Snapshot.objects.filter(uuid=snapshot_uuid).update(size=size)
