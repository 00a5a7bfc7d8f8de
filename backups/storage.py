"""The files of a backup point and the qemu-img work on them. Knows paths, never the ORM.

Layout: `<backup point>/<volume uuid>/<backup uuid>.qcow2`. A full backup is an independent qcow2
image; an incremental one is a qcow2 overlay whose backing reference is its base's file name in the
same directory (relative, so the backup point can be mounted anywhere). A file appears under its
final name only once it is complete (written as `.tmp-<name>`, fsynced, renamed, directory fsynced).

Every command goes through `volumes.drivers.process.run` (argv lists, explicit formats, timeouts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from django.conf import settings

from sharestore import errors
from volumes.drivers import process
from volumes.drivers.qcow2_dir import fsync_path

TMP_PREFIX = ".tmp-"
DELTA_SUFFIX = ".delta"
INSPECT_TIMEOUT = 120
COPY_TIMEOUT = 24 * 3600

Progress = Callable[[float], None]


def qemu_img() -> str:
    return settings.SHARESTORE_QEMU_IMG


def _no_progress(_percent: float) -> None:
    return None


def _cache_args() -> list[str]:
    # The target is written through the page cache without flushes ("unsafe") and fsynced once
    # before it is published: the file is not a backup until then. Measured in bench/backup.py
    # with cold caches, this beat O_DIRECT (`-t none -T none`) on both writing and restoring.
    return ["-t", "unsafe"]


def _compress_args(compress: bool) -> list[str]:
    return ["-c", "-o", "compression_type=zstd"] if compress else []


class BackupStore:
    """One backup point's directory: names, temporary names, writing, merging, restoring, checking."""

    def __init__(self, root: str):
        self.root = os.path.normpath(root)

    # -- names ----------------------------------------------------------------------------------

    @staticmethod
    def file_name(volume_uuid, backup_uuid) -> str:
        return f"{volume_uuid}/{backup_uuid}.qcow2"

    def path(self, name: str) -> str:
        """Map a file name to its path, refusing anything that would leave the backup point."""
        if (
            not name
            or name.startswith("/")
            or "\x00" in name
            or any(p in ("", ".", "..") for p in name.split("/"))
        ):
            raise errors.StorageError(reason=f"invalid backup file name {name!r}")
        return os.path.join(self.root, name)

    def tmp_path(self, name: str, suffix: str = "") -> str:
        directory, base = os.path.split(self.path(name))
        return os.path.join(directory, f"{TMP_PREFIX}{base}{suffix}")

    def partial_paths(self, name: str) -> list[str]:
        return [self.tmp_path(name), self.tmp_path(name, DELTA_SUFFIX)]

    # -- state of the directory -----------------------------------------------------------------

    def check_available(self, point: str) -> None:
        if not os.path.isdir(self.root):
            raise errors.BackupPointUnavailable(point=point, reason=f"directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise errors.BackupPointUnavailable(point=point, reason=f"directory {self.root} is not writable")

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def exists(self, name: str) -> bool:
        return os.path.isfile(self.path(name))

    def disk_usage(self, name: str) -> int:
        """Bytes the file occupies on the filesystem (what counts against the backup point)."""
        st = os.stat(self.path(name))
        return max(st.st_blocks * 512, 0) or st.st_size

    def _fsync_dir(self, path: str) -> None:
        fsync_path(os.path.dirname(path), directory=True)

    def _unlink(self, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        self._fsync_dir(path)
        return True

    def remove_partials(self, name: str) -> bool:
        """Remove what an unfinished write of `name` left; the published file is kept."""
        removed = False
        for path in self.partial_paths(name):
            removed |= self._unlink(path)
        return removed

    def remove(self, name: str) -> bool:
        """Remove the file and any partial write of it; an emptied volume directory goes too."""
        removed = self.remove_partials(name)
        removed |= self._unlink(self.path(name))
        directory = os.path.dirname(self.path(name))
        try:
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        except OSError:
            pass  # a concurrent backup of the same volume just created a file in it
        return removed

    def _publish(self, tmp: str, final: str) -> None:
        fsync_path(tmp)
        os.replace(tmp, final)
        self._fsync_dir(final)

    def _convert_and_publish(self, source: str, tmp: str, final: str, *, compress: bool, progress: Progress) -> None:
        """Copy `source` with its chain into an independent qcow2 at `tmp`, then publish it as `final`."""
        process.run(
            [
                qemu_img(), "convert", "-p", "-f", "qcow2", "-O", "qcow2", *_cache_args(),
                "-m", "16", "-W", *_compress_args(compress), source, tmp,
            ],
            timeout=COPY_TIMEOUT,
            progress=progress,
        )
        self._publish(tmp, final)

    # -- reading images -------------------------------------------------------------------------

    def image_json(self, path: str) -> dict:
        # Plain `info` (never --backing-chain): it does not open backing files.
        result = process.run(
            [qemu_img(), "info", "-U", "-f", "qcow2", "--output=json", path], timeout=INSPECT_TIMEOUT
        )
        return json.loads(result.stdout)

    def virtual_size(self, path: str) -> int:
        return int(self.image_json(path)["virtual-size"])

    def backing_of(self, name: str) -> str | None:
        """The file name (in this backup point) the backup file is an overlay on, or None for a full one."""
        raw = self.image_json(self.path(name)).get("backing-filename")
        if not raw:
            return None
        if os.path.isabs(raw) or "/" in raw or ":" in raw:
            raise errors.StorageError(reason=f"backup file {name} names an unexpected backing {raw!r}")
        return f"{os.path.dirname(name)}/{raw}"

    def chain(self, name: str, limit: int = 4096) -> list[str]:
        """`name` and every backup file under it, top first, read one file at a time."""
        chain = [name]
        while len(chain) <= limit:
            backing = self.backing_of(chain[-1])
            if backing is None:
                return chain
            if not self.exists(backing):
                raise errors.StorageError(
                    reason=f"backup file {chain[-1]} is backed by a missing file {backing}"
                )
            chain.append(backing)
        raise errors.StorageError(reason=f"backup chain of {name} is longer than {limit} files")

    def check(self, path: str) -> dict:
        """`qemu-img check` of one image: JSON report plus `exit` (0 ok, 1 unchecked, 2 corrupt, 3 leaks)."""
        result = process.run(
            [qemu_img(), "check", "-U", "-f", "qcow2", "--output=json", path],
            timeout=COPY_TIMEOUT,
            ok_codes=(0, 1, 2, 3),
        )
        try:
            report = json.loads(result.stdout) if result.stdout.strip() else {}
        except ValueError:
            report = {}
        report["exit"] = result.returncode
        if result.returncode and result.stderr.strip():
            report["stderr"] = result.stderr.strip()[-2000:]
        return report

    # -- writing backups ------------------------------------------------------------------------

    def write_full(
        self, source: str, name: str, *, compress: bool, progress: Progress = _no_progress
    ) -> None:
        """Copy the guest-visible content of `source` (with its backing chain) into an independent file."""
        final = self.path(name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = self.tmp_path(name)
        self.remove_partials(name)
        try:
            self._convert_and_publish(source, tmp, final, compress=compress, progress=progress)
        except BaseException:
            self.remove_partials(name)
            raise

    def write_incremental(
        self,
        source: str,
        name: str,
        *,
        base_name: str,
        source_base: str | None,
        compress: bool,
        progress: Progress = _no_progress,
    ) -> None:
        """Write what differs between `source` and the backup `base_name` as an overlay on it.

        An empty overlay on `source` is rebased (safe mode: content compared) onto what the base
        backup holds, so it gains exactly the clusters whose content differs. When `source_base` (the
        base backup's snapshot layer) is still in `source`'s backing chain, the rebase targets it and
        qemu-img only reads the layers above it; the overlay is then repointed, metadata only, to the
        base backup's file, whose content is the same. Otherwise the rebase compares with the base
        backup's file directly (reads the whole disk). `convert -B` alone is not used: it copies the
        clusters allocated in the source's top layer only, which loses data when the change since the
        base spans several layers.
        """
        final = self.path(name)
        directory = os.path.dirname(final)
        base_path = self.path(base_name)
        if os.path.dirname(base_path) != directory:
            raise errors.StorageError(reason=f"base {base_name} is not in the directory of {name}")
        if not os.path.isfile(base_path):
            raise errors.StorageError(reason=f"base backup file {base_name} is missing")
        base_ref = os.path.basename(base_path)
        os.makedirs(directory, exist_ok=True)
        tmp = self.tmp_path(name)
        delta = self.tmp_path(name, DELTA_SUFFIX) if compress else tmp
        self.remove_partials(name)
        size = self.virtual_size(source)
        try:
            process.run(
                [
                    qemu_img(),
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-u",
                    "-b",
                    source,
                    "-F",
                    "qcow2",
                    "-o",
                    "preallocation=off",
                    delta,
                    str(size),
                ],
                timeout=INSPECT_TIMEOUT,
            )
            stage = (lambda p: progress(p * 0.5)) if compress else progress
            if source_base is not None:
                process.run(
                    [qemu_img(), "rebase", "-p", "-f", "qcow2", "-F", "qcow2", "-b", source_base, delta],
                    timeout=COPY_TIMEOUT,
                    progress=stage,
                )
                process.run(
                    [qemu_img(), "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", base_ref, delta],
                    timeout=INSPECT_TIMEOUT,
                )
            else:
                process.run(
                    [qemu_img(), "rebase", "-p", "-f", "qcow2", "-F", "qcow2", "-b", base_ref, delta],
                    timeout=COPY_TIMEOUT,
                    progress=stage,
                )
            if compress:
                # The delta's own clusters are exactly the change: `convert -B` copies those, compressed.
                process.run(
                    [
                        qemu_img(),
                        "convert",
                        "-p",
                        "-f",
                        "qcow2",
                        "-O",
                        "qcow2",
                        "-m",
                        "16",
                        "-W",
                        *_compress_args(True),
                        "-B",
                        base_ref,
                        "-F",
                        "qcow2",
                        delta,
                        tmp,
                    ],
                    timeout=COPY_TIMEOUT,
                    progress=lambda p: progress(50 + p * 0.5),
                )
                self._unlink(delta)
            self._publish(tmp, final)
        except BaseException:
            self.remove_partials(name)
            raise

    def merge_into(
        self, dependent: str, *, layer: str, new_base: str | None, progress: Progress = _no_progress
    ) -> None:
        """Fold the backup file `layer` into `dependent` (an overlay on it), which then sits on `new_base`.

        A safe rebase: clusters the dependent reads through `layer` that differ from what it would read
        through `new_base` are copied into it, then its header names `new_base`. Until that header
        write, the dependent still reads through `layer`, and what it gained is what it read there: a
        crash at any point leaves it restorable, and the call can be repeated. `layer` itself is not
        removed here.
        """
        dependent_path = self.path(dependent)
        current = self.backing_of(dependent)
        if current == new_base:
            return  # done before a crash
        if current != layer:
            raise errors.StorageError(reason=f"{dependent} is not an overlay on {layer} (it names {current})")
        argv = [qemu_img(), "rebase", "-p", "-t", "writeback", "-T", "writeback", "-f", "qcow2"]
        if new_base is None:
            argv += ["-b", ""]
        else:
            argv += ["-F", "qcow2", "-b", os.path.basename(self.path(new_base))]
        process.run([*argv, dependent_path], timeout=COPY_TIMEOUT, progress=progress)
        fsync_path(dependent_path)

    # -- restoring ------------------------------------------------------------------------------

    def restore(self, name: str, target: str, *, progress: Progress = _no_progress) -> None:
        """Write the backup's content (whole chain) as an independent qcow2 image at `target`; publish it."""
        source = self.path(name)
        if not os.path.isfile(source):
            raise errors.StorageError(reason=f"backup file {name} is missing")
        if os.path.isfile(target):
            return
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, TMP_PREFIX + os.path.basename(target))
        self._unlink(tmp)
        try:
            self._convert_and_publish(source, tmp, target, compress=False, progress=progress)
        except BaseException:
            self._unlink(tmp)
            raise
