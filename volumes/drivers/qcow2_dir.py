"""A pool that is a directory of qcow2 images, driven through the qemu layer (`volumes.drivers.qemu`)."""

from __future__ import annotations

import os
import stat

from sharestore import errors
from volumes.drivers import marker, qemu
from volumes.drivers.base import (
    MERGE_COMMIT,
    MERGE_REBASE,
    ImageInfo,
    ImportSource,
    ProgressCallback,
    StorageDriver,
)
from volumes.drivers.qemu import TMP_PREFIX, fsync_path, supports_direct_io  # noqa: F401  (re-exported)

QCOW2_MAGIC = b"QFI\xfb"
# A full copy reads its source through the page cache and writes without flushes, then the partial is
# fsynced once before it is published (it is never usable before). From a cold cache this beat
# O_DIRECT on both ends (`-t none -T none`) by 20-35 % here: bench/clone.py prints both.
COPY_CACHE, COPY_SOURCE_CACHE = "unsafe", "writeback"
COPY_CACHE_ARGS = ("-t", COPY_CACHE, "-T", COPY_SOURCE_CACHE)  # what bench/clone.py compares against


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class Qcow2DirectoryDriver(StorageDriver):
    """Images are qcow2 files below the pool directory; backing references are relative."""

    def path(self, name: str) -> str:
        """Map an image name to its file, refusing anything that would leave the pool."""
        if (
            not name
            or name.startswith("/")
            or "\x00" in name
            or any(p in ("", ".", "..") for p in name.split("/"))
        ):
            raise errors.StorageError(reason=f"invalid image name {name!r}")
        return os.path.join(self.root, name)

    def _tmp_path(self, name: str) -> str:
        return qemu.tmp_sibling(self.path(name))

    # The file steps go through these three methods so fault-injection tests can count them.

    def _publish(self, tmp: str, final: str) -> None:
        qemu.publish(tmp, final)

    def _rename(self, src: str, dst: str) -> None:
        qemu.rename(src, dst)

    def _unlink(self, path: str) -> None:
        qemu.unlink(path)

    def _ensure_dir(self, name: str) -> None:
        os.makedirs(os.path.dirname(self.path(name)), exist_ok=True)

    def check_available(self, expected_uuid: str | None = None) -> None:
        if not os.path.isdir(self.root):
            raise errors.PoolUnavailable(pool=self.root, reason="directory does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise errors.PoolUnavailable(pool=self.root, reason="directory is not writable")
        expected_uuid = expected_uuid or self.pool_uuid
        if expected_uuid:
            # An empty mount point or another pool's share at this path: refuse before any write.
            marker.check_marker(self.root, expected_uuid)

    def write_marker(self, pool_uuid: str, *, name: str = "") -> None:
        marker.write_marker(self.root, pool_uuid, name=name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.path(name))

    def info(self, name: str) -> ImageInfo:
        # Both reads open this one file: the cost does not grow with the chain under it.
        path = self.path(name)
        data = qemu.info(path)
        return ImageInfo(
            name=name,
            format=data["format"],
            virtual_size=int(data["virtual-size"]),
            allocated=self.allocated_bytes(name),
            backing=data.get("backing-filename"),
        )

    def allocated_bytes(self, name: str) -> int:
        return qemu.layer_allocated(self.path(name))

    def create_volume(self, name: str, size: int) -> ImageInfo:
        final = self.path(name)
        if os.path.isfile(final):
            return self.info(name)
        with qemu.publishing(final, publish_with=self._publish) as tmp:
            qemu.create(tmp, size)
        return self.info(name)

    def delete_image(self, name: str) -> bool:
        removed = False
        for path in (self.path(name), self._tmp_path(name)):
            try:
                os.unlink(path)
                removed = True
            except FileNotFoundError:
                pass
        if removed:
            qemu.fsync_parent(self.path(name))
        return removed

    def access_path(self, mount_path: str, name: str) -> str:
        return os.path.join(mount_path, name)

    # -- import ---------------------------------------------------------------------------------

    def _open_source(self, path: str, allowed_roots: list[str]) -> tuple[int, str]:
        """Open an import source without following symlinks; return (fd, resolved path)."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise errors.ImportRejected(reason="backing_file must be an absolute path")
        if "\x00" in path:
            raise errors.ImportRejected(reason="backing_file contains a NUL byte")
        resolved = os.path.realpath(path)
        roots = [os.path.realpath(r) for r in allowed_roots]
        if not roots:
            raise errors.ImportRejected(reason="no import roots are configured (SHARESTORE_IMPORT_ROOTS)")
        if not _within(resolved, roots):
            raise errors.ImportRejected(reason="backing_file is outside the allowed import roots")
        try:
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errors.ImportRejected(reason="backing_file does not exist") from None
        except OSError as exc:
            raise errors.ImportRejected(reason=f"backing_file cannot be opened: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise errors.ImportRejected(reason="backing_file is not a regular file")
        # What we opened must still be inside the roots (closes the gap between check and use).
        if not _within(os.readlink(f"/proc/self/fd/{fd}"), roots):
            os.close(fd)
            raise errors.ImportRejected(reason="backing_file is outside the allowed import roots")
        return fd, resolved

    def inspect_import(self, path: str, allowed_roots: list[str]) -> ImportSource:
        fd, resolved = self._open_source(path, allowed_roots)
        try:
            return self._inspect_fd(fd, resolved)
        finally:
            os.close(fd)

    def _inspect_fd(self, fd: int, resolved: str) -> ImportSource:
        # Detect the format from the magic ourselves: qemu's probing is fooled by zeroed headers,
        # text files and VMDK descriptors that name other host files. Anything without the qcow2
        # magic is copied as raw bytes, which cannot reach outside the file.
        head = os.pread(fd, 4, 0)
        fmt = "qcow2" if head == QCOW2_MAGIC else "raw"
        source = f"file:/proc/self/fd/{fd}"
        try:
            data = qemu.info(source, fmt=fmt, pass_fds=(fd,), untrusted=True)
        except errors.StorageError as exc:
            raise errors.ImportRejected(reason=f"not a readable {fmt} image", desc=exc.desc) from None
        virtual_size = int(data.get("virtual-size", 0))
        if virtual_size <= 0:
            raise errors.ImportRejected(reason="image is empty")
        if fmt == "qcow2":
            specific = (data.get("format-specific") or {}).get("data") or {}
            if data.get("backing-filename") or data.get("full-backing-filename"):
                raise errors.ImportRejected(
                    reason="qcow2 with a backing file; flatten it first (qemu-img convert -O qcow2)"
                )
            if specific.get("data-file") or specific.get("data-file-raw"):
                raise errors.ImportRejected(reason="qcow2 with an external data-file")
            if data.get("encrypted") or specific.get("encrypt"):
                raise errors.ImportRejected(reason="encrypted qcow2")
            if specific.get("corrupt"):
                raise errors.ImportRejected(reason="qcow2 is marked corrupt")
            try:
                qemu.check(source, pass_fds=(fd,), untrusted=True)
            except errors.StorageError as exc:
                raise errors.ImportRejected(reason="qcow2 fails 'qemu-img check'", desc=exc.desc) from None
        return ImportSource(path=resolved, format=fmt, virtual_size=virtual_size)

    def import_image(
        self, source: ImportSource, allowed_roots: list[str], name: str, size: int, progress: ProgressCallback
    ) -> ImageInfo:
        final = self.path(name)
        if os.path.isfile(final):
            return self.info(name)
        # Open again and re-vet: the file may have changed since the request was accepted.
        fd, resolved = self._open_source(source.path, allowed_roots)
        try:
            vetted = self._inspect_fd(fd, resolved)
            if vetted.format != source.format:
                raise errors.ImportRejected(reason="backing_file changed format since the request")
            if size < vetted.virtual_size:
                raise errors.CapacityTooSmall(capacity=size, virtual_size=vetted.virtual_size)
            total = vetted.virtual_size

            def on_progress(percent: float) -> None:
                progress(percent, int(total * percent / 100), total)

            with qemu.publishing(final, publish_with=self._publish) as tmp:
                # O_DIRECT on both ends was the fastest, steadiest convert here; writeback still
                # flushes at the end, where the default ('unsafe') never does.
                qemu.convert(
                    f"file:/proc/self/fd/{fd}",
                    tmp,
                    fmt=vetted.format,
                    cache="none" if supports_direct_io(os.path.dirname(tmp)) else "writeback",
                    source_cache="none" if supports_direct_io(os.path.dirname(resolved)) else None,
                    progress=on_progress,
                    pass_fds=(fd,),
                )
                if size > vetted.virtual_size:
                    qemu.resize(tmp, size)
        finally:
            os.close(fd)
        return self.info(name)

    # -- inventory ------------------------------------------------------------------------------

    def list_images(self) -> list[str]:
        """Every file below the pool root, as image names (partial writes included)."""
        names = []
        for directory, _dirs, files in os.walk(self.root):
            for file_name in files:
                if directory == self.root and file_name == marker.MARKER_NAME:
                    continue  # the pool identity marker is no image
                names.append(os.path.relpath(os.path.join(directory, file_name), self.root))
        return sorted(names)

    # -- snapshot layers ------------------------------------------------------------------------
    # The head `volume/<v>` and the layers `snapshots/<v>/<s>.qcow2` live at different depths, so a
    # relative backing reference that is right in one directory is wrong in the other: every move
    # between them is followed by `_repoint`, a metadata-only rewrite of the reference to the same
    # file. Each step below is either atomic (rename) or leaves every image's guest-visible content
    # unchanged, and each method starts by looking at what the files show, so calling it again after
    # a crash finishes the work. None of them opens a backing chain: each reads single layers only.

    def _name_of(self, path: str) -> str:
        root = os.path.normpath(self.root)
        if path.startswith(root + "/"):
            return os.path.relpath(path, root)
        return path

    def backing_name(self, name: str) -> str | None:
        backing = qemu.backing_path(self.path(name))
        return None if backing is None else self._name_of(backing)

    def backing_chain(self, name: str) -> list[str]:
        return [self._name_of(p) for p in qemu.walk_chain(self.path(name))]

    def _set_backing(self, path: str, backing: str) -> None:
        """Rewrite the backing reference of `path` to name `backing` (the same file: metadata only)."""
        qemu.rebase(path, qemu.relative_backing(backing, path), safe=False)
        fsync_path(path)

    def _repoint(self, path: str, former_dir: str, data: dict | None = None) -> None:
        """Make the backing reference of `path`, just moved here from `former_dir`, right from here.

        `rebase -u` only rewrites the name, which is safe because the name keeps designating the
        same file; it is never used to drop a layer (that loses the layer's data).
        """
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
            size = int(qemu.info(backing)["virtual-size"])
        with qemu.publishing(final, publish_with=self._publish) as tmp:
            qemu.create(tmp, size, backing=qemu.relative_backing(backing, final))

    def snapshot_freeze(self, head: str, layer: str) -> None:
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
            return
        self._create_overlay(head_path, layer_path, int(data["virtual-size"]))

    def snapshot_unfreeze(self, head: str, layer: str) -> None:
        head_path, layer_path = self.path(head), self.path(layer)
        self._unlink(self._tmp_path(head))
        if not os.path.isfile(layer_path):
            return
        if os.path.isfile(head_path):
            if qemu.backing_path(head_path) != layer_path:
                raise errors.StorageError(reason=f"{head} is not the freeze's overlay on {layer}: kept")
            self._unlink(head_path)
        self._rename(layer_path, head_path)
        self._repoint(head_path, os.path.dirname(layer_path))

    def head_reset(self, head: str, layer: str) -> None:
        layer_path = self.path(layer)
        if not os.path.isfile(layer_path):
            raise errors.StorageError(reason=f"cannot roll back onto {layer}: the layer is missing")
        self._create_overlay(self.path(head), layer_path)

    def layer_remove(self, layer: str) -> None:
        self._unlink(self.path(layer))

    def layer_merge(self, layer: str, dependent: str, strategy: str, progress: ProgressCallback) -> None:
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

    # -- clones ---------------------------------------------------------------------------------
    # A reference to an image is its absolute path: pools of this driver are directories that every
    # worker reaches. An overlay names its base relative to its own directory, also across pools,
    # which is right on a host only when that host mounts both pools at the same relative position
    # (the service checks PoolMount rows first; docs/clones.md).

    def image_ref(self, name: str) -> str:
        return os.path.abspath(self.path(name))

    def _check_ref(self, ref: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("/") or "\x00" in ref:
            raise errors.StorageError(reason=f"invalid image reference {ref!r}")
        if not os.path.isfile(ref):
            raise errors.StorageError(reason=f"image {ref} is missing")
        return os.path.normpath(ref)

    def linked_clone(self, name: str, base_ref: str) -> ImageInfo:
        base = self._check_ref(base_ref)
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

    def copy_needs(self, source_ref: str) -> int:
        source = self._check_ref(source_ref)
        # A protocol name or a missing layer is refused before qemu-img opens the whole chain.
        qemu.walk_chain(source)
        return int(qemu.measure(source)["required"])

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _partial_path(self, name: str, tag: str) -> str:
        if not tag or not all(c.isalnum() or c == "-" for c in tag):
            raise errors.StorageError(reason=f"invalid partial tag {tag!r}")
        return qemu.tmp_sibling(self.path(name), f".{tag}")

    def flat_copy(self, source_ref: str, name: str, tag: str, progress: ProgressCallback) -> str:
        source = self._check_ref(source_ref)
        qemu.walk_chain(source)
        self._ensure_dir(name)
        partial = self._partial_path(name, tag)

        def on_progress(percent: float) -> None:
            progress(percent, 0, 0)

        try:
            qemu.convert(
                source, partial, cache=COPY_CACHE, source_cache=COPY_SOURCE_CACHE, progress=on_progress
            )
        except BaseException:
            self._unlink(partial)
            raise
        return self._name_of(partial)

    def publish_partial(self, partial: str, name: str) -> None:
        partial_path, final = self.path(partial), self.path(name)
        if os.path.dirname(partial_path) != os.path.dirname(final):
            raise errors.StorageError(reason=f"{partial} is not a partial of {name}")
        if not os.path.isfile(partial_path):
            raise errors.StorageError(reason=f"partial {partial} is gone (removed by a later attempt)")
        self._publish(partial_path, final)

    def discard_partials(self, name: str) -> int:
        final = self.path(name)
        directory = os.path.dirname(final)
        plain = os.path.basename(qemu.tmp_sibling(final))
        try:
            entries = os.listdir(directory)
        except FileNotFoundError:
            return 0
        removed = 0
        for entry in entries:
            if entry == plain or entry.startswith(plain + "."):
                try:
                    os.unlink(os.path.join(directory, entry))
                    removed += 1
                except FileNotFoundError:
                    pass
        if removed:
            qemu.fsync_parent(final)
        return removed
