"""Publishing files durably: the temporary sibling, fsync, atomic rename and fsync of the directory,
and the names of partial writes (an attempt's own, recognised by `partial_target`).

Part of the storage engine but starts no program; `qemu` names these for its callers, so drivers and
backups reach them as `qemu.publishing`, `qemu.unlink` and so on (tests patch `qemu.publish` there).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator

from sharestore import errors
from sharestore.core import faults, fencing

TMP_PREFIX = ".tmp-"


def fsync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_parent(path: str) -> None:
    """Make a rename or unlink in `path`'s directory durable."""
    fsync_path(os.path.dirname(path) or ".", directory=True)


# A partial write's name: `.tmp-<name>`, then the attempt's tag inside an operation (`.op12-a3`,
# `fencing.attempt_tag`), then a copy's own tag (`.a3-1f2e3d4c`) and a scratch suffix (`.delta`).
_PARTIAL_NAME = re.compile(
    rf"^{re.escape(TMP_PREFIX)}(?P<base>.+?)(?:\.(?:op\d+-a\d+|a\d+-[0-9a-f]+))*(?:\.delta)?$"
)


def tmp_sibling(final: str, suffix: str = "") -> str:
    """Where `final` is written before it is published: same directory, so the rename is atomic, and
    a name of this attempt's own (`.tmp-<name>.op12-a3<suffix>`; `.tmp-<name><suffix>` outside an
    operation), so two attempts of one operation never write into the same file."""
    directory, base = os.path.split(final)
    tag = fencing.attempt_tag()
    return os.path.join(directory, f"{TMP_PREFIX}{base}{'.' + tag if tag else ''}{suffix}")


def partial_target(file_name: str) -> str | None:
    """The name of the file a partial write is for (`.tmp-x.op12-a3` -> `x`), None if no partial."""
    directory, base = os.path.split(file_name)
    found = _PARTIAL_NAME.match(base)
    return None if found is None else os.path.join(directory, found["base"])


def partials_of(final: str) -> list[str]:
    """Every partial write of `final` in its directory, of any attempt (one directory listing)."""
    directory, base = os.path.split(final)
    plain = TMP_PREFIX + base
    try:
        entries = os.listdir(directory or ".")
    except FileNotFoundError:
        return []
    return sorted(os.path.join(directory, e) for e in entries if e == plain or e.startswith(plain + "."))


def discard_partials(final: str, *, listed: bool = True) -> int:
    """Remove the partial writes of `final` left by earlier attempts (and this one's): every one
    (`listed`, a directory listing), or only the plain name and this operation's attempts' names,
    which needs no listing. Fenced like a publish: an attempt that lost its lease removes nothing,
    because the partial it would remove may be the new owner's."""
    if listed:
        paths = partials_of(final)
    else:
        paths = [tmp for tmp in _attempt_partials(final) if os.path.lexists(tmp)]
    if not paths:
        return 0
    removed = 0
    with fencing.publish_guard():
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
    if removed:
        fsync_parent(final)
    return removed


def _attempt_partials(final: str) -> list[str]:
    directory, base = os.path.split(final)
    plain = os.path.join(directory, TMP_PREFIX + base)
    return [plain, *(f"{plain}.{tag}" for tag in fencing.attempt_tags())]


def publish(tmp: str, final: str) -> None:
    """fsync the finished file, rename it over `final` in one step, fsync the directory."""
    if os.path.dirname(tmp) != os.path.dirname(final):
        raise errors.StorageError(reason=f"{tmp} is not in the directory of {final}: no atomic publish")
    if not os.path.lexists(tmp):
        # Removed by the attempt that took the operation over: say so (OperationLeaseLost) if that
        # is why, rather than fail on the missing file.
        with fencing.publish_guard():
            raise errors.StorageError(reason=f"{os.path.basename(tmp)} is gone before its publish")
    fsync_path(tmp)
    faults.pause("publish")
    # Fenced: only the attempt that still holds its operation's lease renames into place.
    with fencing.publish_guard():
        os.replace(tmp, final)
        fsync_parent(final)


def rename(src: str, dst: str) -> None:
    """Atomic rename, also across directories of one filesystem; the file first, both directories after."""
    fsync_path(src)
    with fencing.publish_guard():
        os.replace(src, dst)
        fsync_parent(dst)
    if os.path.dirname(src) != os.path.dirname(dst):
        fsync_parent(src)


def unlink(path: str) -> bool:
    """Remove `path` durably; whether it was there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_parent(path)
    return True


@contextlib.contextmanager
def publishing(final: str, *, publish_with: Callable[[str, str], None] = publish) -> Iterator[str]:
    """Yield the temporary path to write `final` at; publish it when the block ends, remove it if it fails."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tmp_sibling(final)
    # What an earlier attempt of this operation left (it was taken over or died): ours now.
    discard_partials(final, listed=False)
    try:
        yield tmp
    except BaseException:
        unlink(tmp)
        raise
    publish_with(tmp, final)
