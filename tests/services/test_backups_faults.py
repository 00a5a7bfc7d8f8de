"""Backups under crashes, redelivery, a full backup point (ENOSPC on a tmpfs) and failing commands: no
partial backup ever looks complete, and every interrupted step finishes or rolls back."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import TestCase
from django.utils import timezone

from backups import choices
from backups.models import Backup, BackupPoint
from backups.services.create import backup_add
from backups.services.delete import backup_delete
from backups.services.restore import backup_restore
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import OperationState
from sharestore.core.models import Operation
from sharestore.core.services import operations
from sharestore.core.tasks import operation_task
from tests.services.test_backups import (  # noqa: F401 - fixtures
    MiB,
    backup,
    backup_file,
    head_path,
    identical,
    layer_path,
    make_volume,
    point,
    run_tasks,
    scope,
    snap,
    write,
)
from volumes.choices import EventState
from volumes.drivers import marker, process
from volumes.drivers.base import PoolSpace
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.models import Pool, Volume

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root"
)


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs: a directory that fills up."""
    directory = tmp_path / "small"
    directory.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)], capture_output=True
    ).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield directory
    subprocess.run(["umount", str(directory)], check=False)


def files_under(path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), path)
        for d, _, fs in os.walk(path)
        for f in fs
        if f != marker.MARKER_NAME
    )


def queued_backup(volume, snapshot, point, **kwargs):
    with TestCase.captureOnCommitCallbacks(execute=False):
        created = backup_add(
            actor="test", volume=volume, snapshot=snapshot, backup_point=point, name="b", **kwargs
        )
    return created, Operation.objects.get(target_uuid=created.uuid)


@needs_root
def test_a_full_backup_point_fails_the_backup_and_leaves_no_file(scope, point, tmpfs):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {6 * MiB}")
    s1 = snap(volume, "s1")
    created, operation = queued_backup(volume, s1, point, compress=False)
    # The space is gone between the request and the task: the point now lies on a full filesystem.
    BackupPoint.objects.filter(pk=point.pk).update(path=str(tmpfs))
    operation_task(operation.pk)
    operation.refresh_from_db()
    created.refresh_from_db()
    assert (operation.state, operation.error_scode) == (OperationState.FAILED, 5004), operation.error_message
    assert (created.status, created.size, created.checksum) == (choices.BackupStatus.FAILED, 0, "")
    assert files_under(tmpfs) == []
    # The snapshot is free again: nothing reads it any more.
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE


