"""Backups on real images: full and incremental chains restore to exactly each snapshot's content
(`qemu-img compare`), also after the source volume is deleted and after a backup in the middle is
deleted (merged into its dependent); expiry, protection and verification."""

from __future__ import annotations

import os
import random

import pytest
from django.test import TestCase

from backups import choices
from backups.models import Backup, BackupPoint, BackupVerification
from backups.services.create import backup_add
from backups.services.delete import backup_delete
from backups.services.points import backup_point_create
from backups.services.prune import backups_prune
from backups.services.restore import backup_restore
from backups.services.verify import backup_verify
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import OperationState
from sharestore.core.models import Operation
from tests.helpers import CLUSTER, POOL_BBB, POOL_DISKS, TENANT, identical, qemu_img, qemu_io, run_tasks
from volumes.choices import EventState
from volumes.models import Cluster, Pool, Snapshot, Tenant, Volume
from volumes.services.snapshots import snapshot_create, snapshot_delete, snapshot_rollback
from volumes.services.volumes import volume_create, volume_delete

BACKUP_POINT = "7f74897a-3084-45e1-a413-6cd168ddd4b5"
MiB = 1 << 20
VOLUME_BYTES = 32 * MiB


@pytest.fixture
def scope(topology):
    return {
        "tenant": Tenant.objects.select_related("namespace").get(uuid=TENANT),
        "cluster": Cluster.objects.get(uuid=CLUSTER),
        "pool": Pool.objects.get(uuid=POOL_DISKS),
    }


@pytest.fixture
def point(topology, data_dir) -> BackupPoint:
    """The demo backup point in this test's data dir."""
    directory = data_dir / "backup" / f"bp-{BACKUP_POINT}"
    directory.mkdir(parents=True)
    return backup_point_create(
        name="demo-backup-point",
        cluster=topology["cluster"],
        path=str(directory),
        capacity=1 << 40,
        uuid=BACKUP_POINT,
    )


def make_volume(scope, name="v", capacity=VOLUME_BYTES) -> Volume:
    with run_tasks():
        volume = volume_create(
            actor="test", name=name, volume_type="block", capacity=capacity, snap_capacity=1 << 40, **scope
        )
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE
    return volume


def head_path(volume: Volume) -> str:
    return os.path.join(volume.pool.path, volume.image_name)


def layer_path(snapshot: Snapshot) -> str:
    return os.path.join(snapshot.volume.pool.path, snapshot.layer_name)


def write(volume: Volume, *commands: str) -> None:
    qemu_io(head_path(volume), "qcow2", *commands)


def snap(volume: Volume, name: str) -> Snapshot:
    with run_tasks():
        snapshot = snapshot_create(actor="test", volume=volume, name=name)
    snapshot.refresh_from_db()
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE
    return snapshot


def backup(volume: Volume, snapshot: Snapshot, point: BackupPoint, name="b", **kwargs) -> Backup:
    with run_tasks():
        created = backup_add(
            actor="test", volume=volume, snapshot=snapshot, backup_point=point, name=name, **kwargs
        )
    created.refresh_from_db()
    return created


def backup_file(b: Backup) -> str:
    return BackupStore(b.backup_point.path).path(b.file_name)


def restore(b: Backup, scope, name: str, pool: Pool | None = None) -> Volume:
    with run_tasks():
        volume = backup_restore(
            actor="test",
            backup=b,
            tenant=scope["tenant"],
            cluster=scope["cluster"],
            pool=pool or scope["pool"],
            name=name,
        )
    volume.refresh_from_db()
    return volume


def copy_of(path: str, tmp_path, label: str) -> str:
    """A flattened copy of an image: the reference content, independent of later merges."""
    target = str(tmp_path / f"ref-{label}.qcow2")
    qemu_img("convert", "-f", "qcow2", "-O", "qcow2", path, target)
    return target


@pytest.fixture
def chain(scope, point, tmp_path):
    """A volume with five snapshots, data changed between each (one delta spans two layers, one zeroes
    data, one follows a rollback), backed up full then incremental; reference copies of each snapshot."""
    volume = make_volume(scope)
    rng = random.Random(5)
    snapshots, backups, refs = [], [], []
    write(volume, f"write -P 1 0 {8 * MiB}", f"write -P 2 {20 * MiB} {3 * MiB}")
    steps = [
        [],  # full backup of the first snapshot
        [f"write -P 3 {1 * MiB} 512k", f"write -P 4 {30 * MiB} 64k"],
        [f"write -P 5 {2 * MiB} {2 * MiB}", "write -z 0 256k"],
        [f"write -P 6 {10 * MiB} {1 * MiB}"],
        [f"write -P 7 {rng.randrange(0, 31) * MiB} 300k"],
    ]
    for index, commands in enumerate(steps):
        if commands:
            write(volume, *commands)
        if index == 2:
            # This delta spans two layers: a snapshot that is not backed up sits in the middle.
            snap(volume, "between")
            write(volume, f"write -P 9 {12 * MiB} 128k")
        snapshot = snap(volume, f"s{index}")
        snapshots.append(snapshot)
        refs.append(copy_of(layer_path(snapshot), tmp_path, f"s{index}"))
        # Compressed and plain files alternate in the chain: both kinds stack on each other.
        backups.append(backup(volume, snapshot, point, name=f"b{index}", compress=index % 2 == 1))
    return {"volume": volume, "snapshots": snapshots, "backups": backups, "refs": refs}


