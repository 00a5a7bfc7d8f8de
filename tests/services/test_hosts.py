"""Pool identity markers, fencing of publishes, takeover audit and placement on storage hosts
(in-process; the real-process trials are in test_hosts_real.py)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sharestore import errors
from sharestore.core import fencing
from sharestore.core.choices import OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services import operations, placement
from sharestore.core.tasks import operation_task
from tests.helpers import CLUSTER, POOL_BBB, POOL_DISKS, TENANT
from volumes.choices import EventState, PoolStatus
from volumes.drivers import marker, qemu
from volumes.models import Cluster, Host, Pool, PoolMount, Tenant, Volume
from volumes.services import hosts
from volumes.services.pools import pool_create, pool_mark, pool_marker_problem, pools_health_refresh
from volumes.services.volumes import volume_create


@pytest.fixture
def scope(topology):
    return {
        "tenant": Tenant.objects.select_related("namespace").get(uuid=TENANT),
        "cluster": Cluster.objects.get(uuid=CLUSTER),
        "pool": Pool.objects.get(uuid=POOL_DISKS),
    }


def create(scope, capture, **kwargs):
    params = {
        "actor": "test",
        "name": "v",
        "volume_type": "block",
        "capacity": 64 << 20,
        "snap_capacity": 0,
    } | kwargs
    with capture(execute=True):
        volume = volume_create(**scope, **params)
    return volume, Operation.objects.get(target_uuid=volume.uuid)


# -- pool identity marker -----------------------------------------------------------------------


def test_the_demo_pools_and_a_new_pool_carry_their_marker(topology, data_dir):
    for pool in topology["pools"]:
        assert json.loads(open(marker.marker_path(pool.path)).read())["uuid"] == str(pool.uuid)
    directory = data_dir / "new-pool"
    directory.mkdir()
    pool = pool_create(
        actor="test", name="new", cluster=topology["cluster"], path=str(directory), capacity=1 << 30
    )
    assert marker.read_marker(str(directory))["uuid"] == str(pool.uuid)
    assert pool_marker_problem(pool) == ""


@pytest.mark.parametrize("what", ["empty mount point", "another pool's directory"])
def test_a_pool_without_its_marker_is_refused_and_shown_unavailable(
    scope, django_capture_on_commit_callbacks, what
):
    pool = scope["pool"]
    os.unlink(marker.marker_path(pool.path))
    if what == "another pool's directory":
        marker.write_marker(pool.path, POOL_BBB)
    # Refused at the request already, before anything is recorded or written.
    with pytest.raises(errors.PoolIdentityMismatch) as refused:
        create(scope, django_capture_on_commit_callbacks)
    assert refused.value.scode == 5005
    assert sorted(os.listdir(pool.path)) == ([marker.MARKER_NAME] if what != "empty mount point" else [])
    problems = pools_health_refresh(actor="test")
    assert problems[str(pool.uuid)] and not problems[POOL_BBB]
    assert Pool.objects.get(pk=pool.pk).status == PoolStatus.UNAVAILABLE
    assert AuditEvent.objects.filter(
        action="pool.status", object_uuid=pool.uuid, to_state="unavailable"
    ).exists()


def test_pool_mark_writes_missing_markers_but_never_claims_an_empty_or_foreign_directory(scope, capsys):
    pool = scope["pool"]
    os.unlink(marker.marker_path(pool.path))
    with pytest.raises(errors.PoolIdentityMismatch):
        pool_mark(actor="test", pool=pool)  # empty: maybe the share is not mounted
    assert pool_mark(actor="test", pool=pool, force=True) is True
    assert pool_mark(actor="test", pool=pool) is False
    other = Pool.objects.get(uuid=POOL_BBB)
    os.unlink(marker.marker_path(other.path))
    marker.write_marker(other.path, POOL_DISKS)
    with pytest.raises(CommandError):
        call_command("pool_mark")
    assert "refused" in capsys.readouterr().err
    Pool.objects.filter(pk=pool.pk).update(status=PoolStatus.UNAVAILABLE)
    pools_health_refresh(actor="test", pools=Pool.objects.filter(pk=pool.pk))
    assert Pool.objects.get(pk=pool.pk).status == PoolStatus.HEALTHY


# -- fencing and takeover -----------------------------------------------------------------------


def test_an_attempt_that_lost_its_lease_publishes_nothing(
    scope, django_capture_on_commit_callbacks, monkeypatch
):
    """A slow attempt judged dead is taken over; when it reaches its publish the fence refuses it."""
    real_publish = qemu.publish
    taken_over = {}

    def publish_after_takeover(tmp, final):
        operation = Operation.objects.get(kind="volume.create")
        if not taken_over:
            # Another worker takes the operation over while this attempt is between write and rename.
            taken_over["rows"] = Operation.objects.filter(pk=operation.pk).update(
                owner="other-worker",
                attempts=operation.attempts + 1,
                lease_expires_at=timezone.now() + timedelta(minutes=1),
            )
        return real_publish(tmp, final)

    monkeypatch.setattr(qemu, "publish", publish_after_takeover)
    volume, operation = create(scope, django_capture_on_commit_callbacks)
    assert taken_over["rows"] == 1
    operation.refresh_from_db()
    assert (operation.state, operation.owner) == (OperationState.RUNNING, "other-worker")
    assert not os.path.exists(os.path.join(scope["pool"].path, volume.image_name))
    assert Volume.objects.get(pk=volume.pk).state == EventState.CREATING


def test_publish_outside_an_operation_is_not_fenced(tmp_path):
    tmp, final = tmp_path / ".tmp-x", tmp_path / "x"
    tmp.write_bytes(b"x")
    with fencing.publish_guard():
        qemu.publish(str(tmp), str(final))
    assert final.read_bytes() == b"x"


def test_a_step_finds_the_marker_gone_after_the_request_and_fails_with_its_scode(
    scope, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        volume = volume_create(
            **scope, actor="t", name="m", volume_type="block", capacity=1 << 20, snap_capacity=0
        )
    os.unlink(marker.marker_path(scope["pool"].path))  # the share is unmounted before the worker runs
    operation = Operation.objects.get(target_uuid=volume.uuid)
    operation_task(operation.pk)
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.error_scode, volume.state) == (
        OperationState.FAILED,
        5005,
        EventState.ERROR,
    )
    assert os.listdir(scope["pool"].path) == []


def test_a_takeover_is_an_audit_event_with_both_attempts(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, lambda execute: django_capture_on_commit_callbacks(execute=False))
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="dead-worker",
        attempts=2,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    operation_task(operation.pk)
    operation.refresh_from_db()
    assert (operation.state, operation.attempts) == (OperationState.SUCCEEDED, 3)
    event = AuditEvent.objects.get(action="operation.takeover", operation=operation)
    assert "from dead-worker (attempt 2)" in event.message and "attempt 3" in event.message


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_renews_the_lease_of_a_silent_step(topology, settings):
    """No progress for 3 lease periods: the heartbeat thread keeps the lease, then stops with the handler."""
    from django.db import connection

    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("the heartbeat thread needs a database other connections can see")
    settings.SHARESTORE_LEASE_SECONDS = 1.5
    settings.SHARESTORE_HEARTBEAT_SECONDS = 0.3
    volume = Volume.objects.create(
        name="hb",
        tenant=Tenant.objects.get(uuid=TENANT),
        namespace=Tenant.objects.get(uuid=TENANT).namespace,
        cluster=Cluster.objects.get(uuid=CLUSTER),
        pool=Pool.objects.get(uuid=POOL_DISKS),
        volume_type="block",
        capacity=1 << 20,
        snap_cap=0,
        state=EventState.CREATING,
    )
    operation = Operation.objects.create(
        kind="volume.create", target_type="volume", target_uuid=volume.uuid, volume=volume
    )
    leases = []

    def silent(op, reporter):
        for _ in range(15):  # 4.5 s, three leases, no progress written
            time.sleep(0.3)
            row = Operation.objects.get(pk=op.pk)
            leases.append(row.lease_expires_at > timezone.now())
        assert not reporter.lost

    handler = operations.OperationHandler(run=silent, succeed=lambda op: None, fail=lambda op, error: None)
    done = operations.operation_run(operation.pk, handler)
    assert done.state == OperationState.SUCCEEDED and all(leases), leases
    assert not [t for t in threading.enumerate() if t.name == f"lease-{operation.pk}"]


# -- placement on hosts -------------------------------------------------------------------------


def live(host, queue):
    Host.objects.filter(pk=host.pk).update(queue=queue, last_seen=timezone.now())


def test_without_host_workers_everything_goes_to_the_default_queue(scope, django_capture_on_commit_callbacks):
    volume, operation = create(scope, django_capture_on_commit_callbacks)
    assert hosts.operation_route(operation) == placement.Route(queue=None)


def test_an_operation_goes_to_a_live_host_that_mounts_its_pools_or_waits(
    scope, topology, django_capture_on_commit_callbacks
):
    cluster = topology["cluster"]
    h2 = Host.objects.create(name="h2", cluster=cluster)  # the demo host mounts every pool but runs no worker
    h3 = Host.objects.create(name="h3", cluster=cluster)
    bbb = Pool.objects.get(uuid=POOL_BBB)
    PoolMount.objects.create(pool=bbb, host=h2, mount_path=bbb.path)
    live(h2, "host-h2")
    live(h3, "host-h3")
    with django_capture_on_commit_callbacks(execute=False):
        on_bbb = volume_create(
            **(scope | {"pool": bbb}),
            actor="t",
            name="b",
            volume_type="block",
            capacity=1 << 20,
            snap_capacity=0,
        )
        on_disks = volume_create(
            **scope, actor="t", name="d", volume_type="block", capacity=1 << 20, snap_capacity=0
        )
    op_bbb = Operation.objects.get(target_uuid=on_bbb.uuid)
    op_disks = Operation.objects.get(target_uuid=on_disks.uuid)
    assert hosts.operation_route(op_bbb).queue == "host-h2"  # h1 mounts it too, but is not live
    waiting = hosts.operation_route(op_disks)
    assert waiting.queue is None and waiting.waiting == "waiting for a host that mounts pool disks"
    # Sent while no host mounts it: the operation shows why it waits, then fails after the deadline.
    operations.enqueue(op_disks, now=True)
    op_disks.refresh_from_db()
    assert (op_disks.state, op_disks.phase) == (
        OperationState.QUEUED,
        "waiting for a host that mounts pool disks",
    )
    assert operations.operations_waiting_dispatch() == (0, 0)  # its wait has just begun
    Operation.objects.filter(pk=op_disks.pk).update(waiting_since=timezone.now() - timedelta(hours=1))
    assert operations.operations_waiting_dispatch() == (0, 1)
    op_disks.refresh_from_db()
    on_disks.refresh_from_db()
    assert (op_disks.state, op_disks.error_scode, on_disks.state) == (
        OperationState.FAILED,
        5007,
        EventState.ERROR,
    )
    assert not os.path.exists(os.path.join(scope["pool"].path, on_disks.image_name))


def running_on_a_host_that_dies(scope, topology, capture):
    """A create that has been running for two hours on h2, the only live host mounting its pool; then
    h2 stops beating and the attempt's lease expires."""
    h2 = Host.objects.create(name="h2", cluster=topology["cluster"])
    PoolMount.objects.create(pool=scope["pool"], host=h2, mount_path=scope["pool"].path)
    volume, operation = create(scope, lambda execute: capture(execute=False))
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING,
        owner="h2:41:dead",
        attempts=1,
        created=two_hours_ago,
        started=two_hours_ago,
        phase="copying",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    Host.objects.filter(pk=h2.pk).update(queue="host-h2", last_seen=timezone.now() - timedelta(hours=1))
    return volume, operation, h2


