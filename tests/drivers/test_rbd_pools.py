"""RBD pools: `add_pool --type rbd` validated by connecting to a real (test) Ceph, the driver chosen by
the pool's type, and what hosts receive as AccessPath."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from volumes.drivers import get_driver
from volumes.drivers.rbd import RbdDriver
from volumes.models import Pool


def add_rbd_pool(topology, name: str, *extra: str) -> None:
    call_command(
        "add_pool", "--name", name, "--cluster", str(topology["cluster"].uuid), "--capacity", "1T",
        "--type", "rbd", *extra,
    )  # fmt: skip


def test_add_pool_rbd_connects_and_the_pool_runs_the_rbd_driver(topology, ceph_cluster, rbd_namespace):
    location = rbd_namespace("added")
    ceph_pool, namespace = location.split(":", 1)[0].split("/")
    add_rbd_pool(
        topology,
        "ceph1",
        "--ceph-pool",
        ceph_pool,
        "--ceph-namespace",
        namespace,
        "--ceph-conf",
        ceph_cluster.conf,
    )
    pool = Pool.objects.get(name="ceph1")
    assert (pool.pool_type, pool.driver, pool.path) == ("rbd", "rbd", location)
    driver = get_driver(pool.driver, pool.path, pool.uuid)
    assert isinstance(driver, RbdDriver)
    driver.check_available()  # the identity marker pool_create wrote is this pool's
    driver.create_volume("volume/v1", 1 << 20)
    assert driver.access_path("/ignored", "volume/v1") == f"rbd:{ceph_pool}/{namespace}/volume.v1"


def test_add_pool_rbd_refuses_a_pool_it_cannot_reach(topology, ceph_cluster, tmp_path):
    with pytest.raises(CommandError, match="cannot list the RBD pool"):
        add_rbd_pool(topology, "ghost", "--ceph-pool", "nosuchpool", "--ceph-conf", ceph_cluster.conf)
    with pytest.raises(CommandError, match="does not exist"):
        add_rbd_pool(topology, "ghost", "--ceph-pool", "rbd", "--ceph-conf", str(tmp_path / "none.conf"))
    with pytest.raises(CommandError, match="pool type rbd goes with driver rbd"):
        add_rbd_pool(
            topology, "ghost", "--ceph-pool", "rbd", "--ceph-conf", ceph_cluster.conf, "--driver", "qcow2-dir"
        )
    assert not Pool.objects.filter(name="ghost").exists()