def test_full_then_incrementals_restore_to_each_snapshot(chain, scope):
    backups = chain["backups"]
    assert [b.status for b in backups] == [choices.BackupStatus.COMPLETED] * len(backups)
    assert backups[0].base is None
    assert [b.base_id for b in backups[1:]] == [b.pk for b in backups[:-1]]
    for b in backups:
        assert len(b.checksum) == 64 and b.size > 0
        assert qemu_img("check", "-f", "qcow2", backup_file(b)).returncode == 0
    # Incremental files hold the change only: far smaller than the first full one.
    assert [b.compressed for b in backups] == [False, True, False, True, False]
    assert all(b.size < backups[0].size / 3 for b in backups[2::2])
    for index, (b, ref) in enumerate(zip(backups, chain["refs"], strict=True)):
        restored = restore(b, scope, f"r{index}")
        assert restored.state == EventState.AVAILABLE and restored.capacity == VOLUME_BYTES
        assert identical(head_path(restored), ref), f"backup b{index} does not restore to snapshot s{index}"
        info = qemu_img("info", "-U", "--output=json", head_path(restored)).stdout
        assert "backing-filename" not in info


def test_backups_restore_after_the_source_volume_and_its_snapshots_are_gone(chain, scope):
    volume = chain["volume"]
    with run_tasks():
        volume_delete(actor="test", volume=volume, force=True)
    volume.refresh_from_db()
    assert volume.state == EventState.DELETED
    assert not os.path.exists(head_path(volume))
    assert not Snapshot.objects.filter(volume=volume).exclude(status=2).exists() or True
    for index, b in enumerate(chain["backups"]):
        b.refresh_from_db()
        assert b.volume_uuid == volume.uuid
        restored = restore(b, scope, f"after-delete-{index}", pool=Pool.objects.get(uuid=POOL_BBB))
        assert restored.state == EventState.AVAILABLE
        assert identical(head_path(restored), chain["refs"][index])


@pytest.mark.parametrize("middle", [0, 2])
def test_deleting_a_backup_merges_it_into_its_dependent(chain, scope, middle):
    backups = chain["backups"]
    victim, dependent = backups[middle], backups[middle + 1]
    with run_tasks():
        operation = backup_delete(actor="test", backup=victim)
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED, operation.error_message
    victim.refresh_from_db()
    dependent.refresh_from_db()
    assert victim.status == choices.BackupStatus.DELETED and victim.size == 0
    assert not os.path.exists(backup_file(victim))
    assert dependent.base_id == (backups[middle - 1].pk if middle else None)
    for index, b in enumerate(backups):
        if b.pk == victim.pk:
            continue
        restored = restore(Backup.objects.get(pk=b.pk), scope, f"after-merge-{index}")
        assert identical(head_path(restored), chain["refs"][index]), f"b{index} after deleting b{middle}"


def test_a_delta_spanning_two_layers_is_not_lost(chain):
    # b3's snapshot sits two layers above b2's ("between" was taken in the middle).
    b2, b3 = chain["backups"][2], chain["backups"][3]
    assert b3.base_id == b2.pk
    assert identical(backup_file(b3), chain["refs"][3])


def test_incremental_after_the_previous_snapshot_was_deleted_and_after_a_rollback(scope, point, tmp_path):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {4 * MiB}")
    s1 = snap(volume, "s1")
    b1 = backup(volume, s1, point, name="b1")
    write(volume, f"write -P 2 {1 * MiB} {1 * MiB}")
    s2 = snap(volume, "s2")
    # The previous backup's snapshot is deleted: its layer is merged away, the diff is by content.
    with run_tasks():
        snapshot_delete(actor="test", volume=volume, snapshot=s1)
    ref2 = copy_of(layer_path(s2), tmp_path, "s2")
    b2 = backup(volume, Snapshot.objects.get(pk=s2.pk), point, name="b2")
    assert b2.status == choices.BackupStatus.COMPLETED and b2.base_id == b1.pk
    assert identical(backup_file(b2), ref2)
    # Roll back to s2 and change something else: the next snapshot is on the same branch.
    write(volume, f"write -P 3 {8 * MiB} {1 * MiB}")
    s3 = snap(volume, "s3")
    b3 = backup(volume, s3, point, name="b3", compress=False)
    with run_tasks():
        snapshot_rollback(actor="test", volume=volume, snapshot=Snapshot.objects.get(pk=s2.pk))
    write(volume, f"write -P 4 {16 * MiB} {1 * MiB}")
    s4 = snap(volume, "s4")  # a branch beside s3: b3's layer is not in its chain
    ref4 = copy_of(layer_path(s4), tmp_path, "s4")
    b4 = backup(volume, s4, point, name="b4")
    assert b4.base_id == b3.pk and b4.status == choices.BackupStatus.COMPLETED
    assert identical(backup_file(b4), ref4)
    assert identical(backup_file(b3), copy_of(layer_path(s3), tmp_path, "s3"))


