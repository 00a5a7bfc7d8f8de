"""Helpers shared by tests (importable: `from tests.helpers import ...`)."""

from tests.conftest import (  # noqa: F401
    CLUSTER,
    HOST,
    POOL_BBB,
    POOL_DISKS,
    TENANT,
    image_info,
    pattern_matches,
    qemu_img,
    qemu_io,
    scoped,
)
