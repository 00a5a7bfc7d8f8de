"""Storage drivers, looked up by a pool's `driver` name."""

from volumes.drivers.base import (
    ImageInfo,
    ImportSource,
    SnapshotSource,
    SnapshotTree,
    StorageDriver,
    TreeSnapshot,
    TreeWork,
)
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.drivers.rbd import RbdDriver

# A pool's `driver` name -> its class; an RBD pool's root is its location
# `pool[/namespace]:conf=<ceph.conf>[:id=<user>][:keyring=<path>]`.
DRIVERS: dict[str, type[StorageDriver]] = {"qcow2-dir": Qcow2DirectoryDriver, "rbd": RbdDriver}

__all__ = [
    "DRIVERS",
    "ImageInfo",
    "ImportSource",
    "SnapshotSource",
    "SnapshotTree",
    "StorageDriver",
    "TreeSnapshot",
    "TreeWork",
    "get_driver",
]


def get_driver(driver_name: str, root: str, pool_uuid: str | None = None) -> StorageDriver:
    """The driver for a pool, given its driver name, root and UUID (never a model instance).

    With `pool_uuid`, `check_available()` also verifies the pool identity marker (`drivers/marker.py`).
    """
    return DRIVERS[driver_name](root, pool_uuid)
