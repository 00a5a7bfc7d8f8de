"""A pool that is a Ceph RBD pool (or one namespace of it): volumes are RBD images, snapshots are RBD
snapshots of their volume's image (docs/storage.md "Ceph RBD pools").

Names are the service's pool-relative names: `volume/<uuid>` is the RBD image `volume.<uuid>`, a
snapshot `snapshots/<uuid>/<snapshot>` is the RBD snapshot `<snapshot>` of `volume.<uuid>`, and a
partial write of `volume/<uuid>` for attempt `<tag>` is the image `.tmp~<tag>~volume.<uuid>`.
What RBD cannot record by itself is kept in the image's metadata (`rbd image-meta`): the snapshot the
head was last taken on or rolled back to (`sharestore.head-on`) and each snapshot's parent in the tree
(`sharestore.parent.<snapshot>`), so usage is "what changed since the one it was taken on".
"""

from __future__ import annotations

import contextlib
import os
import time

from sharestore import errors
from volumes.drivers import qemu
from volumes.drivers.base import (
    ImageInfo,
    ImportSource,
    Journal,
    PoolSpace,
    ProgressCallback,
    SnapshotTree,
    StorageDriver,
    StoredObject,
    TreeChange,
    TreeWork,
)
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.drivers.rbd import cli
from volumes.drivers.rbd.copies import RbdCopies

PARTIAL = ".tmp~"
MARKER = ".sharestore-pool"
HEAD_ON = "sharestore.head-on"
PARENT = "sharestore.parent."
HEAD_GONE = "sharestore.head-removed"
# An internal snapshot taken right after a rollback: `rbd snap rollback` rewrites every object it
# restores, so the head's own usage is counted from this copy of the restored content instead.
HEAD_BASE = ".head"
CONNECT_TIMEOUT = 15  # seconds a pool validation waits for the cluster


