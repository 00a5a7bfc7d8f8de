"""The contract's JSON shapes for snapshots and the snapshot tree, built as plain dicts.

The API shows the tree of visible snapshots. Hidden layers (deleted snapshots that other layers
still read) are skipped over: a snapshot under a hidden layer has the nearest visible ancestor as
its `Parent` ("" when there is none), and the pseudo-node `head` hangs under the nearest visible
snapshot at or above the layer the head sits on. Names key the tree: they are unique among
visible snapshots, never "" (the virtual root) nor "head".
"""

from __future__ import annotations

from volumes.api.representations import epoch
from volumes.choices import SnapshotStatus
from volumes.models import Snapshot, Volume

HEAD = "head"
ROOT = ""


class SnapshotForest:
    """The visible tree over a volume's snapshot rows (from `selectors.snapshot_rows`)."""

    def __init__(self, volume: Volume, rows: list[Snapshot]):
        self.volume = volume
        self.rows = rows
        self.by_id = {r.pk: r for r in rows}
        self.children_of: dict[int | None, list[Snapshot]] = {}
        for row in rows:
            self.children_of.setdefault(row.parent_id, []).append(row)
        self.head_on = volume.current_snapshot_id

    @staticmethod
    def visible(row: Snapshot) -> bool:
        return row.status != SnapshotStatus.HIDDEN

    def visible_parent(self, node_id: int | None) -> str:
        """Name of the nearest visible snapshot at or above `node_id`, or "" (the virtual root)."""
        seen = set()
        while node_id is not None and node_id not in seen:
            seen.add(node_id)
            row = self.by_id.get(node_id)
            if row is None:
                break
            if self.visible(row):
                return row.name
            node_id = row.parent_id
        return ROOT

    def visible_children(self, node_id: int | None) -> list[str]:
        """Visible snapshots right under `node_id` (seen through hidden layers), oldest first, then head."""
        found: list[Snapshot] = []
        head = False
        stack = [node_id]
        seen = set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current == self.head_on:
                head = True
            for child in self.children_of.get(current, []):
                if self.visible(child):
                    found.append(child)
                else:
                    stack.append(child.pk)
        found.sort(key=lambda r: (r.created, r.pk))
        return [r.name for r in found] + ([HEAD] if head else [])

    def visible_rows(self) -> list[Snapshot]:
        return [r for r in self.rows if self.visible(r)]

    def representation(self, row: Snapshot) -> dict:
        """A snapshot object with the contract's keys."""
        clones = getattr(row, "clone_count", 0)
        backups = getattr(row, "backup_count", 0)
        attr = {}
        if clones:
            attr["LinkCloneUsed"] = "LinkCloneUsed"
        if backups:
            attr["BackupUsed"] = "BackupUsed"
        children = self.visible_children(row.pk)
        return {
            "Name": row.name,
            "UUID": str(row.uuid),
            "Volume": str(self.volume.uuid),
            "Desc": row.desc,
            "Status": row.status,
            "Ctime": epoch(row.created),
            "Attr": attr or None,
            "Size": row.size,
            "Children": children or None,
            "Parent": self.visible_parent(row.parent_id),
            "Ref": clones + backups,
        }

    def tree(self) -> dict:
        """`{UUID, Parents, Children, Root}`: every visible snapshot and head in Parents; Children lists
        the nodes that have children, the virtual root "" always."""
        parents: dict[str, str] = {}
        children: dict[str, dict] = {ROOT: {"Children": self.visible_children(None)}}
        for row in self.visible_rows():
            parents[row.name] = self.visible_parent(row.parent_id)
            under = self.visible_children(row.pk)
            if under:
                children[row.name] = {"Children": under}
        parents[HEAD] = self.visible_parent(self.head_on)
        roots = [name for name in children[ROOT]["Children"] if name != HEAD]
        return {"UUID": "", "Parents": parents, "Children": children, "Root": roots[0] if roots else ""}
