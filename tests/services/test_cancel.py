"""Cancel of copies on real images: a running full clone in a real `qcluster` worker is stopped (its
qemu-img killed), its partial file removed, the clone volume left `error` and its reservation released;
a queued backup is cancelled at once with its rows undone, and its late task does nothing; a finished
operation or a kind that is no copy is refused and nothing changes.

The running copy is slowed by a fault-injection wrapper around qemu-img that passes `-r` (qemu-img's
own rate limit) to `convert`: the real qemu-img copies real data, only slower."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import threading

import pytest

from backups.models import Backup
from backups.services.create import backup_add
from backups.services.points import backup_point_create
from sharestore import errors
from sharestore.core import fencing
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services.cancel import operation_cancel
from sharestore.core.services.space import reserved_bytes, reserved_on
from sharestore.core.tasks import operation_task
from tests.helpers import POOL_DISKS, qemu_io, run_tasks
from tests.services.test_hosts_real import partials, scope_of, wait_for, workers  # noqa: F401
from volumes.choices import BackupStatus, EventState
from volumes.drivers import process, qemu
from volumes.models import Snapshot, Volume
from volumes.services import clones
from volumes.services.snapshots import snapshot_create
from volumes.services.volumes import volume_create

MiB = 1 << 20
DATA = 32 * MiB  # at 1 MiB/s the clone copies for about half a minute: ample time to cancel it


def slow_qemu_img(directory) -> str:
    """A qemu-img whose `convert` runs under qemu-img's own rate limit (`-r`); `exec`, so the copying
    process is the one the worker started and the one its cancel kills."""
    path = os.path.join(directory, "slow-qemu-img")
    with open(path, "w") as script:
        script.write(
            "#!/bin/sh\n"
            'if [ "$1" = convert ]; then shift; exec qemu-img convert -r 1M "$@"; fi\n'
            'exec qemu-img "$@"\n'
        )
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def source_snapshot(scope, name="src") -> tuple[Volume, Snapshot]:
    """A volume holding DATA bytes of real data, and a snapshot of it (through the running worker)."""
    volume = volume_create(
        **scope, actor="t", name=name, volume_type="block", capacity=64 * MiB, snap_capacity=1 << 40
    )
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE, 120)
    qemu_io(os.path.join(scope["pool"].path, volume.image_name), "qcow2", f"write -P 7 0 {DATA}")
    snapshot = snapshot_create(actor="t", volume=Volume.objects.get(pk=volume.pk), name="s0")
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE, 120)
    snapshot.refresh_from_db()
    return Volume.objects.get(pk=volume.pk), snapshot


def copying(operation: Operation, pool_dir: str) -> Operation | None:
    """The operation once its copy is under way: running, phase copying, its partial file in the pool.

    (qemu-img's `-p` counts requests as they are issued: under a write rate limit it reports 100 %
    early and then waits for the writes, so bytes reported are no sign of a copy under way.)"""
    return wait_for(
        lambda: (
            partials(pool_dir)
            and Operation.objects.filter(
                pk=operation.pk, state=OperationState.RUNNING, phase="copying"
            ).first()
        )
    )


def ended(operation_id):
    operation = Operation.objects.get(pk=operation_id)
    return operation if operation.state not in (OperationState.QUEUED, OperationState.RUNNING) else None


def test_a_running_full_clone_is_stopped_its_partial_removed_and_it_ends_cancelled(
    workers, topology, tmp_path
):
    workers.start(
        "w",
        SHARESTORE_QEMU_IMG=slow_qemu_img(tmp_path),
        SHARESTORE_LEASE_SECONDS="6",
        SHARESTORE_HEARTBEAT_SECONDS="1",
    )
    scope = scope_of(POOL_DISKS)
    pool_dir = scope["pool"].path
    source, snapshot = source_snapshot(scope)
    clone = clones.clone_create(
        actor="t",
        source=source,
        snapshot=snapshot,
        tenant=scope["tenant"],
        pool=scope["pool"],
        name="copy",
        linked=False,
    )
    operation = Operation.objects.get(target_uuid=clone.uuid, kind=OperationKind.CLONE_FULL)
    on = reserved_on("pool", scope["pool"].uuid)
    assert reserved_bytes(on) > 0

    # The copy is under way: its partial file is in the pool directory.
    running = copying(operation, pool_dir)
    assert running is not None, Operation.objects.filter(pk=operation.pk).values()

    answered = operation_cancel(actor="operator-7", operation=running)
    assert answered.state == OperationState.RUNNING and answered.cancel_requested_by == "operator-7"
    # Asking again while the worker stops it changes nothing.
    assert (
        operation_cancel(actor="operator-7", operation=running).cancel_requested_at
        == answered.cancel_requested_at
    )

    final = wait_for(lambda: ended(operation.pk), 60)
    assert final is not None
    assert final.state == OperationState.CANCELLED
    assert final.error_scode == errors.OperationCancelled.scode
    assert "operator-7" in final.error_message
    # Stopped before the end: it never reached 100 %.
    assert final.progress < 100
    # No partial and no published image of the clone anywhere in the pool.
    assert partials(pool_dir) == []
    assert not any(
        clone.image_name.split("/")[-1] in name for _d, _s, names in os.walk(pool_dir) for name in names
    )
    clone.refresh_from_db()
    assert clone.state == EventState.ERROR
    assert reserved_bytes(on) == 0
    request = AuditEvent.objects.get(action="operation.cancel", operation=operation)
    assert request.actor == "operator-7" and request.object_uuid == operation.uuid
    assert AuditEvent.objects.filter(
        action="clone.full.cancelled", operation=operation, result="cancelled"
    ).exists()
    assert not AuditEvent.objects.filter(action="clone.full.failed", operation=operation).exists()
    # The source is untouched and the worker takes new work: a second clone completes.
    again = clones.clone_create(
        actor="t",
        source=Volume.objects.get(pk=source.pk),
        snapshot=snapshot,
        tenant=scope["tenant"],
        pool=scope["pool"],
        name="copy-2",
        linked=True,
    )
    assert wait_for(lambda: Volume.objects.get(pk=again.pk).state == EventState.AVAILABLE, 120)

    # A late redelivery of the cancelled operation's task does nothing.
    operation_task(operation.pk)
    assert Operation.objects.get(pk=operation.pk).state == OperationState.CANCELLED
    assert Volume.objects.get(pk=clone.pk).state == EventState.ERROR


def test_a_running_backup_is_stopped_and_leaves_no_file_on_the_backup_point(
    workers, topology, data_dir, tmp_path
):
    workers.start(
        "w",
        SHARESTORE_QEMU_IMG=slow_qemu_img(tmp_path),
        SHARESTORE_LEASE_SECONDS="6",
        SHARESTORE_HEARTBEAT_SECONDS="1",
    )
    scope = scope_of(POOL_DISKS)
    source, snapshot = source_snapshot(scope)
    directory = data_dir / "backup" / "bp"
    directory.mkdir(parents=True)
    point = backup_point_create(name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40)
    backup = backup_add(actor="t", volume=source, snapshot=snapshot, backup_point=point, name="nightly")
    operation = Operation.objects.get(target_uuid=backup.uuid, kind=OperationKind.BACKUP_CREATE)
    running = wait_for(
        lambda: (
            partials(str(directory))
            and Operation.objects.filter(pk=operation.pk, state=OperationState.RUNNING).first()
        )
    )
    assert running is not None, Operation.objects.filter(pk=operation.pk).values()

    operation_cancel(actor="operator-9", operation=running)

    final = wait_for(lambda: ended(operation.pk), 60)
    assert final is not None and final.state == OperationState.CANCELLED, final and final.error_message
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.FAILED
    files = [os.path.join(d, f) for d, _s, names in os.walk(directory) for f in names]
    assert files == []
    assert reserved_bytes(reserved_on("backup-point", point.uuid)) == 0
    assert AuditEvent.objects.filter(action="backup.create.cancelled", operation=operation).count() == 1


@pytest.fixture
def backup_source(topology, data_dir):
    scope = scope_of(POOL_DISKS)
    with run_tasks():
        volume = volume_create(
            **scope, actor="t", name="db", volume_type="block", capacity=16 * MiB, snap_capacity=1 << 40
        )
    qemu_io(os.path.join(scope["pool"].path, volume.image_name), "qcow2", "write -P 3 0 4M")
    with run_tasks():
        snapshot = snapshot_create(actor="t", volume=Volume.objects.get(pk=volume.pk), name="nightly")
    directory = data_dir / "backup" / "bp"
    directory.mkdir(parents=True)
    point = backup_point_create(name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40)
    return Volume.objects.get(pk=volume.pk), Snapshot.objects.get(pk=snapshot.pk), point, directory


def test_a_queued_backup_is_cancelled_at_once_and_its_late_task_does_nothing(backup_source):
    volume, snapshot, point, directory = backup_source
    # Not run: its task would be sent when the transaction commits, which this test never lets happen.
    backup = backup_add(actor="t", volume=volume, snapshot=snapshot, backup_point=point, name="b1")
    operation = Operation.objects.get(target_uuid=backup.uuid, kind=OperationKind.BACKUP_CREATE)
    on = reserved_on("backup-point", point.uuid)
    assert operation.state == OperationState.QUEUED and reserved_bytes(on) > 0

    answered = operation_cancel(actor="console:alice", operation=operation)

    assert answered.state == OperationState.CANCELLED and answered.finished is not None
    assert answered.error_scode == errors.OperationCancelled.scode
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.FAILED
    assert reserved_bytes(on) == 0
    assert os.listdir(directory) == [] or not any(backup.file_name in n for n in os.listdir(directory))
    assert AuditEvent.objects.get(action="operation.cancel", operation=operation).actor == "console:alice"
    assert AuditEvent.objects.filter(action="backup.create.cancelled", operation=operation).count() == 1

    # The broker delivers at least once: the task, arriving now, finds nothing to claim.
    events = AuditEvent.objects.count()
    operation_task(operation.pk)
    assert Operation.objects.get(pk=operation.pk).state == OperationState.CANCELLED
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.FAILED
    assert AuditEvent.objects.count() == events


def test_cancel_of_a_finished_copy_or_of_a_kind_that_is_no_copy_is_refused(backup_source):
    volume, snapshot, point, _directory = backup_source
    with run_tasks():
        backup = backup_add(actor="t", volume=volume, snapshot=snapshot, backup_point=point, name="b2")
    done = Operation.objects.get(target_uuid=backup.uuid, kind=OperationKind.BACKUP_CREATE)
    assert done.state == OperationState.SUCCEEDED
    snapshot_op = Operation.objects.filter(kind=OperationKind.SNAPSHOT_CREATE).latest("pk")
    events = AuditEvent.objects.count()

    with pytest.raises(errors.OperationAlreadyEnded) as ended_error:
        operation_cancel(actor="t", operation=done)
    assert ended_error.value.scode == 4722 and "succeeded" in ended_error.value.render_message()
    assert "已经结束" in ended_error.value.render_message_cn()

    with pytest.raises(errors.OperationNotCancellable) as kind_error:
        operation_cancel(actor="t", operation=snapshot_op)
    assert kind_error.value.scode == 4721
    assert "create snapshot" in kind_error.value.render_message()
    assert "创建快照" in kind_error.value.render_message_cn()

    # Nothing changed.
    done.refresh_from_db()
    assert done.state == OperationState.SUCCEEDED and done.cancel_requested_at is None
    assert Backup.objects.get(pk=backup.pk).status == BackupStatus.COMPLETED
    assert AuditEvent.objects.count() == events


def test_the_engine_kills_a_copy_once_its_cancel_event_is_set_and_finishes_metadata_steps(tmp_path, settings):
    source, target = str(tmp_path / "src.qcow2"), str(tmp_path / "dst.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", source, str(64 * MiB)], check=True)
    qemu_io(source, "qcow2", f"write -P 9 0 {16 * MiB}")
    settings.SHARESTORE_QEMU_IMG = slow_qemu_img(tmp_path)  # 16 MiB at 1 MiB/s: a copy that runs
    cancel = threading.Event()
    started = threading.Timer(0.5, cancel.set)
    started.start()
    try:
        with fencing.installed(contextlib.nullcontext, operation_id=1, attempt=1, cancel=cancel):
            with pytest.raises(process.CommandCancelled) as stopped:
                qemu.convert(source, target)
            assert stopped.value.scode == errors.OperationCancelled.scode
            # The event stays set: a metadata read after it still runs to its end.
            assert qemu.info(source)["virtual-size"] == 64 * MiB
    finally:
        started.cancel()
    # The killed qemu-img is gone (reaped): nothing writes to the target any more.
    running = subprocess.run(["pgrep", "-f", target], capture_output=True, text=True)
    assert running.stdout.strip() == ""
