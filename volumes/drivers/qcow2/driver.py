"""A pool that is a directory of qcow2 images, driven through the qemu layer (`volumes.drivers.qemu`).

This module holds what every image needs (names, create, import, inspect); the snapshot tree lives in
`tree.py` (with the pure planner `plan.py`) and clones in `clones.py`, mixed into the one driver class.
"""

from __future__ import annotations

import errno
import os
import stat

from sharestore import errors
from volumes.drivers import marker, probe, qemu
from volumes.drivers.base import ImageInfo, ImportSource, ProgressCallback, StorageDriver
from volumes.drivers.paths import path_inside
from volumes.drivers.qcow2.clones import LayerClones
from volumes.drivers.qcow2.export import LayerExports
from volumes.drivers.qcow2.header import allocated_bytes
from volumes.drivers.qcow2.tree import LayerTree
from volumes.drivers.qemu import supports_direct_io

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


def _not_regular(kind: str) -> errors.ImportRejected:
    return errors.ImportRejected(reason=f"backing_file is not a regular file ({kind})")


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class Qcow2DirectoryDriver(LayerTree, LayerClones, LayerExports, StorageDriver):
    """Images are qcow2 files below the pool directory; backing references are relative."""

    def path(self, name: str) -> str:
        """Map an image name to its file, refusing anything that would leave the pool."""
        return path_inside(self.root, name, what="image")

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

    def mark_identity(
        self, pool_uuid: str, *, name: str = "", adopt: bool = False, force: bool = False
    ) -> bool:
        if adopt:
            if marker.read_marker(self.root) is not None:
                marker.check_marker(self.root, pool_uuid)
                return False
            if not force and not any(entry != marker.MARKER_NAME for entry in os.listdir(self.root)):
                raise errors.PoolIdentityMismatch(
                    pool=pool_uuid,
                    path=self.root,
                    reason="the directory is empty (is the share mounted?); pass force to mark it anyway",
                )
        marker.write_marker(self.root, pool_uuid, name=name)
        return True

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
            allocated=self.usage(name),
            backing=data.get("backing-filename"),
        )

    def usage(self, name: str) -> int:
        # One layer's allocated data clusters, counted from its L1/L2 tables as `qemu-img check` counts
        # them (header.py): a few reads of this one file. A file that reader does not vouch for goes to
        # a single-layer `json:` check. Neither opens the backing file.
        path = self.path(name)
        counted = allocated_bytes(path)
        return counted if counted is not None else qemu.layer_allocated(path)

    def create_volume(self, name: str, size: int) -> ImageInfo:
        final = self.path(name)
        if os.path.isfile(final):
            return self.info(name)
        with qemu.publishing(final, publish_with=self._publish) as tmp:
            qemu.create(tmp, size)
        return self.info(name)

    def delete_image(self, name: str) -> bool:
        # Partials first, then the image: removing the last file of `snapshots/<volume>/` removes
        # that directory too, and a repeat after a crash finishes the work.
        removed = self.discard_partials(name) > 0
        return self.remove_object(name) or removed

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
            # O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; fstat refuses it next.
            fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise errors.ImportRejected(reason="backing_file does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
                raise _not_regular("a socket or an unconnected device") from None
            raise errors.ImportRejected(reason=f"backing_file cannot be opened: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise _not_regular(_KINDS.get(stat.S_IFMT(mode), "not a file"))
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
        # text files and VMDK descriptors that name other host files. Only qcow2 and raw import
        # faithfully; other containers and text are refused rather than copied as raw bytes.
        fmt = probe.sniff(fd, os.fstat(fd).st_size)
        if isinstance(fmt, probe.Refused):
            raise errors.ImportFormatUnsupported(format=fmt.name, format_cn=fmt.name_cn)
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
        try:
            needs = int(qemu.measure(source, fmt=fmt, pass_fds=(fd,), untrusted=True)["required"])
        except (errors.StorageError, KeyError, ValueError):
            needs = virtual_size  # what a fully written copy would take
        return ImportSource(path=resolved, format=fmt, virtual_size=virtual_size, needs=needs)

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

    # -- layer inspection ------------------------------------------------------------------------

    def _name_of(self, path: str) -> str:
        root = os.path.normpath(self.root)
        if path.startswith(root + "/"):
            return os.path.relpath(path, root)
        return path

    def backing_name(self, name: str) -> str | None:
        backing = qemu.backing_path(self.path(name))
        return None if backing is None else self._name_of(backing)

    def backing_chain(self, name: str) -> list[str]:
        """`name` and every image under it, top first, read one layer at a time (never --backing-chain).

        Not part of `StorageDriver`: qcow2 tests and benchmarks check layer chains with it."""
        return [self._name_of(p) for p in qemu.walk_chain(self.path(name))]

    def write_pattern(self, name: str, chunks: list[tuple[int, int, int]]) -> None:
        qemu.io_write(self.path(name), chunks)

    def read_matches(self, name: str, offset: int, length: int, byte: int) -> bool:
        return qemu.io_read_matches(self.path(name), offset, length, byte)
