"""Cross-kind moves through the contract's endpoints on a real (test) Ceph: full clones from a directory
(qcow2) pool into an RBD pool and back, restores of backups made on one kind of pool into the other
(full and incremental, plain and encrypted), each compared by content with `qemu-img compare` over
`rbd:pool/image:conf=…` names and qcow2 files; a linked clone across kinds refused with nothing left
behind (docs/storage.md "Cross-kind moves")."""

from __future__ import annotations

import copy

import pytest

from backups.models import Backup
from backups.services.points import backup_point_create
from sharestore import errors
from sharestore.core.models import Operation
from tests.api.test_clone_api import progress_query
from tests.contract import EXAMPLES
from tests.drivers.test_rbd_endpoints import POOL_RBD, image, ok, same, snapshot_image, write
from tests.helpers import POOL_DISKS, assert_error, scoped, storage_state
from volumes.choices import EventState
from volumes.drivers import get_driver, qemu
from volumes.drivers.rbd import cli
from volumes.models import Pool, Volume

MiB = 1 << 20
POINT_PLAIN = "7f74897a-3084-45e1-a413-6cd168ddd4b5"
POINT_ENCRYPTED = "5d0b5c39-4f0e-4b8e-9a57-2a4d8d1f61c1"


@pytest.fixture
def rbd_pool(topology, rbd_namespace):
    """The demo's rbd198 made a real RBD pool (a fresh namespace of the session's test Ceph)."""
    from sharestore.core.services import readcache

    location = rbd_namespace("cross")
    Pool.objects.filter(uuid=POOL_RBD).update(pool_type="rbd", driver="rbd", path=location)
    get_driver("rbd", location).mark_identity(POOL_RBD, name="rbd198")
    readcache.clear_all()
    return Pool.objects.get(uuid=POOL_RBD)


@pytest.fixture
def points(topology, data_dir):
    """A plain backup point and an encrypted one (the platform's pass_word)."""
    made = {}
    for uuid, password in ((POINT_PLAIN, None), (POINT_ENCRYPTED, "cross-kind secret")):
        directory = data_dir / "backup" / f"bp-{uuid}"
        directory.mkdir(parents=True)
        made[uuid] = backup_point_create(
            name=f"bp-{uuid[:4]}",
            cluster=topology["cluster"],
            path=str(directory),
            capacity=1 << 40,
            uuid=uuid,
            password=password,
        )
    return made


def create(api, name: str, pool: str, pool_name: str) -> str:
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name=name, capacity=16 * MiB, pool_uuid=pool, pool_name=pool_name)
    return ok(api.post("create", body))["volume"]["UUID"]


def snapshot(api, volume: str, name: str) -> str:
    return ok(api.post("snapshot/create", scoped(volume_uuid=volume, snapshot_name=name)))["snapshot"]["UUID"]


def clone_body(volume: str, snap: str, name: str, pool: str, *, linked: bool = False) -> dict:
    body = copy.deepcopy(EXAMPLES["clone"]["request"])
    body.update(
        volume_uuid=volume,
        volume_name=Volume.objects.get(uuid=volume).name,
        snapshot_uuid=snap,
        is_link=linked,
        clone_dst_vol_name=name,
        clone_dst_pool_uuid=pool,
    )
    return body


def full_clone(api, volume: str, snap: str, name: str, pool: str) -> dict:
    clone = ok(api.post("clone", clone_body(volume, snap, name, pool)))["volume"]
    _usable(clone["UUID"], pool)
    return clone


def backup(api, volume: str, snap: str, point: str) -> Backup:
    body = copy.deepcopy(EXAMPLES["backup/add"]["request"])
    body.update(volume_uuid=volume, snapshot_uuid=snap, backup_name=f"b-{snap[:6]}", backup_point_uuid=point)
    return Backup.objects.select_related("base").get(uuid=ok(api.post("backup/add", body))["backup"]["UUID"])


def restore(api, backup_row: Backup, name: str, pool: str) -> str:
    body = copy.deepcopy(EXAMPLES["backup/restore"]["request"])
    body.update(backup_uuid=str(backup_row.uuid), new_volume_name=name, new_pool_uuid=pool)
    restored = ok(api.post("backup/restore", body))["volume"]["UUID"]
    _usable(restored, pool)
    return restored