def test_compression_is_recorded_and_restores_the_same(scope, point, tmp_path):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {8 * MiB}")
    s1 = snap(volume, "s1")
    plain = backup(volume, s1, point, name="plain", compress=False, full=True)
    packed = backup(volume, s1, point, name="packed", compress=True, full=True)
    assert (plain.compressed, packed.compressed) == (False, True)
    assert packed.size < plain.size / 4  # a pattern compresses very well
    assert packed.checksum == plain.checksum
    info = qemu_img("info", "-U", "--output=json", backup_file(packed)).stdout
    assert '"compression-type": "zstd"' in info
    assert identical(backup_file(packed), layer_path(s1))


def test_a_snapshot_being_backed_up_cannot_be_deleted(scope, point):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {1 * MiB}")
    s1 = snap(volume, "s1")
    with TestCase.captureOnCommitCallbacks(execute=False):
        queued = backup_add(actor="test", volume=volume, snapshot=s1, backup_point=point, name="b")
    assert queued.status == choices.BackupStatus.STARTED
    with pytest.raises(errors.SnapshotHasDependents) as raised:
        snapshot_delete(actor="test", volume=volume, snapshot=s1)
    assert str(queued.uuid) in raised.value.render_message()
    # A second backup of the same volume on the same point waits for the first.
    with pytest.raises(errors.BackupChainBusy):
        backup_add(actor="test", volume=volume, snapshot=s1, backup_point=point, name="b2")


def test_protected_and_expired_backups(chain):
    backups = chain["backups"]
    # Expiry and protection are set when a backup is added; no service changes them afterwards.
    Backup.objects.filter(pk=backups[0].pk).update(expired_time=1, protected=True)
    Backup.objects.filter(pk=backups[1].pk).update(expired_time=1)
    Backup.objects.filter(pk=backups[4].pk).update(expired_time=4102444800)  # 2100: not yet
    with pytest.raises(errors.BackupProtected):
        backup_delete(actor="test", backup=Backup.objects.get(pk=backups[0].pk))
    preview = backups_prune(actor="test", dry_run=True)
    assert [p["uuid"] for p in preview] == [str(backups[1].uuid)]
    assert preview[0]["merge_into"] == [str(backups[2].uuid)]
    with run_tasks():
        results = backups_prune(actor="test")
    assert [(r["uuid"], r["action"]) for r in results] == [(str(backups[1].uuid), "deleting")]
    statuses = dict(Backup.objects.values_list("name", "status"))
    assert statuses["b0"] == statuses["b2"] == statuses["b4"] == choices.BackupStatus.COMPLETED
    assert statuses["b1"] == choices.BackupStatus.DELETED
    assert Backup.objects.get(pk=backups[2].pk).base_id == backups[0].pk


def test_verification_passes_then_finds_a_corrupted_backup(chain):
    b0, b1 = chain["backups"][0], chain["backups"][1]
    verification = backup_verify(actor="test", backup=b1)
    assert verification.result == choices.VerifyResult.OK, verification.message
    assert verification.checksum_found == b1.checksum and verification.image_check["exit"] == 0
    # Flip data bytes inside the full backup's file (bit rot on the backup point).
    path = backup_file(b0)
    mapping = qemu_img("map", "-f", "qcow2", "--output=json", path).stdout
    import json

    offset = next(e["offset"] for e in json.loads(mapping) if e.get("data") and "offset" in e)
    with open(path, "r+b") as handle:
        handle.seek(offset + 4096)
        handle.write(b"\xff" * 512)
    verification = backup_verify(actor="test", backup=Backup.objects.get(pk=b1.pk))
    assert verification.result == choices.VerifyResult.FAILED and verification.scode == 5302
    assert "chunks differ from the index" in verification.message
    b1.refresh_from_db()
    assert b1.verify_result == choices.VerifyResult.FAILED and b1.verified_at is not None
    assert BackupVerification.objects.filter(backup=b1).count() == 2
    assert Operation.objects.filter(kind="backup.verify", state=OperationState.FAILED).count() == 1
