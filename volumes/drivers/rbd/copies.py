"""Clones, partial writes, exports and restores of the RBD driver (mixed into `RbdDriver`).

Linked clones are RBD clones of a snapshot (protected while a clone reads it); full clones, imports
and restores are qemu-img copies into a partial image `.tmp~<tag>~<image>` renamed into place.
Exports are qcow2 files written by qemu-img from `rbd:` names: a full export is a standalone image,
an incremental one an overlay on the base export holding `rbd diff --from-snap`'s extents (or, when
the snapshot it was made from is gone, the clusters whose content differs).
"""

from __future__ import annotations

import contextlib
import glob
import os

from sharestore import errors
from volumes.drivers import base, nbd, qemu
from volumes.drivers.qcow2.export import _accept_export_backing as accept_export_backing
from volumes.drivers.rbd import cli

PIECE = 16 << 20  # bytes of one write (and one NBD read) of an incremental export
BATCH = 32  # pieces per qemu-io process


def _percent(progress: base.ProgressCallback, total: int = 0):
    def on_progress(percent: float) -> None:
        progress(percent, int(total * percent / 100), total)

    return on_progress


def source_of(driver: base.StorageDriver, name: str) -> tuple[str, str]:
    """(qemu name, format) of an image of any driver: RBD images by `rbd:` name, qcow2 files by path."""
    if hasattr(driver, "qemu_source"):
        return driver.qemu_source(name)
    return driver.path(name), "qcow2"