def _usable(volume_uuid: str, pool: str) -> None:
    """The volume is available in `pool`, its operation succeeded, and no partial write of it is left."""
    volume = Volume.objects.select_related("pool").get(uuid=volume_uuid)
    operation = Operation.objects.filter(volume=volume).order_by("-id").first()
    assert (str(volume.pool.uuid), volume.state, operation.state) == (
        pool,
        EventState.AVAILABLE,
        "succeeded",
    ), (
        volume.state,
        operation.kind,
        operation.state,
        operation.error_scode,
        operation.error_message,
        operation.error_detail[-1500:],
    )
    driver = get_driver(volume.pool.driver, volume.pool.path)
    assert [o.name for o in driver.inventory([volume.image_name]) if o.partial] == []


def rbd_images(pool: Pool) -> list[str]:
    return sorted(cli.list_names(cli.Cluster.parse(pool.path)))


def test_full_clones_between_a_directory_pool_and_an_rbd_pool(api, rbd_pool, data_dir):
    """Directory → RBD → directory: each full clone shows the snapshot's content, read through qemu's
    rbd: protocol on one side and the qcow2 chain on the other; each answers the AccessPath of its own
    pool's kind. A linked clone across kinds is refused (4201) with nothing left behind."""
    vol = create(api, "ondir", POOL_DISKS, "disks")
    write(vol, (0, MiB, 0x11), (5 * MiB, 2 * MiB, 0x22), (15 * MiB, MiB, 0x23))
    s1 = snapshot(api, vol, "s1")
    write(vol, (MiB, MiB, 0x33))
    s2 = snapshot(api, vol, "s2")  # s2's layer is an overlay on s1's: the copy reads the whole chain

    clone = full_clone(api, vol, s2, "to-rbd", POOL_RBD)
    to_rbd = clone["UUID"]
    rbd_spec = rbd_pool.path.split(":", 1)[0]
    assert set(clone["AccessPath"].values()) == {f"rbd:{rbd_spec}/volume.{to_rbd}"}
    assert image(to_rbd)[0].startswith("rbd:") and image(vol)[1] == "qcow2"
    assert same(image(to_rbd), snapshot_image(vol, s2))
    assert not same(image(to_rbd), snapshot_image(vol, s1))
    # The copy is independent (an RBD image with no parent) and as thin as the source: 5 MiB written
    # of 16, reserved and stored as such (64 KiB objects in the test cluster).
    rbd = cli.Cluster.parse(rbd_pool.path)
    info = cli.image_info(rbd, f"volume.{to_rbd}")
    assert info["size"] == 16 * MiB and not info.get("parent")
    assert sum(int(e["length"]) for e in cli.diff(rbd, f"volume.{to_rbd}")) == 5 * MiB
    operation = Operation.objects.get(volume__uuid=to_rbd, kind="clone.full")
    assert 5 * MiB <= operation.bytes_total < 8 * MiB

    # And back: a snapshot of the RBD copy into the directory pool.
    write(to_rbd, (9 * MiB, MiB, 0x44))
    t1 = snapshot(api, to_rbd, "t1")
    clone = full_clone(api, to_rbd, t1, "back", POOL_DISKS)
    back = clone["UUID"]
    assert all(path.endswith(f"/volume/{back}") for path in clone["AccessPath"].values())
    assert image(back)[1] == "qcow2" and not image(back)[0].startswith("rbd:")
    assert same(image(back), snapshot_image(to_rbd, t1))
    assert not same(image(back), snapshot_image(vol, s2))
    write(vol, (9 * MiB, MiB, 0x44))
    assert same(image(back), image(vol))

    before, images = storage_state(data_dir), rbd_images(rbd_pool)
    for source, snap, pool in ((vol, s1, POOL_RBD), (to_rbd, t1, POOL_DISKS)):
        status, body = api.post("clone", clone_body(source, snap, "linked", pool, linked=True))
        assert_error(status, body, 409, 4201)
        assert "driver" in body["message"] and "is_link=false" in body["message"], body["message"]
    assert storage_state(data_dir) == before and rbd_images(rbd_pool) == images


def test_restores_of_directory_backups_into_an_rbd_pool(api, rbd_pool, points):
    """Backups of a directory volume, a full one and an incremental one on it, restored into the RBD
    pool: the incremental restore reads the backup chain into one RBD image."""
    vol = create(api, "ondir", POOL_DISKS, "disks")
    write(vol, (0, 2 * MiB, 0x51), (12 * MiB, MiB, 0x52))
    s1 = snapshot(api, vol, "s1")
    write(vol, (MiB, 3 * MiB, 0x53), (12 * MiB, MiB, 0))
    s2 = snapshot(api, vol, "s2")

    full = backup(api, vol, s1, POINT_PLAIN)
    incremental = backup(api, vol, s2, POINT_PLAIN)
    assert full.base is None and incremental.base_id == full.pk

    restored = {}
    for row, snap, name in ((incremental, s2, "r-inc"), (full, s1, "r-full")):
        restored[name] = restore(api, row, name, POOL_RBD)
        assert image(restored[name])[0].startswith("rbd:"), name
        assert same(image(restored[name]), snapshot_image(vol, snap)), name
    assert not same(image(restored["r-inc"]), image(restored["r-full"]))


