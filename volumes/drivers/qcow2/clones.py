"""The qcow2 driver's clones: linked clones are overlays, full clones and flattens are copies.

A linked clone names its base relative to its own directory, also across pools: right on a host only
when that host mounts both pools at the same relative position as the workers (`link_reachable`; the
service checks every host's `PoolMount` rows with it, docs/clones.md). Copies are written under a
partial name tagged per attempt and published by one rename.
"""

from __future__ import annotations

import os

from sharestore import errors
from volumes.drivers import qemu
from volumes.drivers.base import (
    Checkpoint,
    FlattenResult,
    ImageInfo,
    ProgressCallback,
    SnapshotSource,
    SnapshotTree,
    StorageDriver,
)

# A full copy reads its source through the page cache and writes without flushes, then the partial is
# fsynced once before it is published (it is never usable before). From a cold cache this beat
# O_DIRECT on both ends (`-t none -T none`) by 20-35 % here: bench/clone.py prints both.
COPY_CACHE, COPY_SOURCE_CACHE = "unsafe", "writeback"
COPY_CACHE_ARGS = ("-t", COPY_CACHE, "-T", COPY_SOURCE_CACHE)  # what bench/clone.py compares against


class LayerClones:
    """Clone and flatten methods of the directory driver (mixed into Qcow2DirectoryDriver)."""

    # A reference to an image is its absolute path: pools of this driver are directories that every
    # worker reaches.

    def image_ref(self, name: str) -> str:
        return os.path.abspath(self.path(name))

    def _source_path(self, source: SnapshotSource) -> str:
        if not self.can_link_from(source.driver):
            raise errors.StorageError(reason=f"{type(source.driver).__name__} snapshots cannot be read here")
        return self._check_ref(source.driver.image_ref(source.snapshot))

    def _check_ref(self, ref: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("/") or "\x00" in ref:
            raise errors.StorageError(reason=f"invalid image reference {ref!r}")
        if not os.path.isfile(ref):
            raise errors.StorageError(reason=f"image {ref} is missing")
        return os.path.normpath(ref)

    def can_link_from(self, source: StorageDriver) -> bool:
        return isinstance(source, LayerClones)

    def link_reachable(self, source: StorageDriver, source_mount: str, mount: str) -> bool:
        # The overlay stores the path from this pool's directory to the source pool's, as the workers
        # see them; a host follows it from its own mount of this pool.
        expected = os.path.relpath(os.path.normpath(source.root), os.path.normpath(self.root))
        return os.path.relpath(os.path.normpath(source_mount), os.path.normpath(mount)) == expected

    def linked_clone(self, name: str, source: SnapshotSource) -> ImageInfo:
        base = self._source_path(source)
        final = self.path(name)
        directory = os.path.dirname(final)
        if os.path.isfile(final):
            found = qemu.backing_path(final)
            if found is None or os.path.realpath(found) != os.path.realpath(base):
                raise errors.StorageError(reason=f"{name} exists and is not an overlay on {base}: kept")
            return self.info(name)
        self._ensure_dir(name)
        # `..` is resolved by the kernel after symlinks: compute it between the real directories,
        # then check that it leads back to the base from where the clone sits.
        relative = os.path.relpath(os.path.realpath(base), os.path.realpath(directory))
        if os.path.realpath(os.path.join(directory, relative)) != os.path.realpath(base):
            raise errors.StorageError(reason=f"no relative path from {directory} reaches {base}")
        size = int(qemu.info(base)["virtual-size"])
        with qemu.publishing(final, publish_with=self._publish) as tmp:
            qemu.create(tmp, size, backing=relative)
        return self.info(name)

    def _needs(self, path: str) -> int:
        # A protocol name or a missing layer is refused before qemu-img opens the whole chain.
        qemu.walk_chain(path)
        return int(qemu.measure(path)["required"])

    def copy_needs(self, source: SnapshotSource) -> int:
        if self._foreign(source):
            return source.driver.copy_needs(source)
        return self._needs(self._source_path(source))

    def _foreign(self, source: SnapshotSource) -> bool:
        """A snapshot of another kind of pool (Ceph RBD) that qemu-img reads by its protocol name:
        full clones copy from it (cross-kind moves); linked clones cannot read it."""
        return not self.can_link_from(source.driver) and hasattr(source.driver, "qemu_source")

    def _partial_path(self, name: str, tag: str) -> str:
        if not tag or not all(c.isalnum() or c == "-" for c in tag):
            raise errors.StorageError(reason=f"invalid partial tag {tag!r}")
        return qemu.tmp_sibling(self.path(name), f".{tag}")

    def _flat_copy(
        self, source: str, name: str, tag: str, progress: ProgressCallback, fmt: str = "qcow2"
    ) -> str:
        """Copy `source`'s guest-visible content (its whole chain) into a new partial of `name`."""
        if fmt == "qcow2":
            qemu.walk_chain(source)
        self._ensure_dir(name)
        partial = self._partial_path(name, tag)

        def on_progress(percent: float) -> None:
            progress(percent, 0, 0)

        try:
            qemu.convert(
                source,
                partial,
                fmt=fmt,
                cache=COPY_CACHE,
                source_cache=COPY_SOURCE_CACHE,
                progress=on_progress,
            )
        except BaseException:
            self._unlink(partial)
            raise
        return self._name_of(partial)

    def full_clone(self, source: SnapshotSource, name: str, tag: str, progress: ProgressCallback) -> str:
        if self._foreign(source):
            qemu_name, fmt = source.driver.qemu_source(source.snapshot)
            return self._flat_copy(qemu_name, name, tag, progress, fmt=fmt)
        return self._flat_copy(self._source_path(source), name, tag, progress)

    def publish_partial(self, partial: str, name: str) -> None:
        partial_path, final = self.path(partial), self.path(name)
        if os.path.dirname(partial_path) != os.path.dirname(final):
            raise errors.StorageError(reason=f"{partial} is not a partial of {name}")
        if not os.path.isfile(partial_path):
            raise errors.StorageError(reason=f"partial {partial} is gone (removed by a later attempt)")
        self._publish(partial_path, final)

    def discard_partials(self, name: str) -> int:
        # Every attempt's: each copy has its own tag (qemu.partial_target recognises them all).
        return qemu.discard_partials(self.path(name))

    # -- flatten --------------------------------------------------------------------------------------
    # A linked clone reads its origin through its own root layers: its oldest snapshot layers, or the
    # head when no snapshot of its own is under it. Each is replaced by a flat copy of itself (with
    # everything under it), so its content and every layer above it stay the same.

    @staticmethod
    def _root_layers(volume: str, tree: SnapshotTree) -> list[str]:
        names = [s.name for s in tree.snapshots if s.parent is None]
        if tree.head_on is None:
            names.append(volume)
        return names

    def flatten_needs(self, volume: str, tree: SnapshotTree) -> int:
        return sum(self._needs(self.image_ref(name)) for name in self._root_layers(volume, tree))

    def flatten(
        self, volume: str, tree: SnapshotTree, *, tag: str, progress: ProgressCallback, checkpoint: Checkpoint
    ) -> FlattenResult:
        names = self._root_layers(volume, tree)
        for index, name in enumerate(names):
            if self.backing_name(name) is None:
                continue  # replaced by an earlier attempt
            # A dead attempt's partial: ours now, and it must not count against free space.
            self.discard_partials(name)

            def on_progress(percent: float, _done: int = 0, _total: int = 0, index: int = index) -> None:
                progress((index + percent / 100.0) / len(names) * 100.0, 0, 0)

            partial = self._flat_copy(self.image_ref(name), name, tag, on_progress)
            try:
                checkpoint()
            except BaseException:
                # Another worker owns the work now and makes its own copy: leave it nothing of ours.
                self._unlink(self.path(partial))
                raise
            self.publish_partial(partial, name)
        return self._flatten_state(volume, tree)

    def flatten_recover(self, volume: str, tree: SnapshotTree) -> FlattenResult:
        names = self._root_layers(volume, tree)
        for name in names:
            self.discard_partials(name)
        return self._flatten_state(volume, tree)

    def _flatten_state(self, volume: str, tree: SnapshotTree) -> FlattenResult:
        names = self._root_layers(volume, tree)
        return FlattenResult(
            # What the files show decides: a copy already published made that layer independent.
            independent=all(self.backing_name(name) is None for name in names if self.exists(name)),
            sizes={s.name: self.usage(s.name) for s in tree.snapshots if s.name in names},
            used=self.usage(volume),
        )
