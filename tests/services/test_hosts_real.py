"""Storage hosts with real `qcluster` processes on PostgreSQL: a silent step keeps its lease and is
taken over once its worker is SIGKILLed; three hosts in their own mount namespaces receive only the
operations whose pools they mount; SIGKILLed full clones, backups and restores end once, cleanly.

CI runs a sample (14 operations, 3 kill trials); `pytest -m hosts tests/services/test_hosts_real.py`
runs the long trials (50 operations, 10 kill trials), which are skipped unless `-m` names `hosts`:
docs/deploy.md "Storage hosts".
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from backups.models import Backup
from backups.services.create import backup_add
from backups.services.points import backup_point_create
from backups.services.restore import backup_restore
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from tests.helpers import CLUSTER, POOL_BBB, POOL_DISKS, TENANT, identical, qemu_io
from tests.services.test_real_worker import database_url, stop_qcluster
from volumes.choices import BackupStatus, EventState
from volumes.models import Cluster, Host, Pool, PoolMount, Snapshot, Tenant, Volume
from volumes.services import clones
from volumes.services.snapshots import snapshot_create
from volumes.services.volumes import volume_create

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
SAMPLE_OPERATIONS, LONG_OPERATIONS = 14, 50
SAMPLE_KILLS, LONG_KILLS = 3, 10

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="mount namespaces need root and unshare"
)


class Workers:
    """Real `manage.py qcluster` processes, each optionally a storage host in its own mount namespace."""

    def __init__(self, tmp_path, url):
        self.tmp_path, self.url, self.procs = tmp_path, url, {}

    def start(self, key, *, host="", bind=None, **env):
        command = [sys.executable, "manage.py", "qcluster"]
        if host:
            # Its own mount namespace: what it mounts (or hides) no other process sees.
            script = f"mount --bind {bind[0]} {bind[1]} && " if bind else ""
            command = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script + "exec " + " ".join(command),
            ]
        full_env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "SHARESTORE_Q_WORKERS": "1",
            "SHARESTORE_HOST": host,
            "SHARESTORE_IMPORT_ROOTS": str(self.tmp_path / "data" / "import"),
            **env,
        }
        log = open(self.tmp_path / f"qcluster-{key}.log", "a")
        proc = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[key] = (proc, log, host, bind, env)
        return proc

    def kill(self, key):
        proc = self.procs[key][0]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart(self, key):
        proc, log, host, bind, env = self.procs[key]
        log.close()
        self.start(key, host=host, bind=bind, **env)

    def key_of_pid(self, pid: int):
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return None
        return next((k for k, (p, *_rest) in self.procs.items() if p.pid == group), None)

    def stop(self):
        for proc, log, *_rest in self.procs.values():
            stop_qcluster(proc)
            log.close()


@pytest.fixture
def workers(transactional_db, monkeypatch, tmp_path):
    url = database_url()
    if url is None or connection.vendor != "postgresql":
        pytest.skip("real workers on several hosts need PostgreSQL (DATABASE_URL=postgres://...)")
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    pool = Workers(tmp_path, url)
    yield pool
    pool.stop()


def wait_for(predicate, timeout=120.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def scope_of(pool_uuid=POOL_DISKS):
    return {
        "tenant": Tenant.objects.select_related("namespace").get(uuid=TENANT),
        "cluster": Cluster.objects.get(uuid=CLUSTER),
        "pool": Pool.objects.get(uuid=pool_uuid),
    }


def finished(operation_id):
    operation = Operation.objects.get(pk=operation_id)
    return operation if operation.state in (OperationState.SUCCEEDED, OperationState.FAILED) else None


def owner_pid(operation: Operation) -> int:
    return int(operation.owner.split(":")[1])


def partials(*directories) -> list[str]:
    return [
        os.path.join(d, f)
        for root in directories
        for d, _, fs in os.walk(root)
        for f in fs
        if f.startswith(".tmp-")
    ]


# -- (a) heartbeats: a silent step keeps its lease; a killed worker's operation is taken over -----


@needs_root
def test_a_silent_step_keeps_its_lease_and_is_taken_over_once_its_worker_is_killed(workers, topology):
    lease, beat, silence = 3, 1, 9
    env = {
        "SHARESTORE_LEASE_SECONDS": str(lease),
        "SHARESTORE_HEARTBEAT_SECONDS": str(beat),
        "SHARESTORE_FAULT_PAUSE": f"publish:{silence}",
    }
    workers.start("a", **env)
    scope = scope_of()
    volume = volume_create(
        **scope, actor="t", name="silent", volume_type="block", capacity=16 * MiB, snap_capacity=0
    )
    operation = Operation.objects.get(target_uuid=volume.uuid)
    assert wait_for(lambda: Operation.objects.get(pk=operation.pk).state == OperationState.RUNNING, 60)
    # Silent for 3 leases: the lease never lapses, nobody else starts an attempt.
    while not finished(operation.pk):
        row = Operation.objects.get(pk=operation.pk)
        if row.state == OperationState.RUNNING:
            assert row.lease_expires_at > timezone.now(), "the lease lapsed while the worker lived"
        time.sleep(0.25)
    row = Operation.objects.get(pk=operation.pk)
    assert (row.state, row.attempts) == (OperationState.SUCCEEDED, 1)
    assert row.finished - row.started > timezone.timedelta(seconds=silence)

    # Now kill the worker in the middle of the silent step; a second worker takes over in time.
    workers.start("b", **env)
    second = volume_create(
        **scope, actor="t", name="killed", volume_type="block", capacity=16 * MiB, snap_capacity=0
    )
    op2 = Operation.objects.get(target_uuid=second.uuid)
    running = wait_for(lambda: Operation.objects.filter(pk=op2.pk, state=OperationState.RUNNING).first(), 60)
    time.sleep(1.5)  # inside the silent step
    victim = workers.key_of_pid(owner_pid(running))
    workers.kill(victim)
    killed_at = time.monotonic()
    taken = wait_for(
        lambda: AuditEvent.objects.filter(action="operation.takeover", operation_id=op2.pk).first(), 60
    )
    takeover_seconds = time.monotonic() - killed_at
    assert taken is not None
    # lease + heartbeat (the sweep interval) + poll and scheduling slack
    assert takeover_seconds <= lease + beat + 4, takeover_seconds
    print(f"takeover after SIGKILL: {takeover_seconds:.1f} s (lease {lease} s, heartbeat {beat} s)")
    done = wait_for(lambda: finished(op2.pk), 90)
    assert done.state == OperationState.SUCCEEDED and done.attempts == 2
    assert Volume.objects.get(pk=second.pk).state == EventState.AVAILABLE
    assert partials(scope["pool"].path) == []


# -- (b) placement: three hosts, P1 on hosts 1 and 2, host 3 sees an empty directory there -------


def prepare_hosts(topology, tmp_path):
    cluster = topology["cluster"]
    disks, bbb = Pool.objects.get(uuid=POOL_DISKS), Pool.objects.get(uuid=POOL_BBB)
    PoolMount.objects.all().delete()
    hosts = {name: Host.objects.create(name=name, cluster=cluster) for name in ("h1", "h2", "h3")}
    for name in ("h1", "h2"):
        PoolMount.objects.create(pool=disks, host=hosts[name], mount_path=disks.path)
    PoolMount.objects.create(pool=bbb, host=hosts["h3"], mount_path=bbb.path)
    empty = tmp_path / "host3-empty"
    empty.mkdir()
    return hosts, disks, bbb, empty


def start_hosts(workers, disks, empty, **env):
    workers.start("h1", host="h1", **env)
    workers.start("h2", host="h2", **env)
    workers.start("h3", host="h3", bind=(str(empty), disks.path), **env)
    assert wait_for(
        lambda: Host.objects.exclude(queue="").filter(last_seen__isnull=False).count() == 3, 60
    ), "the three hosts did not report"


@pytest.fixture
def point(topology, data_dir):
    directory = data_dir / "backup" / "bp"
    directory.mkdir(parents=True)
    return backup_point_create(name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40)


def submit_mixed(n, scope, scope3, point, import_file):
    """n operations of every kind on pool disks (P1) and some creates on pool bbb (host 3's)."""
    operations = []
    base = volume_create(
        **scope, actor="t", name="base", volume_type="block", capacity=16 * MiB, snap_capacity=1 << 40
    )
    assert wait_for(lambda: Volume.objects.get(pk=base.pk).state == EventState.AVAILABLE, 120)
    qemu_io(os.path.join(scope["pool"].path, base.image_name), "qcow2", "write -P 7 0 1M")
    snapshot = snapshot_create(actor="t", volume=base, name="s0")
    assert wait_for(lambda: Volume.objects.get(pk=base.pk).state == EventState.AVAILABLE, 120)
    snapshot.refresh_from_db()
    b0 = backup_add(
        actor="t", volume=Volume.objects.get(pk=base.pk), snapshot=snapshot, backup_point=point, name="b0"
    )
    assert wait_for(lambda: finished(Operation.objects.filter(target_uuid=b0.uuid).latest("pk").pk), 120)
    kinds = ["create", "import", "clone", "backup", "restore", "create3", "snapshot"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "create":
            created = volume_create(
                **scope, actor="t", name=f"c{i}", volume_type="block", capacity=8 * MiB, snap_capacity=0
            )
        elif kind == "create3":
            created = volume_create(
                **scope3, actor="t", name=f"h3-{i}", volume_type="block", capacity=8 * MiB, snap_capacity=0
            )
        elif kind == "import":
            created = volume_create(
                **scope,
                actor="t",
                name=f"i{i}",
                volume_type="block",
                capacity=None,
                snap_capacity=0,
                backing_file=str(import_file),
            )
        elif kind == "clone":
            created = clones.clone_create(
                actor="t",
                source=Volume.objects.get(pk=base.pk),
                snapshot=snapshot,
                tenant=scope["tenant"],
                pool=scope["pool"],
                name=f"f{i}",
                linked=False,
            )
        elif kind == "backup":
            created = backup_add(
                actor="t",
                volume=Volume.objects.get(pk=base.pk),
                snapshot=snapshot,
                backup_point=point,
                name=f"b{i}",
            )
        elif kind == "restore":
            created = backup_restore(actor="t", backup=Backup.objects.get(pk=b0.pk), name=f"r{i}", **scope)
        else:
            volume = volume_create(
                **scope, actor="t", name=f"s{i}", volume_type="block", capacity=8 * MiB, snap_capacity=1 << 40
            )
            assert wait_for(lambda v=volume: Volume.objects.get(pk=v.pk).state != EventState.CREATING, 120)
            created = snapshot_create(actor="t", volume=Volume.objects.get(pk=volume.pk), name=f"snap{i}")
        operations.append(Operation.objects.filter(target_uuid=created.uuid).latest("pk").pk)
    return operations


@needs_root
@pytest.mark.parametrize("n", [SAMPLE_OPERATIONS, pytest.param(LONG_OPERATIONS, marks=pytest.mark.hosts)])
def test_operations_land_only_on_hosts_that_mount_their_pools(
    workers, topology, tmp_path, point, import_root, n
):
    hosts, disks, bbb, empty = prepare_hosts(topology, tmp_path)
    start_hosts(workers, disks, empty)
    source = import_root / "src.raw"
    source.write_bytes(os.urandom(2 * MiB))
    ids = submit_mixed(n, scope_of(), scope_of(POOL_BBB), point, source)
    for operation_id in ids:
        assert wait_for(lambda i=operation_id: finished(i), 300), Operation.objects.filter(
            pk=operation_id
        ).values()
    allowed = {POOL_DISKS: {"h1", "h2"}, POOL_BBB: {"h3"}}
    kinds = set()
    for operation in Operation.objects.select_related("volume__pool").all():
        assert operation.state == OperationState.SUCCEEDED, (operation.kind, operation.error_message)
        if operation.volume is not None:
            assert operation.owner.split(":")[0] in allowed[str(operation.volume.pool.uuid)], operation.owner
        kinds.add(operation.kind)
    assert {
        OperationKind.VOLUME_CREATE,
        OperationKind.VOLUME_IMPORT,
        OperationKind.CLONE_FULL,
        OperationKind.BACKUP_CREATE,
        OperationKind.BACKUP_RESTORE,
        OperationKind.SNAPSHOT_CREATE,
    } <= kinds
    assert os.listdir(empty) == [], "something was written under host 3's empty directory"
    assert not Volume.objects.exclude(state=EventState.AVAILABLE).exists()


@needs_root
def test_an_operation_whose_pool_no_live_host_mounts_waits_then_fails(workers, topology, tmp_path, settings):
    hosts, disks, bbb, empty = prepare_hosts(topology, tmp_path)
    env = {"SHARESTORE_HOST_WAIT_SECONDS": "6", "SHARESTORE_HEARTBEAT_SECONDS": "1"}
    workers.start("h3", host="h3", bind=(str(empty), disks.path), **env)
    assert wait_for(lambda: Host.objects.filter(name="h3", last_seen__isnull=False).exists(), 60)
    volume = volume_create(
        **scope_of(), actor="t", name="nowhere", volume_type="block", capacity=8 * MiB, snap_capacity=0
    )
    operation = Operation.objects.get(target_uuid=volume.uuid)
    assert wait_for(
        lambda: Operation.objects.get(pk=operation.pk).phase == "waiting for a host that mounts pool disks",
        20,
    )
    done = wait_for(lambda: finished(operation.pk), 60)
    assert (done.state, done.error_scode) == (OperationState.FAILED, 5007)
    assert Volume.objects.get(pk=volume.pk).state == EventState.ERROR
    assert os.listdir(empty) == [] and not os.path.exists(os.path.join(disks.path, volume.image_name))


# -- (c) SIGKILL the worker of a full clone, a backup or a restore at a random point -------------


@needs_root
@pytest.mark.parametrize("trials", [SAMPLE_KILLS, pytest.param(LONG_KILLS, marks=pytest.mark.hosts)])
def test_killed_clones_backups_and_restores_end_once_and_cleanly(workers, topology, tmp_path, point, trials):
    hosts, disks, bbb, empty = prepare_hosts(topology, tmp_path)
    # Each file publish is preceded by a 2 s silent pause, so a random kill lands inside the operation
    # (during the copy or just before its rename) even when the copy itself is quick.
    env = {
        "SHARESTORE_LEASE_SECONDS": "4",
        "SHARESTORE_HEARTBEAT_SECONDS": "1",
        "SHARESTORE_FAULT_PAUSE": "publish:2",
    }
    workers.start("h1", host="h1", **env)
    workers.start("h2", host="h2", **env)
    assert wait_for(lambda: Host.objects.exclude(queue="").count() == 2, 60)
    scope = scope_of()
    size = 96 * MiB
    base = volume_create(
        **scope, actor="t", name="base", volume_type="block", capacity=size, snap_capacity=1 << 40
    )
    assert wait_for(lambda: Volume.objects.get(pk=base.pk).state == EventState.AVAILABLE, 120)
    head = os.path.join(disks.path, base.image_name)
    qemu_io(head, "qcow2", *[f"write -P {i + 1} {i * 8}M 6M" for i in range(size // (8 * MiB))])
    snapshot = snapshot_create(actor="t", volume=base, name="s0")
    assert wait_for(lambda: Volume.objects.get(pk=base.pk).state == EventState.AVAILABLE, 120)
    snapshot = Snapshot.objects.get(pk=snapshot.pk)
    layer = os.path.join(disks.path, snapshot.layer_name)
    b0 = backup_add(
        actor="t", volume=Volume.objects.get(pk=base.pk), snapshot=snapshot, backup_point=point, name="b0"
    )
    first = wait_for(lambda: finished(Operation.objects.filter(target_uuid=b0.uuid).latest("pk").pk), 120)
    assert first.state == OperationState.SUCCEEDED, first.error_message

    rng = random.Random(int(os.environ.get("SHARESTORE_KILL_SEED", "11")))
    outcomes = []
    for trial in range(trials):
        kind = ("clone", "backup", "restore")[trial % 3]
        if kind == "clone":
            created = clones.clone_create(
                actor="t",
                source=Volume.objects.get(pk=base.pk),
                snapshot=snapshot,
                tenant=scope["tenant"],
                pool=disks,
                name=f"k{trial}",
                linked=False,
            )
        elif kind == "backup":
            created = backup_add(
                actor="t",
                volume=Volume.objects.get(pk=base.pk),
                snapshot=snapshot,
                backup_point=point,
                name=f"k{trial}",
            )
        else:
            created = backup_restore(
                actor="t", backup=Backup.objects.get(pk=b0.pk), name=f"k{trial}", **scope
            )
        operation_id = Operation.objects.filter(target_uuid=created.uuid).latest("pk").pk
        wait_for(
            lambda operation_id=operation_id: (
                Operation.objects.filter(pk=operation_id, state=OperationState.RUNNING).first()
                or finished(operation_id)
            ),
            60,
            step=0.02,
        )
        time.sleep(rng.uniform(0, 1.8))
        row = Operation.objects.get(pk=operation_id)
        killed = None
        if row.state == OperationState.RUNNING:
            killed = workers.key_of_pid(owner_pid(row))
            if killed:
                workers.kill(killed)
                workers.restart(killed)
        done = wait_for(lambda operation_id=operation_id: finished(operation_id), 180)
        assert done is not None, f"trial {trial} ({kind}) never finished"
        outcomes.append((kind, killed, done.state, done.attempts))
        assert done.state == OperationState.SUCCEEDED or done.error_message, (kind, done.error_message)
        if done.state == OperationState.SUCCEEDED:
            if kind == "backup":
                restored = backup_restore(
                    actor="t", backup=Backup.objects.get(uuid=created.uuid), name=f"check{trial}", **scope
                )
                check = wait_for(
                    lambda r=restored: finished(Operation.objects.filter(target_uuid=r.uuid).latest("pk").pk),
                    120,
                )
                assert check.state == OperationState.SUCCEEDED
                target = Volume.objects.get(uuid=restored.uuid)
            else:
                target = Volume.objects.get(uuid=created.uuid)
            assert identical(layer, os.path.join(disks.path, target.image_name)), (kind, trial)
    print("kill trials:", outcomes)
    assert partials(disks.path, point.path) == []
    transitional = Volume.objects.exclude(state__in=[EventState.AVAILABLE, EventState.ERROR])
    assert not transitional.exists(), list(transitional.values("name", "state"))
    assert not Operation.objects.filter(state__in=[OperationState.QUEUED, OperationState.RUNNING]).exists()
    assert not Backup.objects.exclude(status__in=[BackupStatus.COMPLETED, BackupStatus.FAILED]).exists()
    assert any(killed for _kind, killed, *_rest in outcomes), "no trial killed a worker mid-operation"
