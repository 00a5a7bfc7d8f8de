"""Reads of the operator console's per-volume page: the snapshot tree, clones, backups and the
timeline of one volume in a bounded number of queries."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Q

from volumes.choices import LIVE_STATES
from volumes.models import Snapshot, Volume

# -- the per-volume page ------------------------------------------------------------------------------


@dataclass
class TreeNode:
    """One snapshot in the page's tree, with its children, linked clones and whether head sits on it."""

    snapshot: Snapshot
    children: list[TreeNode] = field(default_factory=list)
    clones: list[Volume] = field(default_factory=list)
    head_here: bool = False


@dataclass
class VolumePage:
    """Everything the per-volume page shows besides the volume's own fields."""

    roots: list[TreeNode]
    head_at_root: bool
    snapshot_count: int
    clones: list[Volume]
    backups: list
    events: list
    operations: list


def volume_page(
    volume: Volume, *, event_limit: int = 200, operation_limit: int = 50, backup_limit: int = 100
) -> VolumePage:
    """The snapshot tree, clones, backups and timeline of one volume (a fixed number of queries)."""
    snapshots = list(
        volume.snapshots.annotate(
            live_clone_count=Count("linked_clones", filter=Q(linked_clones__state__in=LIVE_STATES))
        ).order_by("created", "id")
    )
    nodes = {s.pk: TreeNode(snapshot=s) for s in snapshots}
    roots: list[TreeNode] = []
    for snapshot in snapshots:
        node = nodes[snapshot.pk]
        node.head_here = snapshot.pk == volume.current_snapshot_id
        parent = nodes.get(snapshot.parent_id) if snapshot.parent_id else None
        (parent.children if parent else roots).append(node)
    clones = list(
        Volume.objects.filter(Q(parent_snapshot__volume=volume) | Q(source_volume=volume))
        .exclude(pk=volume.pk)
        .select_related("parent_snapshot", "pool")
        .order_by("created", "id")
    )
    for clone in clones:
        if clone.parent_snapshot_id in nodes:
            nodes[clone.parent_snapshot_id].clones.append(clone)
    # Backups live in another app that depends on this one: reach them through the reverse relation.
    related_backups = getattr(volume, "backups", None)
    backups = (
        list(related_backups.select_related("backup_point").order_by("-created", "-id")[:backup_limit])
        if related_backups is not None
        else []
    )
    events = list(volume.events.select_related("operation").order_by("-created", "-id")[:event_limit])
    operations = list(volume.operations.order_by("-created", "-id")[:operation_limit])
    return VolumePage(
        roots=roots,
        head_at_root=volume.current_snapshot_id is None or volume.current_snapshot_id not in nodes,
        snapshot_count=len(snapshots),
        clones=clones,
        backups=backups,
        events=events,
        operations=operations,
    )
