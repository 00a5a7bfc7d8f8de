"""Demo topology with the contract's own UUIDs and names, so its request examples replay."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import transaction

from volumes.drivers import get_driver, qemu
from volumes.models import Cluster, Host, Namespace, Pool, PoolMount, Tenant, Zone

MiB = 1 << 20
ZONE_UUID = "3e2f589c-d5d7-4807-9c03-238fe967cdbd"
CLUSTER_UUID = "a97eb422-f42b-4b85-8556-725f152661f0"
HOST_UUID = "f04d95d6-c4f2-45c9-a1ef-164482af658a"
TENANT_UUID = "fab210d2-b9b8-4b0b-bd61-50812ce3d4d0"
NAMESPACE_UUID = "83b1add8-2b9d-4f0c-8f3b-e0c3a2001006"
POOLS = {
    "0eca2be3-056f-4634-a25b-5cf717e067fb": "disks",
    "f0dc0363-5e70-419a-95ad-2c49c14d70c1": "bbb",
    "ca12d616-73c4-4629-a5c0-a37a8e163c33": "rbd198",
}
DEMO_POOL_CAPACITY = 1 << 40
DEMO_IMPORT_SIZE = 64 << 20


def pool_directory(data_dir: Path, pool_uuid: str) -> Path:
    return data_dir / "share" / f"pool-{pool_uuid}"


@transaction.atomic
def demo_topology_seed(*, data_dir: Path | None = None) -> dict:
    """Create (or leave as they are) the demo zone, cluster, host, tenant, namespace and pools."""
    data_dir = Path(data_dir or settings.SHARESTORE_DATA_DIR)
    zone, _ = Zone.objects.get_or_create(uuid=ZONE_UUID, defaults={"name": "default"})
    cluster, _ = Cluster.objects.get_or_create(
        uuid=CLUSTER_UUID, defaults={"name": "cluster_name_243", "zone": zone}
    )
    host, _ = Host.objects.get_or_create(uuid=HOST_UUID, defaults={"name": "demo-host", "cluster": cluster})
    tenant, _ = Tenant.objects.get_or_create(uuid=TENANT_UUID, defaults={"name": "zhangyiru"})
    Namespace.objects.get_or_create(tenant=tenant, defaults={"uuid": NAMESPACE_UUID})
    pools = []
    for pool_uuid, name in POOLS.items():
        directory = pool_directory(data_dir, pool_uuid)
        directory.mkdir(parents=True, exist_ok=True)
        pool, _ = Pool.objects.get_or_create(
            uuid=pool_uuid,
            defaults={
                "name": name,
                "cluster": cluster,
                "zone": zone,
                "path": str(directory),
                "capacity": DEMO_POOL_CAPACITY,
            },
        )
        PoolMount.objects.get_or_create(pool=pool, host=host, defaults={"mount_path": str(directory)})
        get_driver(pool.driver, pool.path).mark_identity(
            str(pool.uuid), name=pool.name, adopt=True, force=True
        )
        pools.append(pool)
    return {"zone": zone, "cluster": cluster, "host": host, "tenant": tenant, "pools": pools}


def demo_import_files_seed(*, import_root: Path | None = None) -> list[Path]:
    """A small real qcow2 and raw image with a known pattern in the import root."""
    root = Path(import_root or settings.SHARESTORE_IMPORT_ROOTS[0])
    root.mkdir(parents=True, exist_ok=True)
    qcow2, raw = root / "my.qcow2", root / "my.raw"
    if not qcow2.exists():
        tmp = root / ".my.qcow2.tmp"
        qemu.create(str(tmp), DEMO_IMPORT_SIZE)
        qemu.io_write(str(tmp), [(0, MiB, 0x5A), (32 * MiB, MiB, 0xA5)])
        os.replace(tmp, qcow2)
    if not raw.exists():
        tmp = root / ".my.raw.tmp"
        with open(tmp, "wb") as handle:
            handle.truncate(DEMO_IMPORT_SIZE)
        qemu.io_write(str(tmp), [(4 * MiB, 2 * MiB, 0x3C)], fmt="raw")
        os.replace(tmp, raw)
    return [qcow2, raw]
