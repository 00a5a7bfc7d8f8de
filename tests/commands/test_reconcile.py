"""manage.py reconcile on real pools: planted orphans, deleted images, stale sizes, broken chains."""

from __future__ import annotations

import io
import json
import os
import uuid as uuid_lib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from backups.services.points import backup_point_create
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from tests.admin.storage import (
    build_tree,
    head_path,
    make_old,
    new_volume,
    plant_orphan,
    pool_named,
    qemu_img,
)
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import get_driver
from volumes.models import Volume


def reconcile(*args: str) -> tuple[int, dict]:
    """Run the command with --json; return (exit code, document)."""
    out = io.StringIO()
    try:
        call_command("reconcile", "--json", *args, stdout=out, stderr=io.StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def kinds(document: dict) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["name"]) for r in document["reports"] for f in r["findings"])


def disk_agrees_with_db(pool) -> None:
    """Every live volume that promises an image has one, and every file is accounted for."""
    driver = get_driver(pool.driver, pool.path)
    files = set(driver._all_files())
    referenced = set()
    for volume in Volume.objects.filter(pool=pool).exclude(state=EventState.DELETED):
        referenced.add(volume.image_name)
        if volume.state == EventState.AVAILABLE:
            assert volume.image_name in files, volume
            assert volume.used == driver.usage(volume.image_name)
        for snapshot in volume.snapshots.exclude(status=SnapshotStatus.DELETING):
            referenced.add(snapshot.layer_name)
            if snapshot.status == SnapshotStatus.AVAILABLE:
                assert snapshot.layer_name in files
    assert files <= referenced, files - referenced


@pytest.fixture
def disks(topology):
    return pool_named(topology, "disks")


def test_consistent_pools_exit_zero_with_no_findings(topology, disks):
    volume = new_volume(topology, pool=disks, name="tree")
    build_tree(volume, [("s1", None), ("s2", "s1"), ("s3", "s1")], head_on="s2")
    new_volume(topology, pool=pool_named(topology, "bbb"), name="plain")
    code, document = reconcile()
    assert code == 0
    assert document["summary"] == {"targets": 3, "findings": 0, "fixed": 0, "remaining": 0, "unreadable": 0}
    files = {r["name"]: r["files_checked"] for r in document["reports"]}
    assert files == {"disks": 4, "bbb": 1, "rbd198": 0}


def test_dry_run_reports_orphan_missing_and_stale_size_and_changes_nothing(topology, disks):
    keep = new_volume(topology, pool=disks, name="keep")
    lost = new_volume(topology, pool=disks, name="lost")
    orphan = plant_orphan(disks)
    os.unlink(head_path(lost))
    Volume.objects.filter(pk=keep.pk).update(used=12345)

    code, document = reconcile("--pool", str(disks.uuid))

    assert code == 1
    orphan_name = str(orphan.relative_to(disks.path))
    assert kinds(document) == sorted(
        [("orphan_file", orphan_name), ("missing_file", lost.image_name), ("size_drift", keep.image_name)]
    )
    by_kind = {f["kind"]: f for f in document["reports"][0]["findings"]}
    assert by_kind["missing_file"]["fix"] == "mark_error" and by_kind["missing_file"]["fixed"] is False
    assert by_kind["size_drift"]["expected"] == "12345"
    assert document["summary"]["remaining"] == 3 and document["fix"] is False
    # A dry run writes nothing: the orphan is still there, the volume still claims to be available.
    assert orphan.exists()
    assert Volume.objects.get(pk=lost.pk).state == EventState.AVAILABLE
    assert Volume.objects.get(pk=keep.pk).used == 12345
    assert not AuditEvent.objects.filter(action__startswith="reconcile").exists()


