"""A pool that is a directory of qcow2 images, driven by qemu-img (Debian's qemu-utils)."""

from __future__ import annotations

import json
import os
import stat
import uuid
from functools import lru_cache

from django.conf import settings

from sharestore import errors
from volumes.drivers import process
from volumes.drivers.base import ImageInfo, ImportSource, ProgressCallback, StorageDriver

QCOW2_MAGIC = b"QFI\xfb"
TMP_PREFIX = ".tmp-"
# Metadata reads of an untrusted image run under this address-space limit, as Cinder does.
INSPECT_ADDRESS_SPACE = 1 << 30
INSPECT_TIMEOUT = 60
CREATE_TIMEOUT = 120
COPY_TIMEOUT = 24 * 3600


def qemu_img() -> str:
    return settings.SHARESTORE_QEMU_IMG


@lru_cache(maxsize=64)
def supports_direct_io(directory: str) -> bool:
    """Whether files in `directory` can be opened with O_DIRECT (tmpfs cannot)."""
    probe = os.path.join(directory, f"{TMP_PREFIX}odirect-{uuid.uuid4().hex}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    else:
        os.close(fd)
        return True
    finally:
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass


def fsync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class Qcow2DirectoryDriver(StorageDriver):
    """Images are qcow2 files below the pool directory; backing references are relative."""

    def path(self, name: str) -> str:
        """Map an image name to its file, refusing anything that would leave the pool."""
        if not name or name.startswith("/") or "\x00" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise errors.StorageError(reason=f"invalid image name {name!r}")
        return os.path.join(self.root, name)

    def _tmp_path(self, name: str) -> str:
        directory, base = os.path.split(self.path(name))
        return os.path.join(directory, TMP_PREFIX + base)

    def _publish(self, tmp: str, final: str) -> None:
        """fsync the finished file, rename it into place, fsync the directory."""
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(os.path.dirname(final), directory=True)

    def _ensure_dir(self, name: str) -> None:
        os.makedirs(os.path.dirname(self.path(name)), exist_ok=True)

    def check_available(self) -> None:
        if not os.path.isdir(self.root):
            raise errors.PoolUnavailable(pool=self.root, reason="directory does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise errors.PoolUnavailable(pool=self.root, reason="directory is not writable")

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.path(name))

    def info(self, name: str) -> ImageInfo:
        path = self.path(name)
        result = process.run(
            [qemu_img(), "info", "-U", "-f", "qcow2", "--output=json", path], timeout=INSPECT_TIMEOUT
        )
        data = json.loads(result.stdout)
        return ImageInfo(
            name=name,
            format=data["format"],
            virtual_size=int(data["virtual-size"]),
            allocated=self.allocated_bytes(name),
            backing=data.get("backing-filename"),
        )

    def allocated_bytes(self, name: str) -> int:
        """Allocated clusters x cluster size of this one layer (qemu-img 7.2's info has no such field)."""
        result = process.run(
            [qemu_img(), "check", "-U", "-f", "qcow2", "--output=json", self.path(name)],
            timeout=INSPECT_TIMEOUT,
            ok_codes=(0, 3),  # 3: leaked clusters, harmless for accounting
        )
        data = json.loads(result.stdout)
        return int(data.get("allocated-clusters", 0)) * int(data.get("cluster-size", 65536))

    def create_volume(self, name: str, size: int) -> ImageInfo:
        final = self.path(name)
        if os.path.isfile(final):
            return self.info(name)
        self._ensure_dir(name)
        tmp = self._tmp_path(name)
        process.run(
            [qemu_img(), "create", "-q", "-f", "qcow2", "-o", "preallocation=off", tmp, str(size)],
            timeout=CREATE_TIMEOUT,
        )
        self._publish(tmp, final)
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
            fsync_path(os.path.dirname(self.path(name)), directory=True)
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
            result = process.run(
                [qemu_img(), "info", "-U", "-f", fmt, "--output=json", source],
                timeout=INSPECT_TIMEOUT,
                pass_fds=(fd,),
                address_space=INSPECT_ADDRESS_SPACE,
            )
        except errors.StorageError as exc:
            raise errors.ImportRejected(reason=f"not a readable {fmt} image", desc=exc.desc) from None
        data = json.loads(result.stdout)
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
                process.run(
                    [qemu_img(), "check", "-U", "-f", "qcow2", "--output=json", source],
                    timeout=INSPECT_TIMEOUT * 10,
                    pass_fds=(fd,),
                    address_space=INSPECT_ADDRESS_SPACE,
                    ok_codes=(0,),
                )
            except errors.StorageError as exc:
                raise errors.ImportRejected(reason="qcow2 fails 'qemu-img check'", desc=exc.desc) from None
        return ImportSource(path=resolved, format=fmt, virtual_size=virtual_size)

    def _cache_args(self, source_dir: str, target_dir: str) -> list[str]:
        # O_DIRECT on both ends was the fastest, steadiest convert here; writeback still flushes
        # at the end, where the default ('unsafe') never does.
        args = ["-t", "none" if supports_direct_io(target_dir) else "writeback"]
        if supports_direct_io(source_dir):
            args += ["-T", "none"]
        return args

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
            self._ensure_dir(name)
            tmp = self._tmp_path(name)
            total = vetted.virtual_size

            def on_progress(percent: float) -> None:
                progress(percent, int(total * percent / 100), total)

            try:
                process.run(
                    [
                        qemu_img(), "convert", "-p", "-f", vetted.format, "-O", "qcow2",
                        *self._cache_args(os.path.dirname(resolved), os.path.dirname(tmp)),
                        "-m", "16", "-W",
                        f"file:/proc/self/fd/{fd}", tmp,
                    ],
                    timeout=COPY_TIMEOUT,
                    progress=on_progress,
                    pass_fds=(fd,),
                )
                if size > vetted.virtual_size:
                    process.run([qemu_img(), "resize", "-q", "-f", "qcow2", tmp, str(size)], timeout=CREATE_TIMEOUT)
            except BaseException:
                self.delete_image(name)
                raise
        finally:
            os.close(fd)
        self._publish(tmp, final)
        return self.info(name)

    # -- inventory ------------------------------------------------------------------------------

    def list_images(self) -> list[str]:
        """Every file below the pool root, as image names (partial writes included)."""
        names = []
        for directory, _dirs, files in os.walk(self.root):
            for file_name in files:
                names.append(os.path.relpath(os.path.join(directory, file_name), self.root))
        return sorted(names)