@needs_root
def test_a_full_pool_fails_the_restore_and_leaves_no_file(scope, point, tmpfs, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {6 * MiB}")
    b = backup(volume, snap(volume, "s1"), point, compress=False)
    Pool.objects.filter(pk=scope["pool"].pk).update(path=str(tmpfs))
    scope["pool"].refresh_from_db()
    marker.write_marker(str(tmpfs), str(scope["pool"].uuid))
    # The request sees the pool cannot hold the copy: refused at once, nothing recorded.
    with pytest.raises(errors.PoolSpaceShort):
        backup_restore(actor="test", backup=b, name="r", **scope)
    assert not Volume.objects.filter(name="r").exists() and files_under(tmpfs) == []
    # The filesystem fills after the request was accepted: the copy fails late, and cleanly.
    monkeypatch.setattr(Qcow2DirectoryDriver, "space", lambda self: PoolSpace(total=1 << 40, free=1 << 40))
    with run_tasks():
        restored = backup_restore(actor="test", backup=b, name="r", **scope)
    restored.refresh_from_db()
    operation = Operation.objects.get(target_uuid=restored.uuid)
    assert (operation.state, operation.error_scode, restored.state) == (
        OperationState.FAILED,
        5004,
        EventState.ERROR,
    )
    assert files_under(tmpfs) == []


def test_a_crashed_backup_is_finished_by_the_sweeper_and_the_partial_file_replaced(scope, point, tmp_path):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {2 * MiB}")
    s1 = snap(volume, "s1")
    created, operation = queued_backup(volume, s1, point)
    # The dead worker had claimed it, moved it to running and left half a file.
    Backup.objects.filter(pk=created.pk).update(status=choices.BackupStatus.RUNNING)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="dead",
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    store = BackupStore(point.path)
    os.makedirs(os.path.dirname(store.path(created.file_name)), exist_ok=True)
    with open(store.tmp_path(created.file_name), "wb") as handle:
        handle.write(b"QFI\xfb half a qcow2")
    assert [o.pk for o in operations.operations_sweep()] == [operation.pk]
    created.refresh_from_db()
    assert created.status == choices.BackupStatus.COMPLETED and len(created.checksum) == 64
    assert not os.path.exists(store.tmp_path(created.file_name))
    assert identical(backup_file(created), layer_path(s1))


def test_a_backup_published_before_a_crash_is_not_written_again(scope, point, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {2 * MiB}")
    s1 = snap(volume, "s1")
    created, operation = queued_backup(volume, s1, point)
    # First attempt: the file is written and published, then the hashing dies with the worker.
    real_run = process.run

    def dying(argv, **kwargs):
        if argv[1] == "map":  # the chunk hashing's first step
            raise KeyboardInterrupt("worker killed")
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", dying)
    with pytest.raises(KeyboardInterrupt):
        operation_task(operation.pk)
    monkeypatch.setattr(process, "run", real_run)
    path = backup_file(created)
    assert os.path.isfile(path) and Backup.objects.get(pk=created.pk).status == choices.BackupStatus.RUNNING
    mtime = os.stat(path).st_mtime_ns
    Operation.objects.filter(pk=operation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    operation_task(operation.pk)  # redelivered
    created.refresh_from_db()
    assert created.status == choices.BackupStatus.COMPLETED
    assert os.stat(path).st_mtime_ns == mtime
    operation_task(operation.pk)  # once more: nothing to do
    assert Operation.objects.get(pk=operation.pk).attempts == 2


def test_a_failure_after_publishing_removes_the_file(scope, point, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {2 * MiB}")
    s1 = snap(volume, "s1")
    created, operation = queued_backup(volume, s1, point)
    real_run = process.run

    def failing(argv, **kwargs):
        if argv[1] == "map":  # the chunk hashing reads the map of a file that is not there
            return real_run([*argv[:-1], "/nonexistent"], **kwargs)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", failing)
    operation_task(operation.pk)
    created.refresh_from_db()
    assert created.status == choices.BackupStatus.FAILED
    assert files_under(point.path) == []
    assert Operation.objects.get(pk=operation.pk).error_scode == 5001


def test_a_failure_after_the_index_is_written_removes_it_too(scope, point, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {2 * MiB}")
    created, operation = queued_backup(volume, snap(volume, "s1"), point)

    def no_size(self, name):
        raise errors.StorageError(reason="stat failed")

    monkeypatch.setattr(BackupStore, "disk_usage", no_size)  # the step after the index is published
    operation_task(operation.pk)
    created.refresh_from_db()
    assert created.status == choices.BackupStatus.FAILED
    assert files_under(point.path) == []


def test_an_interrupted_delete_is_finished_by_deleting_again(scope, point, tmp_path, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {4 * MiB}")
    b1 = backup(volume, snap(volume, "s1"), point, name="b1")
    write(volume, f"write -P 2 {1 * MiB} {1 * MiB}")
    s2 = snap(volume, "s2")
    b2 = backup(volume, s2, point, name="b2")
    # The merge succeeds, then removing the merged file fails.
    real_remove = BackupStore.remove
    monkeypatch.setattr(
        BackupStore, "remove", lambda self, name: (_ for _ in ()).throw(OSError(5, "I/O error"))
    )
    with run_tasks():
        operation = backup_delete(actor="test", backup=b1)
    monkeypatch.setattr(BackupStore, "remove", real_remove)
    operation.refresh_from_db()
    b1.refresh_from_db()
    b2.refresh_from_db()
    assert operation.state == OperationState.FAILED
    # The dependent no longer reads b1: recorded at once; b1 stays out of service until deleted again.
    assert (b1.status, b2.base_id) == (choices.BackupStatus.DELETING, None)
    assert identical(backup_file(b2), layer_path(s2))
    with run_tasks():
        backup_delete(actor="test", backup=b1)
    b1.refresh_from_db()
    assert b1.status == choices.BackupStatus.DELETED and not os.path.exists(backup_file(b1))
    assert identical(backup_file(b2), layer_path(s2))


def test_a_failed_merge_puts_the_backup_back(scope, point, monkeypatch):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {4 * MiB}")
    b1 = backup(volume, snap(volume, "s1"), point, name="b1")
    write(volume, f"write -P 2 {1 * MiB} {1 * MiB}")
    s2 = snap(volume, "s2")
    b2 = backup(volume, s2, point, name="b2")
    real_run = process.run

    def failing(argv, **kwargs):
        if argv[1] == "rebase":
            raise process.CommandFailed(process.CommandResult(tuple(argv), 1, "", "injected"))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", failing)
    with run_tasks():
        backup_delete(actor="test", backup=b1)
    monkeypatch.setattr(process, "run", real_run)
    b1.refresh_from_db()
    b2.refresh_from_db()
    assert (b1.status, b2.base_id) == (choices.BackupStatus.COMPLETED, b1.pk)
    assert identical(backup_file(b2), layer_path(s2))


def test_commands_prune_and_verify(scope, point, capsys):
    import json

    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {1 * MiB}")
    b1 = backup(volume, snap(volume, "s1"), point, name="b1", expired_time=1)
    write(volume, f"write -P 2 0 {1 * MiB}")
    b2 = backup(volume, snap(volume, "s2"), point, name="b2")
    call_command("prune_backups", "--json")  # destructive commands only report without --fix
    preview = json.loads(capsys.readouterr().out)
    assert preview["backups"][0]["uuid"] == str(b1.uuid) and preview["backups"][0]["merge_into"] == [
        str(b2.uuid)
    ]
    assert Backup.objects.get(pk=b1.pk).status == choices.BackupStatus.COMPLETED
    call_command("verify_backups", "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["verified"], report["failed"]) == (2, 0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("prune_backups", "--fix", "--json")
    result = json.loads(capsys.readouterr().out)
    assert result["backups"][0]["action"] == "deleting"
    assert Backup.objects.get(pk=b1.pk).status == choices.BackupStatus.DELETED
    assert Backup.objects.get(pk=b2.pk).base_id is None
    call_command("verify_backups", str(b2.uuid))
    assert capsys.readouterr().out.startswith("ok: b2")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prune_backups_draws_a_progress_bar_on_a_terminal_only(scope, point):
    volume = make_volume(scope)
    backups = [backup(volume, snap(volume, f"s{i}"), point, name=f"old{i}", expired_time=1) for i in range(2)]
    terminal, out = Terminal(), io.StringIO()
    call_command("prune_backups", stdout=out, stderr=terminal)
    # Redrawn in place (carriage returns; 1/2 may be skipped, redraws are throttled), one newline at the end.
    drawn = terminal.getvalue()
    assert drawn.startswith(f"\r[{'.' * 30}] 0/2 {'old0':<50}\r")
    assert drawn.endswith(f"\r[{'#' * 30}] 2/2 {'':<50}\n") and drawn.count("\n") == 1
    assert [line.split()[:3] for line in out.getvalue().splitlines()] == [
        ["would", "delete:", b.name] for b in backups
    ]
    piped = io.StringIO()
    call_command("prune_backups", stdout=io.StringIO(), stderr=piped)
    assert piped.getvalue() == ""


def test_verify_backups_selection(scope, point, capsys):
    import json

    from django.utils import timezone

    first, second = make_volume(scope, name="v1"), make_volume(scope, name="v2")
    b1 = backup(first, snap(first, "s1"), point, name="b1")
    b2 = backup(second, snap(second, "s2"), point, name="b2")

    def verified(*args) -> list[str]:
        call_command("verify_backups", "--json", *args)
        return [entry["name"] for entry in json.loads(capsys.readouterr().out)["backups"]]

    assert verified("--volume", str(first.uuid)) == ["b1"]
    assert verified("--backup", str(b2.uuid)) == ["b2"]
    assert verified("--point", str(point.uuid), "--older-than", "1") == []  # both verified just now
    Backup.objects.filter(pk=b1.pk).update(verified_at=timezone.now() - timezone.timedelta(days=3))
    assert verified("--older-than", "2") == ["b1"]
    assert verified("--point", str(point.uuid), "--limit", "1") == ["b2"]  # least recently verified
    with pytest.raises(CommandError):
        call_command("verify_backups", "--point", "00000000-0000-0000-0000-000000000000")


def test_a_crashed_restore_is_finished_by_the_sweeper_and_no_partial_is_left(scope, point):
    volume = make_volume(scope)
    write(volume, f"write -P 1 0 {2 * MiB}")
    s1 = snap(volume, "s1")
    b = backup(volume, s1, point)
    with TestCase.captureOnCommitCallbacks(execute=False):
        restored = backup_restore(actor="test", backup=b, name="r", **scope)
    operation = Operation.objects.get(target_uuid=restored.uuid)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="dead",
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    # What the dead attempt left in the pool: a partial under its own tag, nothing published.
    directory = os.path.dirname(head_path(restored))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f".tmp-{restored.uuid}.a1-deadbeef"), "wb") as handle:
        handle.write(b"QFI\xfb half a qcow2")
    assert [o.pk for o in operations.operations_sweep()] == [operation.pk]
    restored.refresh_from_db()
    assert restored.state == EventState.AVAILABLE
    assert [n for n in os.listdir(directory) if n.startswith(".tmp-")] == []
    assert identical(head_path(restored), layer_path(s1))