def test_fix_repairs_the_incidents_and_then_database_and_disk_agree(topology, disks):
    keep = new_volume(topology, pool=disks, name="keep")
    lost = new_volume(topology, pool=disks, name="lost")
    tree = new_volume(topology, pool=disks, name="tree")
    snapshots = build_tree(tree, [("s1", None), ("s2", "s1")], head_on="s2")
    orphan = plant_orphan(disks)
    stale_partial = Path(disks.path) / "volume" / f".tmp-{uuid_lib.uuid4()}"
    stale_partial.write_bytes(b"\0" * 4096)
    make_old(stale_partial)
    os.unlink(head_path(lost))
    Volume.objects.filter(pk=keep.pk).update(used=1)
    Volume.objects.filter(pk=tree.pk).update(snap_length=7)

    code, document = reconcile("--fix", "--pool", str(disks.uuid))

    assert code == 0, document
    assert document["summary"]["findings"] == 5 and document["summary"]["fixed"] == 5
    assert not orphan.exists() and not stale_partial.exists()
    lost.refresh_from_db()
    assert lost.state == EventState.ERROR
    event = AuditEvent.objects.get(volume=lost, action="reconcile.missing_image")
    assert (event.from_state, event.to_state) == ("0 (available)", "11 (error)")
    assert event.actor.startswith("manage.py reconcile:")
    assert AuditEvent.objects.filter(action="reconcile.remove_orphan", result="ok").count() == 2
    # Snapshot layers are referenced: never removed.
    for snapshot in snapshots.values():
        assert (Path(disks.path) / snapshot.layer_name).exists()
    disk_agrees_with_db(disks)
    tree.refresh_from_db()
    assert tree.snap_length == sum(s.size for s in snapshots.values())

    # A second run finds nothing left to do.
    code, document = reconcile("--pool", str(disks.uuid))
    assert (code, document["summary"]["findings"]) == (0, 0)


def test_fix_keeps_young_orphans_partial_writes_of_live_operations_and_files_that_back_images(
    topology, disks
):
    young = plant_orphan(disks, old=False)
    busy = new_volume(topology, pool=disks, name="busy")
    partial = Path(disks.path) / "volume" / f".tmp-{busy.uuid}"
    partial.write_bytes(b"\0" * 4096)
    make_old(partial)
    Operation.objects.create(
        kind=OperationKind.VOLUME_CREATE,
        state=OperationState.RUNNING,
        volume=busy,
        target_type="volume",
        target_uuid=busy.uuid,
    )
    # A head whose backing file no snapshot row claims: removing that "orphan" would destroy data.
    rebased = new_volume(topology, pool=disks, name="rebased")
    ghost_name = f"snapshots/{rebased.uuid}/ghost.qcow2"
    ghost = plant_orphan(disks, ghost_name)
    qemu_img("rebase", "-u", "-f", "qcow2", "-b", f"../{ghost_name}", "-F", "qcow2", head_path(rebased))

    code, document = reconcile("--fix", "--pool", str(disks.uuid))

    assert code == 1
    findings = {f["name"]: f for r in document["reports"] for f in r["findings"]}
    assert findings[str(young.relative_to(disks.path))]["kept"] == "grace"
    assert findings[f"volume/.tmp-{busy.uuid}"]["kept"] == "busy"
    assert findings[ghost_name]["kept"] == "backs_image"
    assert findings[rebased.image_name]["kind"] == "chain_mismatch"
    assert findings[rebased.image_name]["found"] == ghost_name
    assert young.exists() and partial.exists() and ghost.exists()
    assert document["summary"]["fixed"] == 0


def test_chain_disagreeing_with_the_tree_is_reported_never_rewritten(topology, disks):
    volume = new_volume(topology, pool=disks, name="tree")
    snapshots = build_tree(volume, [("s1", None), ("s2", "s1")], head_on="s2")
    # The head now reads s1 although the database says it sits on s2.
    qemu_img(
        "rebase",
        "-u",
        "-f",
        "qcow2",
        "-b",
        f"../{snapshots['s1'].layer_name}",
        "-F",
        "qcow2",
        head_path(volume),
    )

    code, document = reconcile("--fix", "--pool", str(disks.uuid))

    assert code == 1
    [finding] = [f for r in document["reports"] for f in r["findings"]]
    assert (finding["kind"], finding["expected"], finding["found"], finding["fix"], finding["fixed"]) == (
        "chain_mismatch",
        snapshots["s2"].layer_name,
        snapshots["s1"].layer_name,
        "",
        False,
    )
    info = json.loads(qemu_img_out("info", "-U", "--output=json", head_path(volume)))
    assert info["backing-filename"] == f"../{snapshots['s1'].layer_name}"
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE


def qemu_img_out(*args: str) -> str:
    import subprocess

    from django.conf import settings

    return subprocess.run(
        [settings.SHARESTORE_QEMU_IMG, *args], check=True, capture_output=True, text=True
    ).stdout