def test_a_running_operation_whose_only_host_died_waits_visibly_then_fails_after_the_deadline(
    scope, topology, settings, django_capture_on_commit_callbacks
):
    settings.SHARESTORE_HOST_WAIT_SECONDS = 600
    volume, operation, _h2 = running_on_a_host_that_dies(scope, topology, django_capture_on_commit_callbacks)
    operations.operations_sweep(queued=False)
    operation.refresh_from_db()
    assert (operation.state, operation.phase) == (
        OperationState.RUNNING,
        "waiting for a host that mounts pool disks",
    )
    began = operation.waiting_since
    assert timezone.now() - began < timedelta(seconds=30)
    # Created two hours ago, but the wait began now: it keeps waiting, and later sweeps keep its start.
    assert operations.operations_waiting_dispatch() == (0, 0)
    operations.operations_sweep(queued=False)
    operation.refresh_from_db()
    assert (operation.state, operation.waiting_since) == (OperationState.RUNNING, began)

    Operation.objects.filter(pk=operation.pk).update(waiting_since=began - timedelta(seconds=601))
    assert operations.operations_waiting_dispatch() == (0, 1)
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.error_scode, volume.state) == (
        OperationState.FAILED,
        5007,
        EventState.ERROR,
    )
    assert "waited 600 s" in operation.error_message
    assert AuditEvent.objects.filter(action="operation.takeover", operation=operation).count() == 1


