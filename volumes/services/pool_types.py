"""The platform's pool types: their numbers (a pool's `Type`), their names (`PoolTypes`) and which
ones this service supports, decided by the driver registry (`volumes.drivers.DRIVERS`)."""

from __future__ import annotations

from sharestore import errors
from volumes.choices import PoolDriver, PoolType
from volumes.drivers import DRIVERS

# The platform's list, in its order: `Type` is the 1-based position (nfs 2, disk 4, rbd 6).
# cephfs (7) is ours, appended: the platform's list has no CephFS mount.
PLATFORM_POOL_TYPES = ["iscsi", "nfs", "samba", "disk", "fc", "rbd", "cephfs"]

# Which registered driver runs a pool of each type this service can store; a type is supported
# while its driver is registered. An RBD driver registered as "rbd" makes rbd appear by itself; a
# driver class may also name the types it serves in a `pool_types` attribute.
POOL_TYPE_DRIVERS = {
    PoolType.DISK: PoolDriver.QCOW2_DIRECTORY,
    PoolType.NFS: PoolDriver.QCOW2_DIRECTORY,
    PoolType.CEPHFS: PoolDriver.QCOW2_DIRECTORY,
    PoolType.RBD: "rbd",
}


def pool_type_driver(pool_type: str) -> str | None:
    """The registered driver that runs pools of this type, or None."""
    if pool_type not in PoolType.values:
        return None
    if POOL_TYPE_DRIVERS.get(pool_type) in DRIVERS:
        return POOL_TYPE_DRIVERS[pool_type]
    for name, driver in DRIVERS.items():
        if pool_type in getattr(driver, "pool_types", ()):
            return name
    return None


def supported_pool_types() -> list[str]:
    """The type names a pool may be created with, in the platform's order."""
    return [name for name in PLATFORM_POOL_TYPES if pool_type_driver(name)]


def pool_type_code(pool_type: str) -> int:
    """A pool's `Type`: its type's position in the platform's list, from 1."""
    return PLATFORM_POOL_TYPES.index(pool_type) + 1


def pool_type_from_code(code: int) -> tuple[str, str]:
    """(type name, driver name) of a requested `pool_type` number; refused unless supported."""
    if not 1 <= code <= len(PLATFORM_POOL_TYPES):
        raise errors.InvalidParameter(
            field="pool_type",
            reason=f"must be a pool type number from 1 to {len(PLATFORM_POOL_TYPES)}",
            reason_cn=f"必须是 1 到 {len(PLATFORM_POOL_TYPES)} 之间的存储池类型编号",
        )
    name = PLATFORM_POOL_TYPES[code - 1]
    driver = pool_type_driver(name)
    if driver is None:
        supported = ", ".join(f"{n} ({pool_type_code(n)})" for n in supported_pool_types())
        raise errors.PoolTypeUnsupported(value=f"{code} ({name})", supported=supported)
    return name, driver
