"""Exports, restores, pool space and inventory of a qcow2 directory pool: the qcow2 side of the
driver interface's pool and exports sections, mixed into `Qcow2DirectoryDriver`.

Kept apart from the snapshot-tree code of the driver so the two evolve without touching each other;
it relies only on the driver's `path`, `_name_of`, `_partial_path` and `_ensure_dir`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import replace

from sharestore import errors
from volumes.drivers import marker, nbd, qemu
from volumes.drivers.base import (
    ContentReader,
    ExportOptions,
    Extent,
    PoolSpace,
    ProgressCallback,
    StoredObject,
)
from volumes.drivers.paths import writable_directory

# An export is written through the page cache without flushes and fsynced once by whoever publishes
# it: the file is not a backup until then. Measured in bench/backup.py with cold caches, this beat
# O_DIRECT (`-t none -T none`) for both writing and restoring.
EXPORT_CACHE = "unsafe"
DELTA_SUFFIX = ".delta"


def _percent_only(progress: ProgressCallback):
    def on_progress(percent: float) -> None:
        progress(percent, 0, 0)

    return on_progress


def _accept_export_backing(path: str, raw: str) -> None:
    # An incremental export names its base by bare file name in its own directory, never by path:
    # anything else could steer qemu-img to another file or host.
    if os.path.isabs(raw) or "/" in raw or ":" in raw:
        raise errors.StorageError(
            reason=f"export {os.path.basename(path)} names an unexpected backing {raw!r}"
        )


class LayerExports:
    """Exports, restores, space and inventory of a pool that is a directory of qcow2 files."""

    root: str

    # -- exports ---------------------------------------------------------------------------------

    def _source(self, image: str) -> str:
        path = self.path(image)
        if not os.path.isfile(path):
            raise errors.StorageError(reason=f"image {image} is missing")
        return path

    def _since_path(self, source: str, since: str | None) -> str | None:
        """The file of snapshot image `since` if it is in `source`'s backing chain, else None."""
        if since is None:
            return None
        since_path = os.path.normpath(self.path(since))
        if not os.path.isfile(since_path):
            return None
        return since_path if since_path in qemu.walk_chain(source)[1:] else None

    def _export(
        self, image: str, target_path: str, options: ExportOptions, progress: ProgressCallback
    ) -> None:
        source = self._source(image)
        target_path = os.path.normpath(target_path)
        qemu.unlink(target_path)
        if options.base_export is None:
            try:
                qemu.convert(
                    source,
                    target_path,
                    cache=EXPORT_CACHE,
                    compress=options.compress,
                    progress=_percent_only(progress),
                )
            except BaseException:
                qemu.unlink(target_path)
                raise
            return
        self._export_changes(source, target_path, options, progress)

    def _export_changes(
        self, source: str, target: str, options: ExportOptions, progress: ProgressCallback
    ) -> None:
        """Write what differs between `source` and the base export (`options.base_export`) as an
        overlay on it.

        An empty overlay on `source` is rebased (safe mode: content compared) onto what the base export
        holds, so it gains exactly the clusters whose content differs. When `since` (the base export's
        snapshot layer) is still in `source`'s chain, the rebase targets it and qemu-img reads only the
        layers above it; the overlay is then repointed, metadata only, to the base export, whose content
        is the same. Otherwise the rebase compares with the base export directly (reads the whole disk).
        `convert -B` alone is not used: it copies the clusters allocated in the source's top layer only,
        which loses data when the change since the base spans several layers.
        """
        base, since, compress = os.path.normpath(options.base_export), options.since, options.compress
        if os.path.dirname(base) != os.path.dirname(target):
            raise errors.StorageError(reason=f"base export {base} is not in the directory of {target}")
        if not os.path.isfile(base):
            raise errors.StorageError(reason=f"base export {os.path.basename(base)} is missing")
        base_ref = os.path.basename(base)
        delta = target + DELTA_SUFFIX if compress else target
        since_path = self._since_path(source, since)
        size = int(qemu.info(source)["virtual-size"])
        qemu.unlink(delta)

        def stage(percent: float) -> None:
            progress(percent * 0.5 if compress else percent, 0, 0)

        try:
            qemu.create(delta, size, backing=source)
            if since_path is not None:
                qemu.rebase(delta, since_path, progress=stage)
                qemu.rebase(delta, base_ref, safe=False)
            else:
                qemu.rebase(delta, base_ref, progress=stage)
            if compress:
                # The delta's own clusters are exactly the change: `convert -B` copies those, compressed.
                qemu.convert(
                    delta,
                    target,
                    compress=True,
                    backing=base_ref,
                    progress=lambda p: progress(50 + p * 0.5, 0, 0),
                )
                qemu.unlink(delta)
        except BaseException:
            qemu.unlink(delta)
            qemu.unlink(target)
            raise

    def changed_extents(self, image: str, *, since: str | None = None) -> list[Extent] | None:
        source = self._source(image)
        if since is None:
            # Anything not reported as reading zeros may hold data, including what qemu cannot vouch for.
            return [Extent(e.start, e.length) for e in nbd.image_map(source) if not e.zero]
        since_path = self._since_path(source, since)
        if since_path is None:
            return None
        # What the layers above `since` allocate: `depth` counts layers from the top of the chain.
        depth = qemu.walk_chain(source).index(since_path)
        return [Extent(e.start, e.length) for e in nbd.image_map(source) if e.present and e.depth < depth]

    def open_reader(self, image: str) -> contextlib.AbstractContextManager[ContentReader]:
        return nbd.serve(self._source(image))

    def restore_export(
        self, export_path: str, name: str, size: int, tag: str, progress: ProgressCallback
    ) -> str:
        if not isinstance(export_path, str) or not os.path.isabs(export_path) or "\x00" in export_path:
            raise errors.StorageError(reason=f"invalid export path {export_path!r}")
        if not os.path.isfile(export_path):
            raise errors.StorageError(reason=f"export {os.path.basename(export_path)} is missing")
        # Every file of the chain is named as exports name their bases before qemu-img opens the chain.
        qemu.walk_chain(export_path, accept=_accept_export_backing)
        virtual_size = int(qemu.info(export_path)["virtual-size"])
        if size < virtual_size:
            raise errors.CapacityTooSmall(capacity=size, virtual_size=virtual_size)
        self._ensure_dir(name)
        partial = self._partial_path(name, tag)
        try:
            qemu.convert(export_path, partial, cache=EXPORT_CACHE, progress=_percent_only(progress))
            if size > virtual_size:
                qemu.resize(partial, size)
        except BaseException:
            qemu.unlink(partial)
            raise
        return self._name_of(partial)

    # -- pool ------------------------------------------------------------------------------------

    def space(self) -> PoolSpace:
        st = os.statvfs(self.root)
        return PoolSpace(total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)

    def validate_location(self) -> str:
        return writable_directory(self.root)

    # -- inventory -------------------------------------------------------------------------------
    # Partial writes are the files named `.tmp-<image>` (a publish outside an operation) or
    # `.tmp-<image>.<tags>` (an attempt's publish or copy, `qemu.tmp_sibling`); every other file is
    # an image. Each file's metadata is read once, and
    # the chains are followed in what was read, so an inventory costs one `qemu-img info` per image
    # (and the driver's count of its L2 tables, `usage`) at any chain depth.

    def _all_files(self) -> list[str]:
        names = []
        for directory, _dirs, files in os.walk(self.root):
            for file_name in files:
                if directory == self.root and file_name == marker.MARKER_NAME:
                    continue  # the pool identity marker is no image
                names.append(os.path.relpath(os.path.join(directory, file_name), self.root))
        return sorted(names)

    def _partials_of(self, name: str) -> list[str]:
        return [self._name_of(p) for p in qemu.partials_of(self.path(name))]

    def _describe(self, name: str, partial_of: str | None, now: float) -> StoredObject | None:
        path = self.path(name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        size, age = (st.st_blocks * 512) or st.st_size, max(now - st.st_mtime, 0.0)
        if partial_of is not None or not stat.S_ISREG(st.st_mode):
            return StoredObject(name=name, partial_of=partial_of, size=size, age=age)
        try:
            data = qemu.info(path)
            backing = qemu.backing_path(path, data)
            return StoredObject(
                name=name,
                size=size,
                age=age,
                virtual_size=int(data["virtual-size"]),
                allocated=self.usage(name),
                backing=None if backing is None else self._name_of(backing),
            )
        except errors.ServiceError as exc:
            return StoredObject(name=name, size=size, age=age, error=exc)

    @staticmethod
    def _partial_target(name: str, images: set[str]) -> str:
        directory, base = os.path.split(name)
        rest = os.path.join(directory, base[len(qemu.TMP_PREFIX) :])
        if rest in images:
            return rest  # `.tmp-<image>`: a plain publish of an image that exists
        return qemu.partial_target(name) or rest  # `.tmp-<image>.op12-a3[.a3-1f2e3d4c]`

    def inventory(self, names: Iterable[str] | None = None) -> list[StoredObject]:
        now = time.time()
        if names is not None:
            found = []
            for name in names:
                for candidate, partial_of in [(name, None), *((p, name) for p in self._partials_of(name))]:
                    described = self._describe(candidate, partial_of, now)
                    if described is not None:
                        found.append(described)
            return found
        if not os.path.isdir(self.root):
            # os.walk would report an empty pool, and reconcile would call every image missing.
            raise errors.PoolUnavailable(pool=self.root, reason="does not exist")
        files = self._all_files()
        images = {n for n in files if not os.path.basename(n).startswith(qemu.TMP_PREFIX)}
        objects = []
        for name in files:
            described = self._describe(
                name, None if name in images else self._partial_target(name, images), now
            )
            if described is not None:
                objects.append(described)
        return self._with_reads(objects)

    @staticmethod
    def _with_reads(objects: list[StoredObject]) -> list[StoredObject]:
        backing = {o.name: o.backing for o in objects if not o.partial and o.error is None}
        result = []
        for obj in objects:
            reads, current = [], backing.get(obj.name)
            # Ends past a layer that is missing, unreadable or outside the pool, or at a loop.
            while current is not None and current not in reads and current != obj.name:
                reads.append(current)
                current = backing.get(current)
            result.append(replace(obj, reads=tuple(reads)) if reads else obj)
        return result

    def remove_object(self, name: str) -> bool:
        path = self.path(name)
        removed = qemu.unlink(path)
        directory = os.path.dirname(path)
        # Only directories below the top level belong to one volume (`snapshots/<volume>/`).
        if name.count("/") >= 2:
            with contextlib.suppress(OSError):
                if not os.listdir(directory):
                    os.rmdir(directory)
                    qemu.fsync_parent(directory)
        return removed
