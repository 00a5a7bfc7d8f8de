"""The same lifecycle through a real `manage.py qcluster` process on the ORM broker, not sync mode:
tasks cross a process boundary (pickled primary keys, signed payloads, committed rows)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from sharestore.core.choices import OperationState
from sharestore.core.models import Operation
from tests.helpers import CLUSTER, POOL_DISKS, TENANT
from volumes.choices import EventState
from volumes.models import Cluster, Pool, Tenant, Volume
from volumes.services.volumes import volume_create, volume_delete

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str | None:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
        return f"postgres://{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    name = str(settings["NAME"])
    if connection.vendor == "sqlite" and name.startswith("/") and "memory" not in name:
        return f"sqlite:///{name}"
    return None


@pytest.fixture
def worker(transactional_db, monkeypatch, tmp_path):
    url = database_url()
    if url is None:
        pytest.skip(
            "the test database is in memory: a worker process cannot reach it (runs on PostgreSQL in CI)"
        )
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    log = open(tmp_path / "qcluster.log", "w")
    env = {**os.environ, "DATABASE_URL": url, "SHARESTORE_Q_WORKERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc
    stop_qcluster(proc)
    log.close()


def stop_qcluster(proc: subprocess.Popen) -> None:
    """Stop a qcluster as an operator's SIGTERM does: to its main process only, which stops its
    sentinel and workers itself (SIGTERM to the whole group makes django-q2's main process deadlock
    in its own signal handler while it joins the children); whatever is left after 20 s is killed."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_create_and_delete_through_a_real_worker(worker, topology):
    scope = {
        "tenant": Tenant.objects.select_related("namespace").get(uuid=TENANT),
        "cluster": Cluster.objects.get(uuid=CLUSTER),
        "pool": Pool.objects.get(uuid=POOL_DISKS),
    }
    volume = volume_create(
        **scope, actor="test", name="worker", volume_type="block", capacity=64 << 20, snap_capacity=0
    )
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE), (
        Operation.objects.values()
    )
    path = os.path.join(scope["pool"].path, volume.image_name)
    assert os.path.isfile(path)
    volume.refresh_from_db()
    operation = volume_delete(actor="test", volume=volume)
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.DELETED)
    assert not os.path.exists(path)
    assert Operation.objects.get(pk=operation.pk).state == OperationState.SUCCEEDED