def test_missing_snapshot_layer_marks_that_snapshot_error(topology, disks):
    volume = new_volume(topology, pool=disks, name="tree")
    snapshots = build_tree(volume, [("s1", None), ("s2", "s1"), ("s3", "s1")], head_on="s2")
    os.unlink(Path(disks.path) / snapshots["s3"].layer_name)

    code, document = reconcile("--fix", "--pool", str(disks.uuid))

    missing = [f for r in document["reports"] for f in r["findings"] if f["kind"] == "missing_file"]
    assert [(f["object_uuid"], f["fixed"]) for f in missing] == [(str(snapshots["s3"].uuid), True)]
    snapshots["s3"].refresh_from_db()
    assert snapshots["s3"].status == SnapshotStatus.ERROR
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE
    assert code == 0
    # An errored snapshot without its layer is what the database now says: nothing more to report.
    code, document = reconcile("--pool", str(disks.uuid))
    assert (code, document["summary"]["findings"]) == (0, 0)


def test_stuck_state_is_reported_for_reset_state(topology, disks):
    volume = new_volume(topology, pool=disks, name="stuck")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.SNAPSHOTTING)
    code, document = reconcile("--fix", "--pool", str(disks.uuid))
    assert code == 1
    [finding] = [f for r in document["reports"] for f in r["findings"]]
    assert (finding["kind"], finding["object_uuid"], finding["fix"]) == ("stuck_state", str(volume.uuid), "")


def _backup(point: BackupPoint, topology, *, file_name: str, status=BackupStatus.COMPLETED) -> Backup:
    return Backup.objects.create(
        name=f"b-{file_name}",
        backup_point=point,
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        volume_uuid=uuid_lib.uuid4(),
        volume_capacity=1 << 26,
        volume_type="block",
        snapshot_uuid=uuid_lib.uuid4(),
        snapshot_name="s",
        status=status,
        file_name=file_name,
    )


def test_backup_points_missing_backup_files_fail_and_orphans_go(topology, data_dir):
    directory = data_dir / "bp"
    directory.mkdir()
    point = backup_point_create(name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 30)
    present = _backup(point, topology, file_name="vol-a/full.qcow2")
    lost = _backup(point, topology, file_name="vol-a/incr.qcow2")
    (directory / "vol-a").mkdir()
    qemu_img("create", "-q", "-f", "qcow2", str(directory / present.file_name), str(1 << 26))
    orphan = directory / "vol-b" / "leftover.qcow2"
    orphan.parent.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", str(orphan), str(1 << 26))
    make_old(orphan)
    running = _backup(
        point, topology, file_name=f"vol-c/{uuid_lib.uuid4()}.qcow2", status=BackupStatus.RUNNING
    )
    partial = directory / "vol-c" / f".tmp-{running.uuid}.qcow2"
    partial.parent.mkdir()
    partial.write_bytes(b"\0" * 512)
    make_old(partial)

    code, document = reconcile("--backup-point", str(point.uuid))
    assert code == 1
    assert kinds(document) == sorted(
        [
            ("missing_file", lost.file_name),
            ("orphan_file", "vol-b/leftover.qcow2"),
            ("orphan_file", f"vol-c/.tmp-{running.uuid}.qcow2"),
        ]
    )

    code, document = reconcile("--fix", "--backup-point", str(point.uuid))
    assert code == 1  # the running backup's partial write is kept
    lost.refresh_from_db()
    assert lost.status == BackupStatus.FAILED
    assert not orphan.exists() and partial.exists() and (directory / present.file_name).exists()
    assert AuditEvent.objects.filter(action="reconcile.missing_backup_file", object_uuid=lost.uuid).exists()


def test_unknown_pool_is_a_usage_error(topology):
    with pytest.raises(CommandError) as error:
        call_command("reconcile", "--pool", str(uuid_lib.uuid4()), stdout=io.StringIO())
    assert error.value.returncode == 2
    assert "no pool with UUID" in str(error.value)


def test_missing_pool_directory_exits_3(topology, disks):
    os.rename(disks.path, disks.path + ".gone")
    code, document = reconcile("--pool", str(disks.uuid))
    assert code == 3
    assert document["reports"][0]["error"] == f"pool directory {disks.path} does not exist"


def test_plain_output_has_no_progress_bar_when_not_a_terminal(topology, disks):
    plant_orphan(disks)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile", "--pool", str(disks.uuid), stdout=out, stderr=err)
    text = out.getvalue()
    assert "\r" not in text and err.getvalue() == ""
    assert text.splitlines()[0].startswith(
        f"pool disks ({disks.uuid}) at {disks.path}: 1 file(s), 1 finding(s)"
    )
    assert "orphan_file" in text and "[would remove]" in text
    assert text.splitlines()[-1] == "dry run: 1 finding(s), 0 fixed, 1 remaining"