def test_a_waiting_operation_goes_on_when_a_host_comes_back_before_the_deadline(
    scope, topology, settings, django_capture_on_commit_callbacks
):
    volume, operation, h2 = running_on_a_host_that_dies(scope, topology, django_capture_on_commit_callbacks)
    operations.operations_sweep(queued=False)
    assert Operation.objects.get(pk=operation.pk).waiting_since is not None
    live(h2, "host-h2")
    # Sent to h2's queue (django-q2 runs it inline here): taken over and finished.
    assert operations.operations_waiting_dispatch() == (1, 0)
    operation.refresh_from_db()
    volume.refresh_from_db()
    assert (operation.state, operation.attempts, operation.waiting_since) == (
        OperationState.SUCCEEDED,
        2,
        None,
    )
    assert volume.state == EventState.AVAILABLE
    assert os.path.isfile(os.path.join(scope["pool"].path, volume.image_name))


def test_a_worker_whose_host_does_not_mount_the_pool_passes_the_task_on(
    scope, topology, settings, django_capture_on_commit_callbacks, monkeypatch
):
    h3 = Host.objects.create(name="h3", cluster=topology["cluster"])
    live(h3, "host-h3")
    settings.SHARESTORE_HOST = "h3"
    sent = []
    monkeypatch.setattr(operations, "_send", lambda pk, name: sent.append((pk, name)))
    with django_capture_on_commit_callbacks(execute=False):
        volume = volume_create(
            **scope, actor="t", name="x", volume_type="block", capacity=1 << 20, snap_capacity=0
        )
    operation = Operation.objects.get(target_uuid=volume.uuid)
    operation_task(operation.pk)
    assert sent == [(operation.pk, f"volume.create:{operation.uuid}:reroute")]
    assert Operation.objects.get(pk=operation.pk).state == OperationState.QUEUED
    assert not os.path.exists(os.path.join(scope["pool"].path, volume.image_name))


def test_host_beat_publishes_liveness_and_queue(topology, settings):
    settings.SHARESTORE_HOST = str(topology["host"].uuid)
    hosts.host_beat()
    host = Host.objects.get(pk=topology["host"].pk)
    assert host.queue == f"host-{host.uuid}" and timezone.now() - host.last_seen < timedelta(seconds=5)
    assert hosts.pool_has_live_worker(Pool.objects.get(uuid=POOL_DISKS))
