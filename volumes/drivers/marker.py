"""The pool identity marker: `.sharestore-pool` at a pool's root, holding the pool's UUID.

A pool directory is usually a mount point (NFS, CephFS). When the share is not mounted on a host, the
path is still there, empty and writable: without a marker a worker there would write images into the
host's local disk and report them available. Every storage step reads the marker first
(`check_marker`); adding a pool writes it (`write_marker`, `manage.py pool_mark` for pools added before
markers existed). The check is one small file read, no qemu-img.
"""

from __future__ import annotations

import json
import os

from sharestore import errors
from volumes.drivers import qemu

MARKER_NAME = ".sharestore-pool"
MARKER_VERSION = 1


def marker_path(root: str) -> str:
    return os.path.join(root, MARKER_NAME)


def read_marker(root: str) -> dict | None:
    """The marker's content, or None when there is none. A marker that is not JSON raises."""
    try:
        with open(marker_path(root), encoding="utf-8") as handle:
            data = handle.read(4096)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise errors.PoolIdentityMismatch(pool="?", path=root, reason=f"unreadable marker: {exc}") from None
    return value if isinstance(value, dict) else {}


def write_marker(root: str, pool_uuid: str, *, name: str = "") -> None:
    """Write the marker durably (temporary sibling, fsync, rename, fsync the directory).

    Refuses to overwrite a marker that names another pool: that directory belongs to it.
    """
    current = read_marker(root)
    if current is not None and str(current.get("uuid")) != str(pool_uuid):
        raise errors.PoolIdentityMismatch(
            pool=pool_uuid, path=root, reason=f"the directory is pool {current.get('uuid')}"
        )
    if current is not None:
        return
    final = marker_path(root)
    tmp = qemu.tmp_sibling(final)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"uuid": str(pool_uuid), "name": name, "version": MARKER_VERSION}, handle)
        handle.write("\n")
    qemu.publish(tmp, final)


def check_marker(root: str, expected_uuid: str) -> None:
    """Raise PoolIdentityMismatch unless `root` holds the marker of pool `expected_uuid`."""
    current = read_marker(root)
    if current is None:
        raise errors.PoolIdentityMismatch(
            pool=expected_uuid, path=root, reason=f"no {MARKER_NAME} marker (is the pool mounted here?)"
        )
    found = str(current.get("uuid", ""))
    if found != str(expected_uuid):
        raise errors.PoolIdentityMismatch(
            pool=expected_uuid, path=root, reason=f"the directory is pool {found}"
        )
