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
from volumes.drivers.base import (
    MERGE_COMMIT,
    MERGE_REBASE,
    ImageInfo,
    ImportSource,
    ProgressCallback,
    StorageDriver,
)

QCOW2_MAGIC = b"QFI\xfb"
TMP_PREFIX = ".tmp-"
# Metadata reads of an untrusted image run under this address-space limit, as Cinder does.
INSPECT_ADDRESS_SPACE = 1 << 30
INSPECT_TIMEOUT = 60
CREATE_TIMEOUT = 120
COPY_TIMEOUT = 24 * 3600
# A full copy reads its source through the page cache and writes without flushes, then the partial is
# fsynced once before it is published (it is never usable before). From a cold cache this beat
# O_DIRECT on both ends (`-t none -T none`) by 20-35 % here: bench/clone.py prints both.
COPY_CACHE_ARGS = ("-t", "unsafe", "-T", "writeback")


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

    # -- snapshot layers ------------------------------------------------------------------------
    # The head `volume/<v>` and the layers `snapshots/<v>/<s>.qcow2` live at different depths, so a
    # relative backing reference that is right in one directory is wrong in the other: every move
    # between them is followed by `_repoint`, a metadata-only rewrite of the reference to the same
    # file. Each step below is either atomic (rename) or leaves every image's guest-visible content
    # unchanged, and each method starts by looking at what the files show, so calling it again after
    # a crash finishes the work.

    def _rename(self, src: str, dst: str) -> None:
        """Atomic rename; the file is fsynced first and both directories after."""
        fsync_path(src)
        os.replace(src, dst)
        fsync_path(os.path.dirname(dst), directory=True)
        if os.path.dirname(src) != os.path.dirname(dst):
            fsync_path(os.path.dirname(src), directory=True)

    def _unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        fsync_path(os.path.dirname(path), directory=True)

    def _image_json(self, path: str) -> dict:
        # Plain `info` never opens the backing file: reading the chain costs one call per layer and
        # cannot be steered to another host file or a network URL by what a layer names.
        result = process.run(
            [qemu_img(), "info", "-U", "-f", "qcow2", "--output=json", path], timeout=INSPECT_TIMEOUT
        )
        return json.loads(result.stdout)

    def _backing_raw(self, path: str) -> str | None:
        raw = self._image_json(path).get("backing-filename")
        if not raw:
            return None
        if ":" in raw.split("/", 1)[0]:
            # json:, nbd://, file: ... are never written by this service.
            raise errors.StorageError(reason=f"{path} names an unexpected backing {raw!r}")
        return raw

    def _backing_abs(self, path: str) -> str | None:
        raw = self._backing_raw(path)
        if raw is None:
            return None
        return os.path.normpath(os.path.join(os.path.dirname(path), raw))

    def _name_of(self, path: str) -> str:
        root = os.path.normpath(self.root)
        if path.startswith(root + "/"):
            return os.path.relpath(path, root)
        return path

    def backing_name(self, name: str) -> str | None:
        backing = self._backing_abs(self.path(name))
        return None if backing is None else self._name_of(backing)

    def backing_chain(self, name: str, limit: int = 512) -> list[str]:
        chain = [name]
        path = self.path(name)
        while len(chain) <= limit:
            backing = self._backing_abs(path)
            if backing is None:
                return chain
            if not os.path.isfile(backing):
                raise errors.StorageError(reason=f"{self._name_of(path)} is backed by missing {backing}")
            path = backing
            chain.append(self._name_of(path))
        raise errors.StorageError(reason=f"backing chain of {name} is longer than {limit} layers")

    def _virtual_size(self, path: str) -> int:
        return int(self._image_json(path)["virtual-size"])

    def _set_backing(self, path: str, backing: str) -> None:
        """Rewrite the backing reference of `path` to name `backing` (the same file: metadata only)."""
        process.run(
            [
                qemu_img(), "rebase", "-u", "-f", "qcow2", "-F", "qcow2",
                "-b", os.path.relpath(backing, os.path.dirname(path)), path,
            ],
            timeout=CREATE_TIMEOUT,
        )
        fsync_path(path)

    def _repoint(self, path: str, former_dir: str) -> None:
        """Make the backing reference of `path`, just moved here from `former_dir`, right from here.

        `rebase -u` only rewrites the name, which is safe because the name keeps designating the
        same file; it is never used to drop a layer (that loses the layer's data).
        """
        raw = self._backing_raw(path)
        if raw is None or os.path.isabs(raw):
            return
        if os.path.isfile(os.path.normpath(os.path.join(os.path.dirname(path), raw))):
            return
        target = os.path.normpath(os.path.join(former_dir, raw))
        if not os.path.isfile(target):
            raise errors.StorageError(reason=f"backing {raw!r} of {self._name_of(path)} is missing")
        self._set_backing(path, target)

    def _create_overlay(self, final: str, backing: str) -> None:
        """Publish an empty overlay on `backing` at `final`, replacing whatever `final` was."""
        tmp = os.path.join(os.path.dirname(final), TMP_PREFIX + os.path.basename(final))
        size = self._virtual_size(backing)
        # -u with an explicit size: qemu-img does not open the backing chain, so creating an overlay
        # costs the same at any chain depth (without it, 9 ms at depth 1 and 191 ms at depth 200).
        process.run(
            [
                qemu_img(), "create", "-q", "-f", "qcow2", "-u",
                "-b", os.path.relpath(backing, os.path.dirname(final)), "-F", "qcow2",
                "-o", "preallocation=off", tmp, str(size),
            ],
            timeout=CREATE_TIMEOUT,
        )
        self._publish(tmp, final)

    def snapshot_freeze(self, head: str, layer: str) -> None:
        head_path, layer_path = self.path(head), self.path(layer)
        if os.path.isfile(head_path) and not os.path.isfile(layer_path):
            os.makedirs(os.path.dirname(layer_path), exist_ok=True)
            self._rename(head_path, layer_path)
        if not os.path.isfile(layer_path):
            raise errors.StorageError(reason=f"cannot freeze {head}: neither it nor {layer} exists")
        self._repoint(layer_path, os.path.dirname(head_path))
        if os.path.isfile(head_path):
            if self._backing_abs(head_path) != layer_path:
                raise errors.StorageError(reason=f"{head} and {layer} exist, {head} not on {layer}")
            return
        self._create_overlay(head_path, layer_path)

    def snapshot_unfreeze(self, head: str, layer: str) -> None:
        head_path, layer_path = self.path(head), self.path(layer)
        self._unlink(self._tmp_path(head))
        if not os.path.isfile(layer_path):
            return
        if os.path.isfile(head_path):
            if self._backing_abs(head_path) != layer_path:
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
        layer_backing = self._backing_abs(layer_path)
        dependent_backing = self._backing_abs(dependent_path)
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
            argv = [qemu_img(), "rebase", "-p", "-t", "writeback", "-T", "writeback", "-f", "qcow2"]
            if layer_backing is None:
                argv += ["-b", ""]
            else:
                argv += ["-F", "qcow2", "-b", os.path.relpath(layer_backing, os.path.dirname(dependent_path))]
            process.run([*argv, dependent_path], timeout=COPY_TIMEOUT, progress=on_progress)
            fsync_path(dependent_path)
            self._unlink(layer_path)
            return
        # Commit: the dependent's clusters are written into the layer (-d: the dependent keeps
        # them, so the work can be redone). Legal only because nothing else reads the layer; the
        # layer then takes the dependent's name, and the dependent's readers find the same content.
        process.run(
            [qemu_img(), "commit", "-p", "-t", "writeback", "-f", "qcow2", "-d", dependent_path],
            timeout=COPY_TIMEOUT,
            progress=on_progress,
        )
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

    def _walk_chain(self, path: str, limit: int = 512) -> list[str]:
        """Every file under `path`, read one layer at a time: a protocol name or a missing layer is refused
        before qemu-img opens the whole chain."""
        chain = [path]
        while len(chain) <= limit:
            backing = self._backing_abs(chain[-1])
            if backing is None:
                return chain
            if not os.path.isfile(backing):
                raise errors.StorageError(reason=f"{chain[-1]} is backed by missing {backing}")
            chain.append(backing)
        raise errors.StorageError(reason=f"backing chain of {path} is longer than {limit} layers")

    def linked_clone(self, name: str, base_ref: str) -> ImageInfo:
        base = self._check_ref(base_ref)
        final = self.path(name)
        directory = os.path.dirname(final)
        if os.path.isfile(final):
            found = self._backing_abs(final)
            if found is None or os.path.realpath(found) != os.path.realpath(base):
                raise errors.StorageError(reason=f"{name} exists and is not an overlay on {base}: kept")
            return self.info(name)
        self._ensure_dir(name)
        # `..` is resolved by the kernel after symlinks: compute it between the real directories,
        # then check that it leads back to the base from where the clone sits.
        relative = os.path.relpath(os.path.realpath(base), os.path.realpath(directory))
        if os.path.realpath(os.path.join(directory, relative)) != os.path.realpath(base):
            raise errors.StorageError(reason=f"no relative path from {directory} reaches {base}")
        tmp = self._tmp_path(name)
        # -u with an explicit size: the base chain is not opened, so this costs the same whatever
        # the base's size or depth.
        process.run(
            [
                qemu_img(), "create", "-q", "-f", "qcow2", "-u", "-b", relative, "-F", "qcow2",
                "-o", "preallocation=off", tmp, str(self._virtual_size(base)),
            ],
            timeout=CREATE_TIMEOUT,
        )
        self._publish(tmp, final)
        return self.info(name)

    def copy_needs(self, source_ref: str) -> int:
        source = self._check_ref(source_ref)
        self._walk_chain(source)
        result = process.run(
            [qemu_img(), "measure", "-f", "qcow2", "-O", "qcow2", "--output=json", source],
            timeout=INSPECT_TIMEOUT,
        )
        return int(json.loads(result.stdout)["required"])

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _partial_path(self, name: str, tag: str) -> str:
        if not tag or not all(c.isalnum() or c == "-" for c in tag):
            raise errors.StorageError(reason=f"invalid partial tag {tag!r}")
        directory, base = os.path.split(self.path(name))
        return os.path.join(directory, f"{TMP_PREFIX}{base}.{tag}")

    def flat_copy(self, source_ref: str, name: str, tag: str, progress: ProgressCallback) -> str:
        source = self._check_ref(source_ref)
        self._walk_chain(source)
        self._ensure_dir(name)
        partial = self._partial_path(name, tag)

        def on_progress(percent: float) -> None:
            progress(percent, 0, 0)

        try:
            process.run(
                [
                    qemu_img(), "convert", "-p", "-f", "qcow2", "-O", "qcow2", *COPY_CACHE_ARGS,
                    "-m", "16", "-W", source, partial,
                ],
                timeout=COPY_TIMEOUT,
                progress=on_progress,
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
        directory, base = os.path.split(self.path(name))
        plain = TMP_PREFIX + base
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
            fsync_path(directory, directory=True)
        return removed
