"""Operations of the volume lifecycle under redelivery, crashes, failures and a full pool."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import OperationState
from sharestore.core.models import Operation
from sharestore.core.services import operations
from sharestore.core.services.state import transition
from sharestore.core.tasks import operation_task
from tests.helpers import CLUSTER, POOL_DISKS, TENANT, qemu_img
from volumes.choices import EventState
from volumes.drivers import marker
from volumes.drivers.base import PoolSpace
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.models import Cluster, Pool, Tenant, Volume
from volumes.services.volumes import VOLUME_CREATE_HANDLER, volume_create, volume_delete


@pytest.fixture
def scope(topology):
    return {
        "tenant": Tenant.objects.select_related("namespace").get(uuid=TENANT),
        "cluster": Cluster.objects.get(uuid=CLUSTER),
        "pool": Pool.objects.get(uuid=POOL_DISKS),
    }


def create(scope, django_capture_on_commit_callbacks, *, execute=True, **kwargs):
    params = dict(actor="test", name="v", volume_type="block", capacity=64 << 20, snap_capacity=0) | kwargs
    with django_capture_on_commit_callbacks(execute=execute):
        volume = volume_create(**scope, **params)
    return volume, Operation.objects.get(target_uuid=volume.uuid)


def head(volume) -> str:
    return os.path.join(volume.pool.path, volume.image_name)


def test_a_redelivered_task_does_nothing_twice(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, django_capture_on_commit_callbacks)
    assert Operation.objects.get(pk=operation.pk).state == OperationState.SUCCEEDED
    mtime = os.stat(head(volume)).st_mtime_ns
    operation_task(operation.pk)  # at-least-once delivery: the same task again
    operation.refresh_from_db()
    assert (operation.state, operation.attempts) == (OperationState.SUCCEEDED, 1)
    assert os.stat(head(volume)).st_mtime_ns == mtime
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE


def test_a_live_lease_keeps_a_second_worker_out(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, django_capture_on_commit_callbacks, execute=False)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="other-worker",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert operations.operation_run(operation.pk, VOLUME_CREATE_HANDLER) is None
    assert not os.path.exists(head(volume))
    assert Operation.objects.get(pk=operation.pk).owner == "other-worker"


def test_sweeper_finishes_an_operation_whose_worker_died(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, django_capture_on_commit_callbacks, execute=False)
    # The dead worker had claimed it and left a partial file behind.
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="dead",
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    os.makedirs(os.path.dirname(head(volume)), exist_ok=True)
    partial = os.path.join(os.path.dirname(head(volume)), f".tmp-{volume.uuid}")
    with open(partial, "wb") as handle:
        handle.write(b"half-written garbage")
    swept = operations.operations_sweep()
    assert [o.pk for o in swept] == [operation.pk]
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.attempts, volume.state) == (
        OperationState.SUCCEEDED,
        2,
        EventState.AVAILABLE,
    )
    assert not os.path.exists(partial)
    assert qemu_img("check", "-f", "qcow2", head(volume)).returncode == 0


def test_an_operation_interrupted_too_often_fails_and_cleans_up(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, django_capture_on_commit_callbacks, execute=False)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="dead",
        attempts=operations.MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    operation_task(operation.pk)
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.error_scode, volume.state) == (
        OperationState.FAILED,
        5000,
        EventState.ERROR,
    )
    assert not os.path.exists(head(volume))


def test_storage_failure_marks_the_volume_error_with_the_scode(
    scope, django_capture_on_commit_callbacks, settings
):
    volume, operation = create(scope, django_capture_on_commit_callbacks, execute=False)
    # qemu-img refusing to work (a broken binary stands in for a failing storage command).
    settings.SHARESTORE_QEMU_IMG = "/bin/false"
    operation_task(operation.pk)
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.error_scode, volume.state) == (
        OperationState.FAILED,
        5001,
        EventState.ERROR,
    )
    assert "exited 1" in operation.error_message
    assert not os.path.exists(head(volume))


def test_pool_directory_gone_is_refused_before_anything_is_written(scope, django_capture_on_commit_callbacks):
    shutil.rmtree(scope["pool"].path)
    with pytest.raises(errors.PoolUnavailable):
        create(scope, django_capture_on_commit_callbacks)
    assert not Volume.objects.exists() and not Operation.objects.exists()


def test_compare_and_set_refuses_a_stale_transition(scope, django_capture_on_commit_callbacks):
    volume, _ = create(scope, django_capture_on_commit_callbacks)
    stale = Volume.objects.get(pk=volume.pk)
    transition(
        volume, allowed=[EventState.AVAILABLE], to=EventState.SNAPSHOTTING, action="snapshot", actor="a"
    )
    with pytest.raises(errors.StateConflict) as raised:
        transition(stale, allowed=[EventState.AVAILABLE], to=EventState.DELETING, action="delete", actor="b")
    assert "snapshotting" in raised.value.render_message()
    assert Volume.objects.get(pk=volume.pk).state == EventState.SNAPSHOTTING


def test_delete_task_resumes_after_a_crash(scope, django_capture_on_commit_callbacks):
    volume, _ = create(scope, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        operation = volume_delete(actor="test", volume=volume)
    assert Volume.objects.get(pk=volume.pk).state == EventState.DELETING  # out of the live set first
    assert os.path.exists(head(volume))  # files go only afterwards
    operation_task(operation.pk)
    assert not os.path.exists(head(volume))
    assert Volume.objects.get(pk=volume.pk).state == EventState.DELETED
    operation_task(operation.pk)  # redelivered: nothing left to do, nothing breaks
    assert Operation.objects.get(pk=operation.pk).state == OperationState.SUCCEEDED


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")
def test_full_pool_fails_the_import_and_leaves_no_partial_file(
    scope, django_capture_on_commit_callbacks, import_root, tmp_path, monkeypatch
):
    source = import_root / "random.raw"
    source.write_bytes(os.urandom(8 << 20))
    small = tmp_path / "small-pool"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True
    ).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        Pool.objects.filter(pk=scope["pool"].pk).update(path=str(small))
        scope["pool"].refresh_from_db()
        marker.write_marker(str(small), str(scope["pool"].uuid))
        # The request sees the pool cannot hold the copy: refused at once, nothing recorded.
        with pytest.raises(errors.PoolSpaceShort):
            create(
                scope,
                django_capture_on_commit_callbacks,
                name="too-big",
                capacity=None,
                backing_file=str(source),
            )
        assert not Volume.objects.filter(name="too-big").exists()
        # The filesystem fills after the request was accepted: the copy fails late, and cleanly.
        monkeypatch.setattr(
            Qcow2DirectoryDriver, "space", lambda self: PoolSpace(total=1 << 40, free=1 << 40)
        )
        volume, operation = create(
            scope, django_capture_on_commit_callbacks, name="too-big", capacity=None, backing_file=str(source)
        )
        operation.refresh_from_db()
        volume.refresh_from_db()
        assert (operation.state, operation.error_scode, volume.state) == (
            OperationState.FAILED,
            5004,
            EventState.ERROR,
        )
        leftovers = [f for _, _, files in os.walk(small) for f in files if f != marker.MARKER_NAME]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(small)], check=False)
