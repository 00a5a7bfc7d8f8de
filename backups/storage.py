"""The files of a backup point and the qemu-img work on them. Knows paths, never the ORM.

Layout: `<backup point>/<volume uuid>/<backup uuid>.qcow2`. A full backup is an independent qcow2
image; an incremental one is a qcow2 overlay whose backing reference is its base's file name in the
same directory (relative, so the backup point can be mounted anywhere). A file appears under its
final name only once it is complete (written at a temporary name of its attempt, `.tmp-<name>.op12-a3`,
fsynced, renamed, directory fsynced; `qemu.tmp_sibling`).

The content comes from the pool's driver (`StorageDriver.export`, written at the temporary name
this store chooses) and goes back into a pool through it (`StorageDriver.restore_export`); this store
only names, publishes, merges, checks and removes the files. Every qemu-img command goes through the
qemu layer `volumes.drivers.qemu` (argv lists, explicit formats, timeouts, the one chain walker, the
publish helpers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from sharestore import errors
from volumes.drivers import qemu
from volumes.drivers.paths import path_inside, writable_directory

TMP_PREFIX = qemu.TMP_PREFIX
# The suffix the pool driver's export gives its scratch file (an uncompressed delta) beside the target.
DELTA_SUFFIX = ".delta"

Progress = Callable[[float], None]


def _no_progress(_percent: float) -> None:
    return None


def validate_directory(path) -> str:
    """A backup point's directory: absolute, existing and writable by this service, returned resolved
    (a pool's location is its driver's to check: `validate_pool_location`)."""
    return writable_directory(path)


class BackupStore:
    """One backup point's directory: names, temporary names, publishing, merging, checking."""

    def __init__(self, root: str):
        self.root = os.path.normpath(root)

    # -- names ----------------------------------------------------------------------------------

    @staticmethod
    def file_name(volume_uuid, backup_uuid) -> str:
        return f"{volume_uuid}/{backup_uuid}.qcow2"

    def path(self, name: str) -> str:
        """Map a file name to its path, refusing anything that would leave the backup point."""
        return path_inside(self.root, name, what="backup file")

    def tmp_path(self, name: str, suffix: str = "") -> str:
        return qemu.tmp_sibling(self.path(name), suffix)

    @staticmethod
    def is_partial(name: str) -> bool:
        """Whether a file name of the backup point is a write in progress (never a usable backup)."""
        return os.path.basename(name).startswith(TMP_PREFIX)

    def partial_paths(self, name: str) -> list[str]:
        """Every partial write of `name`, of any attempt (its scratch `.delta` and index ones too)."""
        return qemu.partials_of(self.path(name))

    def encryption(self, name: str, password: str | None) -> contextlib.AbstractContextManager:
        """Within the block, backup file `name` (and its partial writes) is LUKS-encrypted qcow2 with
        `password`: written encrypted, opened with its key (a qemu secret object read from a 0600 file,
        never an argv). Without a password, a plain file."""
        if not password:
            return contextlib.nullcontext()
        own = self.tmp_path(name)  # this attempt's partial write: it does not exist yet
        files = [self.path(name), own, own + DELTA_SUFFIX, *self.partial_paths(name)]
        return qemu.encrypted_files(files, password)

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

    def remove_partials(self, name: str) -> bool:
        """Remove what unfinished writes of `name` left, of any attempt; the published file is kept.
        Fenced: an attempt that lost its lease removes nothing (it could be the new owner's write)."""
        return qemu.discard_partials(self.path(name)) > 0

    def remove(self, name: str) -> bool:
        """Remove the file and any partial write of it; an emptied volume directory goes too."""
        removed = self.remove_partials(name)
        removed |= qemu.unlink(self.path(name))
        directory = os.path.dirname(self.path(name))
        try:
            if os.path.isdir(directory) and not os.listdir(directory):
                os.rmdir(directory)
        except OSError:
            pass  # a concurrent backup of the same volume just created a file in it
        return removed

    # -- reading images -------------------------------------------------------------------------

    def virtual_size(self, path: str) -> int:
        return int(qemu.info(path)["virtual-size"])

    @staticmethod
    def _accept_backing(path: str, raw: str) -> None:
        # A backup names its base by file name in its own directory, never by path.
        if os.path.isabs(raw) or "/" in raw or ":" in raw:
            raise errors.StorageError(
                reason=f"backup file {os.path.basename(path)} names an unexpected backing {raw!r}"
            )

    def backing_of(self, name: str) -> str | None:
        """The file name (in this backup point) the backup file is an overlay on, or None for a full one."""
        path = self.path(name)
        raw = qemu.backing_raw(path)
        if raw is None:
            return None
        self._accept_backing(path, raw)
        return f"{os.path.dirname(name)}/{raw}"

    def chain(self, name: str) -> list[str]:
        """`name` and every backup file under it, top first, read one file at a time."""
        directory = os.path.dirname(name)
        paths = qemu.walk_chain(self.path(name), accept=self._accept_backing)
        return [name] + [f"{directory}/{os.path.basename(p)}" for p in paths[1:]]

    def restore_needs(self, name: str, capacity: int) -> int:
        """Bytes a restore of backup file `name` (its whole chain) writes into a pool; when the chain
        cannot be measured, what a fully written volume of `capacity` bytes would take."""
        try:
            self.chain(name)  # every base named as backups name them, before qemu-img opens the chain
            return int(qemu.measure(self.path(name))["required"])
        except (errors.ServiceError, KeyError, ValueError):
            return capacity

    def check(self, path: str) -> dict:
        """`qemu-img check` of one image: JSON report plus `exit` (0 ok, 1 unchecked, 2 corrupt, 3 leaks)."""
        return qemu.check(path, ok_codes=(0, 1, 2, 3))

    def write(self, name: str, export: Callable[[str], None]) -> None:
        """Have `export(path)` write backup file `name` at its temporary name, then publish it.

        The writing is the pool driver's (`StorageDriver.export`): a full export, or an incremental one
        on the base backup's file (`self.path(base)`, in the same directory as required). Its scratch
        files carry the temporary name as prefix (`.tmp-<name>.op12-a3.delta`), so `remove_partials`
        finds what a crash left. What earlier attempts left is removed first; a failure removes this
        attempt's own files only (another attempt may be writing beside them); the published file never
        looks partial.
        """
        final = self.path(name)
        self.remove_partials(name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = self.tmp_path(name)
        try:
            export(tmp)
            qemu.publish(tmp, final)
        except BaseException:
            for own in (tmp, tmp + DELTA_SUFFIX):
                qemu.unlink(own)
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
        qemu.rebase(
            dependent_path,
            None if new_base is None else os.path.basename(self.path(new_base)),
            cache="writeback",
            source_cache="writeback",
            progress=progress,
        )
        qemu.fsync_path(dependent_path)
