"""The import path the directory driver had before it became the `volumes.drivers.qcow2` package."""

from volumes.drivers.qcow2.clones import COPY_CACHE, COPY_CACHE_ARGS, COPY_SOURCE_CACHE
from volumes.drivers.qcow2.driver import QCOW2_MAGIC, Qcow2DirectoryDriver
from volumes.drivers.qemu import TMP_PREFIX, fsync_path, supports_direct_io

__all__ = [
    "COPY_CACHE",
    "COPY_CACHE_ARGS",
    "COPY_SOURCE_CACHE",
    "QCOW2_MAGIC",
    "TMP_PREFIX",
    "Qcow2DirectoryDriver",
    "fsync_path",
    "supports_direct_io",
]
