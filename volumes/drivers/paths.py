"""Path rules shared by the pool drivers and the backup store: a directory they may use as a root,
and a relative name mapped inside it."""

from __future__ import annotations

import os

from sharestore import errors


def writable_directory(path) -> str:
    """An absolute directory that exists and that this service can write, returned resolved."""
    if not isinstance(path, str) or not path or not os.path.isabs(path) or "\x00" in path:
        raise errors.InvalidParameter(field="path", reason="must be an absolute directory path")
    if not os.path.isdir(path):
        raise errors.InvalidParameter(field="path", reason=f"directory {path} does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.InvalidParameter(field="path", reason=f"directory {path} is not writable")
    return os.path.realpath(path)


def path_inside(root: str, name: str, *, what: str) -> str:
    """Map a relative `name` below `root`, refusing anything that would leave it (`what` names the kind
    of file in the error: "image", "backup file")."""
    if (
        not name
        or name.startswith("/")
        or "\x00" in name
        or any(p in ("", ".", "..") for p in name.split("/"))
    ):
        raise errors.StorageError(reason=f"invalid {what} name {name!r}")
    return os.path.join(root, name)
