"""The contract's endpoints on an RBD pool of a real (test) Ceph: create, snapshot, rollback, linked and
full clone, backup, incremental backup and restore into a directory pool, each checked by content
with `qemu-img compare` over `rbd:` names (docs/storage.md "Ceph RBD pools")."""

from __future__ import annotations

import copy

import pytest

from backups.services.points import backup_point_create
from tests.contract import EXAMPLES
from tests.helpers import POOL_DISKS, scoped
from volumes.drivers import get_driver, qemu
from volumes.drivers.rbd.copies import source_of
from volumes.models import Pool, Volume

MiB = 1 << 20
POOL_RBD = "ca12d616-73c4-4629-a5c0-a37a8e163c33"  # the contract's rbd198
BACKUP_POINT = "7f74897a-3084-45e1-a413-6cd168ddd4b5"


@pytest.fixture
def rbd_pool(topology, rbd_namespace):
    """The demo's rbd198 made a real RBD pool (a fresh namespace of the test Ceph)."""
    from sharestore.core.services import readcache

    location = rbd_namespace("rbd198")
    Pool.objects.filter(uuid=POOL_RBD).update(pool_type="rbd", driver="rbd", path=location)
    get_driver("rbd", location).mark_identity(POOL_RBD, name="rbd198")
    readcache.clear_all()
    return Pool.objects.get(uuid=POOL_RBD)


@pytest.fixture
def point(topology, data_dir):
    directory = data_dir / "backup" / f"bp-{BACKUP_POINT}"
    directory.mkdir(parents=True)
    return backup_point_create(
        name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40, uuid=BACKUP_POINT
    )


def ok(answer) -> dict:
    status, body = answer
    assert (status, body["scode"]) == (200, 0), body
    return body["data"]


def image(volume_uuid: str) -> tuple[str, str]:
    """(qemu name, format) of a volume's head, whatever its pool's driver."""
    volume = Volume.objects.select_related("pool").get(uuid=volume_uuid)
    return source_of(get_driver(volume.pool.driver, volume.pool.path), f"volume/{volume_uuid}")


def snapshot_image(volume_uuid: str, snapshot_uuid: str) -> tuple[str, str]:
    from volumes.models import Snapshot

    row = Snapshot.objects.select_related("volume__pool").get(uuid=snapshot_uuid)
    pool = row.volume.pool
    return source_of(get_driver(pool.driver, pool.path), row.layer_name)


def same(first: tuple[str, str], second: tuple[str, str]) -> bool:
    return qemu.compare(first[0], second[0], fmt=first[1], second_fmt=second[1])


def write(volume_uuid: str, *chunks: tuple[int, int, int]) -> None:
    name, fmt = image(volume_uuid)
    qemu.io_write(name, list(chunks), fmt=fmt)


def test_the_contract_endpoints_on_an_rbd_pool(api, rbd_pool, point):
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name="onrbd", capacity=16 * MiB, pool_uuid=POOL_RBD, pool_name="rbd198")
    volume = ok(api.post("create", body))["volume"]
    vol = volume["UUID"]
    # What hosts receive: the image's rbd: name, the same for every host (no mount path).
    rbd_spec = rbd_pool.path.split(":", 1)[0]
    assert set(volume["AccessPath"].values()) == {f"rbd:{rbd_spec}/volume.{vol}"}
    write(vol, (0, MiB, 0x11), (4 * MiB, MiB, 0x22))
    s1 = ok(api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s1")))["snapshot"]["UUID"]
    assert same(image(vol), snapshot_image(vol, s1))
    write(vol, (0, MiB, 0x33), (8 * MiB, MiB, 0x44))
    s2 = ok(api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s2")))["snapshot"]["UUID"]
    assert not same(snapshot_image(vol, s1), snapshot_image(vol, s2))

    ok(api.post("snapshot/rollback", scoped(volume_uuid=vol, snapshot_uuid=s1)))
    assert same(image(vol), snapshot_image(vol, s1))
    ok(api.post("snapshot/rollback", scoped(volume_uuid=vol, snapshot_uuid=s2)))
    assert same(image(vol), snapshot_image(vol, s2)), "rollback kept the newer snapshot"

    for is_link, name, pool in (
        (True, "linked", POOL_RBD),
        (False, "full", POOL_RBD),
        (False, "todir", POOL_DISKS),
    ):
        clone_body = copy.deepcopy(EXAMPLES["clone"]["request"])
        clone_body.update(
            volume_uuid=vol,
            volume_name="onrbd",
            snapshot_uuid=s1,
            is_link=is_link,
            clone_dst_vol_name=name,
            clone_dst_pool_uuid=pool,
        )
        clone = ok(api.post("clone", clone_body))["volume"]
        assert same(image(clone["UUID"]), snapshot_image(vol, s1)), name

    backups = []
    for snap in (s1, s2):
        add = copy.deepcopy(EXAMPLES["backup/add"]["request"])
        add.update(
            volume_uuid=vol, snapshot_uuid=snap, backup_name=f"b-{snap[:4]}", backup_point_uuid=BACKUP_POINT
        )
        backups.append(ok(api.post("backup/add", add))["backup"]["UUID"])
    # The second backup is incremental: an overlay on the first, holding about what changed since s1.
    from backups.models import Backup

    second = Backup.objects.select_related("base").get(uuid=backups[1])
    assert second.base is not None and str(second.base.uuid) == backups[0]
    for backup, snap, pool in ((backups[1], s2, POOL_DISKS), (backups[0], s1, POOL_RBD)):
        restore = copy.deepcopy(EXAMPLES["backup/restore"]["request"])
        restore.update(backup_uuid=backup, new_volume_name=f"r-{snap[:4]}", new_pool_uuid=pool)
        restored = ok(api.post("backup/restore", restore))["volume"]["UUID"]
        assert same(image(restored), snapshot_image(vol, snap)), (pool, snap)