class RbdCopies:
    """The copying half of `RbdDriver`: clones, partials, exports and restores."""

    cluster: cli.Cluster

    # -- partial images --------------------------------------------------------------------------

    def _drop(self, image: str) -> None:
        if cli.image_info(self.cluster, image) is not None:
            cli.remove(self.cluster, image)

    def _copy_in(self, source, fmt, partial, size, total, progress, pass_fds=()) -> None:
        """qemu-img copies `source` into the new image `partial`, grown to `size` if it is smaller."""
        qemu.convert(
            source,
            self.cluster.qemu_name(partial),
            fmt=fmt,
            out_fmt="raw",
            progress=_percent(progress, total),
            pass_fds=pass_fds,
        )
        if size > total:
            cli.resize(self.cluster, partial, size)

    def publish_partial(self, partial: str, name: str) -> None:
        """RBD has no rename-over: the old image is removed first (a crash between leaves the partial,
        and publishing again finishes)."""
        image = self._image(name)
        if cli.image_info(self.cluster, partial) is None:
            if cli.image_info(self.cluster, image) is not None:
                return  # published by an earlier call
            raise errors.StorageError(reason=f"partial {partial} is missing")
        self._drop(image)
        cli.rename(self.cluster, partial, image)

    def discard_partials(self, name: str) -> int:
        suffix = "~" + self._image(name)
        partials = [i for i in cli.list_names(self.cluster) if i.startswith(".tmp~") and i.endswith(suffix)]
        for partial in partials:
            cli.remove(self.cluster, partial)
        return len(partials)

    # -- clones ----------------------------------------------------------------------------------

    def can_link_from(self, source: base.StorageDriver) -> bool:
        """RBD clones reach any pool and namespace of the same cluster (clone v2)."""
        return isinstance(source, RbdCopies) and source.cluster.conf == self.cluster.conf

    def link_reachable(self, source: base.StorageDriver, source_mount: str, mount: str) -> bool:
        """Hosts attach RBD images by name through the cluster: mounts do not matter."""
        return self.can_link_from(source)

    def image_ref(self, name: str) -> str:
        image, snap = self._split(name)
        return f"rbd:{self.cluster.spec(image, snap)}"

    def linked_clone(self, name: str, source: base.SnapshotSource) -> base.ImageInfo:
        image = self._image(name)
        if cli.image_info(self.cluster, image) is None:
            origin = source.driver
            src_image, snap = origin._split(source.snapshot)
            listed = {s["name"]: s for s in cli.snaps(origin.cluster, src_image)}
            if snap not in listed:
                raise errors.StorageError(reason=f"snapshot {source.snapshot} is missing")
            if listed[snap].get("protected") not in ("true", True):
                cli.snap_protect(origin.cluster, src_image, snap)
            # A clone is one RBD call: it is there whole or not at all.
            cli.clone(origin.cluster, src_image, snap, self.cluster, image)
        return self.info(name)

    def copy_needs(self, source: base.SnapshotSource) -> int:
        src = source.driver
        if isinstance(src, RbdCopies):
            image, snap = src._split(source.snapshot)
            return sum(int(e["length"]) for e in cli.diff(src.cluster, image, snap))
        # Another kind of pool (cross-kind): what its own copy would need, its data measured (the
        # directory driver: `qemu-img measure` of the chain). The copy into RBD is as thin: qemu-img
        # writes no zeros into the new image, which reads zeros where nothing was written.
        return src.copy_needs(source)

    def full_clone(
        self, source: base.SnapshotSource, name: str, tag: str, progress: base.ProgressCallback
    ) -> str:
        partial = self._partial(name, tag)
        self._drop(partial)
        qemu_name, fmt = source_of(source.driver, source.snapshot)
        if fmt == "qcow2":
            # A layer of a directory pool: every base it names is checked (no protocol name, nothing
            # missing) before qemu-img opens the chain, as the directory driver's own copies do.
            qemu.walk_chain(qemu_name)
        size = source.driver.info(source.snapshot).virtual_size
        try:
            self._copy_in(qemu_name, fmt, partial, size, size, progress)
        except BaseException:
            # A failed copy leaves nothing (as restore_export): the partial may be most of the volume.
            with contextlib.suppress(Exception):
                self._drop(partial)
            raise
        return partial

    def flatten_needs(self, volume: str, tree: base.SnapshotTree) -> int:
        info = cli.image_info(self.cluster, self._image(volume)) or {}
        parent = info.get("parent")
        if not parent:
            return 0
        where = cli.Cluster(parent["pool"], parent.get("pool_namespace", ""), *self._access())
        return sum(int(e["length"]) for e in cli.diff(where, parent["image"], parent["snapshot"]))

    def flatten(
        self,
        volume: str,
        tree: base.SnapshotTree,
        *,
        tag: str,
        progress: base.ProgressCallback,
        checkpoint: base.Checkpoint,
    ) -> base.FlattenResult:
        """`rbd flatten` copies the parent's data into the clone and its snapshots (deep-flatten)."""
        image = self._image(volume)
        if (cli.image_info(self.cluster, image) or {}).get("parent"):
            checkpoint()
            cli.flatten(self.cluster, image)
        progress(100.0, 0, 0)
        return self.flatten_recover(volume, tree)

    def flatten_recover(self, volume: str, tree: base.SnapshotTree) -> base.FlattenResult:
        info = cli.image_info(self.cluster, self._image(volume)) or {}
        sizes = {s.name: self.usage(s.name) for s in tree.snapshots if self.exists(s.name)}
        return base.FlattenResult(independent=not info.get("parent"), sizes=sizes, used=self.usage(volume))

    # -- exports and restore ---------------------------------------------------------------------

    def _ancestor(self, image: str, snap: str | None, since: str | None) -> str | None:
        """The RBD snapshot of `since` if it is an ancestor of (`image`, `snap`) on the same image."""
        if since is None:
            return None
        since_image, since_snap = self._split(since)
        if since_image != image or since_snap == snap:
            return None
        metadata = cli.meta(self.cluster, image)
        start = metadata.get(f"sharestore.parent.{snap}") if snap else metadata.get("sharestore.head-on")
        chain = self._ancestors(metadata, self._snap_ids(image), start or None)
        return since_snap if since_snap in chain else None

    def _export(
        self, image: str, target_path: str, options: base.ExportOptions, progress: base.ProgressCallback
    ) -> None:
        """With `options.since` an ancestor snapshot of `image`, the overlay holds `rbd diff --from-snap`'s
        extents only; otherwise the clusters whose content differs from the base export (reads the
        whole image)."""
        base_export, compress = options.base_export, bool(options.compress)
        source, _fmt = self.qemu_source(image)
        size = self.info(image).virtual_size
        scratch = target_path + ".delta"
        for leftover in glob.glob(glob.escape(scratch) + "*"):
            qemu.unlink(leftover)  # what an interrupted call left
        if base_export is None:
            qemu.convert(source, target_path, fmt="raw", compress=compress, progress=_percent(progress, size))
            return
        base_name = os.path.basename(base_export)
        rbd_image, snap = self._split(image)
        since = self._ancestor(rbd_image, snap, options.since)
        if since is not None:
            qemu.create(scratch, size, backing=base_name)
            changes = cli.diff(self.cluster, rbd_image, snap, since=since, holes=True)
            self._write_changes(image, scratch, changes, progress)
        else:
            # An empty overlay on the image itself, safely rebased onto the base export, then named
            # by the base's bare file name (same directory).
            qemu.create(scratch, size, backing=source, backing_fmt="raw")
            qemu.rebase(scratch, base_export, backing_fmt="qcow2", progress=_percent(progress, size))
            qemu.rebase(scratch, base_name, safe=False)
        if compress:
            qemu.convert(scratch, target_path, compress=True, backing=base_name, progress=None)
            qemu.unlink(scratch)
        else:
            qemu.rename(scratch, target_path)

    def _write_changes(self, image: str, overlay: str, changes: list[dict], progress) -> None:
        """Copy the changed extents of `image` into `overlay` (holes as zeros), a batch of pieces per
        qemu-io process, each piece's bytes staged in a scratch file `<overlay>.<offset>`."""
        pieces = []
        for extent in changes:
            start, end = int(extent["offset"]), int(extent["offset"]) + int(extent["length"])
            data = extent.get("exists") in ("true", True)
            pieces += [(at, min(PIECE, end - at), data) for at in range(start, end, PIECE)]
        total = sum(length for _at, length, _data in pieces) or 1
        done = 0
        with self.open_reader(image) as reader:
            for first in range(0, len(pieces), BATCH):
                batch = pieces[first : first + BATCH]
                staged = {}
                try:
                    for offset, data in reader.read_many([(at, n) for at, n, has in batch if has]):
                        staged[offset] = f"{overlay}.{offset}"
                        with open(staged[offset], "wb") as handle:
                            handle.write(data)
                    qemu.io_write(overlay, [(at, n, staged.get(at) if has else None) for at, n, has in batch])
                finally:
                    for path in staged.values():
                        qemu.unlink(path)
                done += sum(n for _at, n, _has in batch)
                progress(100.0 * done / total, done, total)

    def changed_extents(self, image: str, *, since: str | None = None) -> list[base.Extent] | None:
        rbd_image, snap = self._split(image)
        from_snap = self._ancestor(rbd_image, snap, since)
        if since is not None and from_snap is None:
            return None
        extents = cli.diff(self.cluster, rbd_image, snap, since=from_snap)
        return [base.Extent(int(e["offset"]), int(e["length"])) for e in extents]

    @contextlib.contextmanager
    def open_reader(self, image: str):
        source, fmt = self.qemu_source(image)
        with nbd.serve(source, fmt=fmt) as client:
            yield client

    def restore_export(
        self, export_path: str, name: str, size: int, tag: str, progress: base.ProgressCallback
    ) -> str:
        usable = isinstance(export_path, str) and os.path.isabs(export_path) and "\x00" not in export_path
        if not usable or not os.path.isfile(export_path):
            raise errors.StorageError(reason=f"export {export_path!r} is missing or not an absolute path")
        # Every file of the chain must name its base as exports do before qemu-img opens the chain.
        qemu.walk_chain(export_path, accept=accept_export_backing)
        virtual_size = int(qemu.info(export_path)["virtual-size"])
        if virtual_size > size:
            raise errors.CapacityTooSmall(capacity=size, virtual_size=virtual_size)
        partial = self._partial(name, tag)
        self._drop(partial)
        try:
            self._copy_in(export_path, "qcow2", partial, size, virtual_size, progress)
        except BaseException:
            with contextlib.suppress(Exception):
                self._drop(partial)
            raise
        return partial