def test_restores_of_rbd_backups_into_a_directory_pool(api, rbd_pool, points):
    """Backups of an RBD volume (full, then incremental from `rbd diff --from-snap`, and an encrypted
    one: LUKS qcow2 written from an rbd: name) restored into the directory pool, the incremental one
    into the RBD pool too."""
    vol = create(api, "onrbd", POOL_RBD, "rbd198")
    write(vol, (0, MiB, 0x61), (7 * MiB, MiB, 0x62))
    s1 = snapshot(api, vol, "s1")
    write(vol, (7 * MiB, MiB, 0), (14 * MiB, 2 * MiB, 0x63))
    s2 = snapshot(api, vol, "s2")
    write(vol, (0, MiB, 0x64))  # the head moves on: restores show the snapshots' content, not this

    full = backup(api, vol, s1, POINT_PLAIN)
    incremental = backup(api, vol, s2, POINT_PLAIN)
    assert full.base is None and incremental.base_id == full.pk
    encrypted = backup(api, vol, s2, POINT_ENCRYPTED)
    assert encrypted.encrypted and encrypted.base is None

    cases = (
        (incremental, s2, POOL_DISKS, "d-inc"),
        (full, s1, POOL_DISKS, "d-full"),
        (encrypted, s2, POOL_DISKS, "d-enc"),
        (incremental, s2, POOL_RBD, "r-inc"),
    )
    for row, snap, pool, name in cases:
        restored = restore(api, row, name, pool)
        assert same(image(restored), snapshot_image(vol, snap)), name
        assert not same(image(restored), image(vol)), name


def test_failed_and_refused_copies_into_rbd_leave_nothing(api, rbd_pool, points, data_dir, monkeypatch):
    """A copy into the RBD pool that fails after writing (a clone, a restore): the operation fails with
    its error, the volume shows error, and no image of it (partial or published) stays in the pool.
    Then the pool's namespace is gone: a full clone and a restore into it answer 5003 at once and
    change nothing (no volume, no operation, no file)."""
    from sharestore.core.services import readcache

    vol = create(api, "ondir", POOL_DISKS, "disks")
    write(vol, (0, 4 * MiB, 0x71))
    s1 = snapshot(api, vol, "s1")
    row = backup(api, vol, s1, POINT_PLAIN)
    images = rbd_images(rbd_pool)
    convert = qemu.convert

    def convert_then_fail(source, target, **kwargs):
        convert(source, target, **kwargs)
        if target.startswith("rbd:"):
            raise errors.StorageError(reason="injected: the copy into RBD broke off", desc="injected")

    def restore_body(name: str) -> dict:
        body = copy.deepcopy(EXAMPLES["backup/restore"]["request"])
        body.update(backup_uuid=str(row.uuid), new_volume_name=name, new_pool_uuid=POOL_RBD)
        return body

    monkeypatch.setattr(qemu, "convert", convert_then_fail)
    made = {}
    for path, body in (
        ("clone", clone_body(vol, s1, "c-broken", POOL_RBD)),
        ("backup/restore", restore_body("r-broken")),
    ):
        new = made[path] = ok(api.post(path, body))["volume"]["UUID"]
        operation = Operation.objects.filter(volume__uuid=new).order_by("-id").first()
        assert operation.state == "failed" and "injected" in operation.error_message, path
        assert Volume.objects.get(uuid=new).state == EventState.ERROR, path
        assert rbd_images(rbd_pool) == images, path
    # The contract's clone/progress answers the clone's failure with its error envelope.
    status, answer = api.get("clone/progress", progress_query(made["clone"]))
    assert answer["scode"] != 0 and "injected" in answer["message"], answer
    monkeypatch.undo()

    gone = rbd_pool.path.replace("/cross-", "/gone-", 1)
    assert gone != rbd_pool.path
    Pool.objects.filter(uuid=POOL_RBD).update(path=gone)
    readcache.clear_all()
    before = storage_state(data_dir)
    for path, body in (
        ("clone", clone_body(vol, s1, "nowhere", POOL_RBD)),
        ("backup/restore", restore_body("r-no")),
    ):
        status, answer = api.post(path, body)
        assert_error(status, answer, 503, 5003)
        assert "No such file or directory" in answer["message"], answer["message"]
        assert storage_state(data_dir) == before, path