class RbdDriver(RbdCopies, StorageDriver):
    """Volumes as RBD images (format 2, layering), snapshots as RBD snapshots, linked clones as clones."""

    def __init__(self, root: str, pool_uuid: str | None = None):
        super().__init__(root, pool_uuid)
        self.cluster = cli.Cluster.parse(root)

    # -- names -----------------------------------------------------------------------------------

    @staticmethod
    def _image(name: str) -> str:
        if not name or "@" in name or "~" in name or name.count("/") != 1 or name.startswith("snapshots/"):
            raise errors.StorageError(reason=f"invalid image name {name!r}")
        return name.replace("/", ".", 1)

    @staticmethod
    def _name(image: str) -> str:
        return image.replace(".", "/", 1)

    def _split(self, name: str) -> tuple[str, str | None]:
        """(RBD image, snapshot or None) of a volume, snapshot or partial name."""
        if name.startswith(PARTIAL):
            return name, None
        parts = name.split("/")
        if parts[0] == "snapshots" and len(parts) == 3 and all(parts) and "@" not in name:
            return f"volume.{parts[1]}", parts[2]
        return self._image(name), None

    def _partial(self, name: str, tag: str) -> str:
        if "~" in tag or "/" in tag or "@" in tag:
            raise errors.StorageError(reason=f"invalid attempt tag {tag!r}")
        return f"{PARTIAL}{tag}~{self._image(name)}"

    def _partial_of(self, image: str) -> str | None:
        if not image.startswith(PARTIAL):
            return None
        return self._name(image.split("~", 2)[2])

    def qemu_source(self, name: str) -> tuple[str, str]:
        """(qemu name, format) of an image or snapshot: how qemu-img reads it."""
        image, snap = self._split(name)
        return self.cluster.qemu_name(image, snap), "raw"

    def snapshot_name(self, volume: str, snapshot_id: str) -> str:
        return f"snapshots/{volume.split('/', 1)[1]}/{snapshot_id}"

    # -- pool ------------------------------------------------------------------------------------

    def check_available(self, expected_uuid: str | None = None) -> None:
        try:
            names = cli.list_names(self.cluster)
        except errors.ServiceError as exc:
            # The command's last stderr line says why (`error listing images ... (2) No such file or
            # directory` for a namespace that is gone); a service error carries its parameters in params.
            why = (exc.desc or "").strip().splitlines()[-1:] or [exc.params.get("reason") or str(exc)]
            raise errors.PoolUnavailable(pool=self.cluster.scope, reason=why[0]) from None
        expected_uuid = expected_uuid or self.pool_uuid
        if expected_uuid:
            found = cli.meta(self.cluster, MARKER).get("pool_uuid") if MARKER in names else None
            if found != str(expected_uuid):
                raise errors.PoolIdentityMismatch(
                    pool=expected_uuid, path=self.root, reason=f"the pool marker names {found or 'no pool'}"
                )

    def mark_identity(
        self, pool_uuid: str, *, name: str = "", adopt: bool = False, force: bool = False
    ) -> bool:
        names = cli.list_names(self.cluster)
        if adopt:
            if MARKER in names:
                self.check_available(pool_uuid)
                return False
            if not force and not names:
                raise errors.PoolIdentityMismatch(
                    pool=pool_uuid, path=self.root, reason="the pool is empty; pass force to mark it anyway"
                )
        if MARKER not in names:
            cli.create(self.cluster, MARKER, 1 << 20)
        cli.set_meta(self.cluster, MARKER, "name", name or "-")
        cli.set_meta(self.cluster, MARKER, "pool_uuid", str(pool_uuid))
        return True

    def validate_location(self) -> str:
        """Connects: the location is valid when the pool (and namespace) can be listed in time."""
        if self.cluster.conf and not os.path.isfile(self.cluster.conf):
            raise errors.InvalidParameter(
                field="path", reason=f"Ceph configuration file {self.cluster.conf} does not exist"
            )
        try:
            cli.list_names(self.cluster, connect_timeout=CONNECT_TIMEOUT)
        except errors.ServiceError as exc:
            desc = (getattr(exc, "desc", "") or "").strip().splitlines()[-1:] or [str(exc)]
            raise errors.InvalidParameter(
                field="path", reason=f"cannot list the RBD pool: {desc[0]}"
            ) from None
        return self.cluster.location

    def space(self) -> PoolSpace:
        df = cli.cluster_df(self.cluster)
        pool = next((p for p in df.get("pools", []) if p.get("name") == self.cluster.pool), None)
        stats = df.get("stats", {})
        if pool and pool["stats"].get("max_avail"):
            used = int(pool["stats"].get("stored", 0))
            free = int(pool["stats"]["max_avail"])
            return PoolSpace(total=used + free, free=free)
        if stats.get("total_bytes"):
            return PoolSpace(total=int(stats["total_bytes"]), free=int(stats["total_avail_bytes"]))
        # No manager reports usage (a bare test cluster): the figures are unknown, not zero.
        raise errors.StorageError(reason="the cluster reports no capacity (is a ceph-mgr running?)")

    def _listing(self) -> dict[str, dict]:
        """RBD image -> {"size", "parent", "snaps": {name: snapshot_id}} from one `rbd ls -l`."""
        images: dict[str, dict] = {}
        for row in cli.list_long(self.cluster):
            entry = images.setdefault(row["image"], {"size": 0, "parent": None, "snaps": {}})
            if "snapshot" in row:
                if row["snapshot"].startswith("."):
                    continue
                entry["snaps"][row["snapshot"]] = row.get("snapshot_id", 0)
            else:
                entry["size"], entry["parent"] = int(row["size"]), row.get("parent")
        images.pop(MARKER, None)
        return images

    def inventory(self, names=None) -> list[StoredObject]:
        listing = self._listing()
        wanted = None if names is None else list(names)
        found = []
        for image, entry in sorted(listing.items()):
            partial_of = self._partial_of(image)
            if partial_of is not None:
                found.append((partial_of, self._partial_object(image, partial_of, entry)))
                continue
            found.extend((obj.name, obj) for obj in self._image_objects(image, entry))
        if wanted is None:
            return [obj for _name, obj in found]
        ordered = []
        for name in wanted:
            ordered += [obj for key, obj in found if key == name and not obj.partial]
            ordered += [obj for key, obj in found if key == name and obj.partial]
        return ordered

    def _partial_object(self, image: str, partial_of: str, entry: dict) -> StoredObject:
        info = cli.image_info(self.cluster, image) or {}
        stamp = info.get("modify_timestamp") or info.get("create_timestamp")
        age = 0.0
        with contextlib.suppress(ValueError, TypeError):
            age = max(0.0, time.time() - time.mktime(time.strptime(stamp, "%a %b %d %H:%M:%S %Y")))
        used = sum(int(e["length"]) for e in cli.diff(self.cluster, image))
        return StoredObject(name=image, partial_of=partial_of, size=max(used, 1), age=age)

    def _image_objects(self, image: str, entry: dict) -> list[StoredObject]:
        name = self._name(image)
        try:
            metadata = cli.meta(self.cluster, image)
        except errors.ServiceError as exc:
            return [StoredObject(name=name, error=exc)]
        snap_names = {s: self.snapshot_name(name, s) for s in entry["snaps"]}

        def stored(object_name: str, snap: str | None, start: str | None) -> StoredObject:
            chain = self._ancestors(metadata, entry["snaps"], start or None)
            used = self._usage(image, snap, metadata, entry["snaps"])
            backing = snap_names[chain[0]] if chain else self._parent_ref(entry)
            reads = tuple(snap_names[s] for s in chain)
            return StoredObject(object_name, None, used, 0.0, entry["size"], used, backing, reads)

        objects = [stored(snap_names[s], s, metadata.get(PARENT + s)) for s in snap_names]
        if metadata.get(HEAD_GONE) != "1":
            objects.insert(0, stored(name, None, metadata.get(HEAD_ON)))
        return objects

    def _parent_ref(self, entry: dict) -> str | None:
        parent = entry.get("parent")
        if not parent:
            return None
        where = cli.Cluster(parent["pool"], parent.get("pool_namespace", ""))
        return f"rbd:{where.spec(parent['image'], parent['snapshot'])}"

    def remove_object(self, name: str) -> bool:
        image, snap = self._split(name)
        info = cli.image_info(self.cluster, image)
        if info is None:
            return False
        if snap is not None:
            if snap not in {s["name"] for s in cli.snaps(self.cluster, image)}:
                return False
            self._snap_remove(image, snap)
            if not self._snap_ids(image) and cli.meta(self.cluster, image).get(HEAD_GONE) == "1":
                self._remove_image(image)
            return True
        if name.startswith(PARTIAL) or not self._snap_ids(image):
            self._remove_image(image)
            return True
        # The head and its snapshots are one RBD image: the head is only forgotten while snapshots
        # remain, and the image goes with the last of them.
        if cli.meta(self.cluster, image).get(HEAD_GONE) == "1":
            return False
        cli.set_meta(self.cluster, image, HEAD_GONE, "1")
        return True

    def _remove_image(self, image: str) -> None:
        self._snap_remove(image, HEAD_BASE)
        cli.remove(self.cluster, image)

    # -- images ----------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        image, snap = self._split(name)
        if snap is None:
            return cli.image_info(self.cluster, image) is not None
        return cli.image_info(self.cluster, image) is not None and snap in {
            s["name"] for s in cli.snaps(self.cluster, image)
        }

    def info(self, name: str) -> ImageInfo:
        image, snap = self._split(name)
        data = cli.image_info(self.cluster, image)
        if data is None:
            raise errors.StorageError(reason=f"image {name} is missing")
        backing = self._parent_ref({"parent": data.get("parent")})
        return ImageInfo(name, "raw", int(data["size"]), self.usage(name), backing)

    def _snap_ids(self, image: str, *, internal: bool = False) -> dict[str, int]:
        """The image's snapshots (without the internal `.head` unless `internal`) by name."""
        return {
            s["name"]: int(s["id"])
            for s in cli.snaps(self.cluster, image)
            if internal or not s["name"].startswith(".")
        }

    def _ancestors(self, metadata: dict, snap_ids: dict, start: str | None) -> list[str]:
        """The existing snapshots `start` and its recorded ancestors, nearest first."""
        chain, seen = [], set()
        while start and start not in seen:
            seen.add(start)
            if start in snap_ids:
                chain.append(start)
            start = metadata.get(PARENT + start) or None
        return chain

    def _usage(self, image: str, snap: str | None, metadata: dict, snap_ids: dict) -> int:
        base = metadata.get(PARENT + snap) if snap else metadata.get(HEAD_ON)
        since = self._ancestors(metadata, snap_ids, base or None)
        if snap is None and HEAD_BASE in self._snap_ids(image, internal=True):
            since = [HEAD_BASE]
        if not since and (cli.image_info(self.cluster, image) or {}).get("parent"):
            # A clone's own data only (`rbd diff` would list what it reads from its parent too, and
            # walks the parent's whole range): `rbd du`, from the object map, exact to an object.
            return cli.du(self.cluster, image, snap)
        # Whole objects: a snapshot create measures in constant time at any volume size (exact byte
        # ranges would visit every object of the image).
        extents = cli.diff(self.cluster, image, snap, since=since[0] if since else None, whole_objects=True)
        return sum(int(e["length"]) for e in extents)

    def _access(self) -> tuple[str, str, str]:
        return self.cluster.conf, self.cluster.user, self.cluster.keyring

    def usage(self, name: str) -> int:
        image, snap = self._split(name)
        return self._usage(image, snap, cli.meta(self.cluster, image), self._snap_ids(image))

    def access_path(self, mount_path: str, name: str) -> str:
        """What a host attaches: the image's `rbd:` name without cluster options (a host reaches the
        cluster with its own ceph.conf and key); `mount_path` has no meaning for RBD."""
        image, _snap = self._split(name)
        return f"rbd:{self.cluster.spec(image)}"

    def create_volume(self, name: str, size: int) -> ImageInfo:
        image = self._image(name)
        if cli.image_info(self.cluster, image) is None:
            cli.create(self.cluster, image, size)
        return self.info(name)

    def delete_image(self, name: str) -> bool:
        image, snap = self._split(name)
        if snap is not None:
            return self.remove_object(name)
        removed = self.discard_partials(name) > 0
        if cli.image_info(self.cluster, image) is None:
            return removed
        for existing in cli.snaps(self.cluster, image):
            self._snap_remove(image, existing["name"])
        self._remove_image(image)
        return True

    # -- import: vetted as the directory driver vets it, copied by qemu-img into an RBD image ------

    _open_source = Qcow2DirectoryDriver._open_source
    _inspect_fd = Qcow2DirectoryDriver._inspect_fd
    inspect_import = Qcow2DirectoryDriver.inspect_import

    def import_image(
        self, source: ImportSource, allowed_roots: list[str], name: str, size: int, progress: ProgressCallback
    ) -> ImageInfo:
        if self.exists(name):
            return self.info(name)
        # Opened and vetted again (the file may have changed since the request), copied from the fd.
        fd, resolved = self._open_source(source.path, allowed_roots)
        try:
            vetted = self._inspect_fd(fd, resolved)
            problem = vetted.format != source.format and "backing_file changed format since the request"
            if problem:
                raise errors.ImportRejected(reason=problem)
            if vetted.virtual_size > size:
                raise errors.CapacityTooSmall(capacity=size, virtual_size=vetted.virtual_size)
            partial = self._partial(name, "import")
            self._drop(partial)
            source_name = f"file:/proc/self/fd/{fd}"
            self._copy_in(source_name, vetted.format, partial, size, vetted.virtual_size, progress, (fd,))
        finally:
            os.close(fd)
        self.publish_partial(partial, name)
        return self.info(name)

    # -- snapshot tree ---------------------------------------------------------------------------

    def _snap_remove(self, image: str, snap: str) -> None:
        listed = {s["name"]: s for s in cli.snaps(self.cluster, image)}
        if snap not in listed:
            return
        if listed[snap].get("protected") in ("true", True) and not cli.children(self.cluster, image, snap):
            cli.snap_unprotect(self.cluster, image, snap)
        cli.snap_remove(self.cluster, image, snap)

    def snapshot_create(self, volume: str, snapshot: str) -> tuple[int, int]:
        image, snap = self._split(snapshot)
        metadata = cli.meta(self.cluster, image)
        if snap not in self._snap_ids(image):
            cli.set_meta(self.cluster, image, PARENT + snap, metadata.get(HEAD_ON, ""))
            cli.snap_create(self.cluster, image, snap)
        if metadata.get(HEAD_ON) != snap:
            cli.set_meta(self.cluster, image, HEAD_ON, snap)
        self._snap_remove(image, HEAD_BASE)
        return self.usage(snapshot), self.usage(volume)

    def snapshot_create_undo(self, volume: str, snapshot: str) -> None:
        image, snap = self._split(snapshot)
        metadata = cli.meta(self.cluster, image)
        if metadata.get(HEAD_ON) == snap:
            cli.set_meta(self.cluster, image, HEAD_ON, metadata.get(PARENT + snap, ""))
        self._snap_remove(image, snap)

    def head_snapshot(self, volume: str) -> str | None:
        image = self._image(volume)
        metadata = cli.meta(self.cluster, image)
        chain = self._ancestors(metadata, self._snap_ids(image), metadata.get(HEAD_ON) or None)
        return self.snapshot_name(volume, chain[0]) if chain else None

    def snapshot_delete_keeps(self, tree: SnapshotTree, snapshot_id: str) -> bool:
        """RBD snapshots never read each other: only a linked clone keeps a deleted one's data."""
        target = tree.get(snapshot_id)
        return bool(target and target.clones)

    def snapshot_delete(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        """No journal: each RBD step is atomic and repeating it is harmless."""
        if self.snapshot_delete_keeps(tree, snapshot_id):
            return TreeChange(kept=True, used=self.usage(volume))
        target = tree.get(snapshot_id)
        image, snap = self._split(target.name)
        work.checkpoint()
        self._snap_remove(image, snap)
        change = TreeChange(gone=[snapshot_id], how={snapshot_id: "rbd snap rm"})
        return self._collect(volume, tree, change, skip={snapshot_id})

    def snapshot_rollback(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        """No journal: each RBD step is atomic and repeating it is harmless."""
        target = tree.get(snapshot_id)
        image, snap = self._split(target.name)
        work.checkpoint()
        cli.snap_rollback(self.cluster, image, snap)
        self._snap_remove(image, HEAD_BASE)
        cli.snap_create(self.cluster, image, HEAD_BASE)
        cli.set_meta(self.cluster, image, HEAD_ON, snap)
        work.progress(100.0, 0, 0)
        return self._collect(volume, tree, TreeChange(), skip={snapshot_id})

    def _collect(self, volume: str, tree: SnapshotTree, change: TreeChange, skip: set[str]) -> TreeChange:
        """Remove hidden snapshots no linked clone reads any more; record the sizes that changed."""
        for snapshot in tree.snapshots:
            if snapshot.hidden and not snapshot.clones and snapshot.id not in skip:
                image, snap = self._split(snapshot.name)
                try:
                    self._snap_remove(image, snap)
                except errors.StorageError as exc:
                    change.stopped = f"{snapshot.label or snapshot.id}: {exc}"
                    break
                change.gone.append(snapshot.id)
                change.how[snapshot.id] = "rbd snap rm (hidden, unread)"
        for snapshot in tree.snapshots:
            if snapshot.id not in change.gone and self.exists(snapshot.name):
                change.sizes[snapshot.id] = self.usage(snapshot.name)
        change.used = self.usage(volume)
        return change

    def tree_recover(
        self, volume: str, tree: SnapshotTree, *, journal: Journal, deleting: str | None = None
    ) -> TreeChange:
        """Every RBD step is atomic: say which snapshots of the tree are gone from the image."""
        change = TreeChange()
        for snapshot in tree.snapshots:
            if not self.exists(snapshot.name):
                change.gone.append(snapshot.id)
        change.used = self.usage(volume)
        return change

    # -- content by pattern ----------------------------------------------------------------------

    def write_pattern(self, name: str, chunks: list[tuple[int, int, int]]) -> None:
        qemu.io_write(self.qemu_source(name)[0], chunks, fmt="raw")

    def read_matches(self, name: str, offset: int, length: int, byte: int) -> bool:
        return qemu.io_read_matches(self.qemu_source(name)[0], offset, length, byte, fmt="raw")
