"""/healthz, /readyz, /metrics, the request id and the structured log lines."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from django.test import Client

from sharestore.core.models import Operation
from sharestore.monitoring import health
from sharestore.monitoring.logs import JsonFormatter, RequestIdFilter
from tests.api.test_volume_api import create_body


@pytest.fixture
def worker_alive(monkeypatch):
    """A django-q2 cluster reports from this host (the stats a running qcluster keeps in the cache)."""
    monkeypatch.setattr(health, "live_worker_hosts", lambda: {"this-host"})


def _readyz():
    response = Client().get("/readyz")
    return response.status_code, json.loads(response.content)


def test_healthz_touches_no_database():
    # No `db` fixture: any query would fail the test.
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "ok"}
    assert response["X-Request-ID"]


def test_readyz_ready(topology, worker_alive):
    status, body = _readyz()
    assert status == 200, body
    assert body["status"] == "ok"
    names = [check["name"] for check in body["checks"]]
    assert names[0] == "database"
    pools = sorted(p.name for p in topology["pools"])
    assert [n for n in names if n.startswith("pool:")] == [f"pool:{name}" for name in pools]
    assert [n for n in names if n.startswith("workers:")] == [f"workers:{name}" for name in pools]
    assert all(check["ok"] for check in body["checks"])


def test_readyz_no_worker(topology):
    # No qcluster runs in the test: django-q2's cluster stats are empty.
    status, body = _readyz()
    assert status == 503
    assert body["status"] == "unavailable"
    failed = [check for check in body["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["workers"]
    assert "no live worker" in failed[0]["detail"]


def test_readyz_pool_directory_missing(topology, worker_alive):
    pool = topology["pools"][0]
    shutil.rmtree(pool.path)
    status, body = _readyz()
    assert status == 503
    failed = [check for check in body["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == [f"pool:{pool.name}"]
    assert pool.path in failed[0]["detail"] and "does not exist" in failed[0]["detail"]


def test_readyz_pool_directory_of_another_pool(topology, worker_alive):
    """A directory carrying another pool's identity (a wrong mount) makes the service not ready."""
    import os

    first, second = topology["pools"][0], topology["pools"][1]
    marker = ".sharestore-pool"
    os.replace(os.path.join(second.path, marker), os.path.join(first.path, marker))
    status, body = _readyz()
    assert status == 503
    failed = sorted(check["name"] for check in body["checks"] if not check["ok"])
    assert failed == sorted([f"pool:{first.name}", f"pool:{second.name}"])


def test_readyz_empty_mount_point(topology, worker_alive):
    """An empty directory where the pool should be mounted (no marker) is not ready either."""
    import os

    pool = topology["pools"][0]
    os.unlink(os.path.join(pool.path, ".sharestore-pool"))
    status, body = _readyz()
    assert status == 503
    assert [c["name"] for c in body["checks"] if not c["ok"]] == [f"pool:{pool.name}"]


def test_readyz_worker_on_the_wrong_host(topology, monkeypatch):
    """Once hosts are named after their machines, a pool needs a worker on a host that mounts it."""
    from volumes.models import Host, PoolMount

    pool = topology["pools"][0]
    other = Host.objects.create(name="other-machine", cluster=pool.cluster)
    PoolMount.objects.filter(pool=pool).delete()
    PoolMount.objects.create(pool=pool, host=other, mount_path=pool.path)
    monkeypatch.setattr(health, "live_worker_hosts", lambda: {"demo-host"})
    status, body = _readyz()
    assert status == 503
    failed = [check for check in body["checks"] if not check["ok"]]
    assert failed == [
        {"name": f"workers:{pool.name}", "ok": False, "detail": "no live worker on other-machine"}
    ]


def test_metrics_exposes_the_series(api, topology, data_dir):
    from backups.models import BackupPoint

    point = BackupPoint.objects.create(
        name="bp-metrics", cluster=topology["pools"][0].cluster, path=str(data_dir / "bp"), capacity=1 << 40
    )
    status, _ = api.post("create", create_body())
    assert status == 200
    Client().get("/healthz")
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    pool = topology["pools"][0]
    for line in [
        'sharestore_http_request_duration_seconds_count{endpoint="healthz",method="GET"}',
        'sharestore_http_request_duration_seconds_bucket{endpoint="volume-share-create",le="0.005",method="POST"}',
        'sharestore_operations{kind="volume.create",state="succeeded"} 1.0',
        "sharestore_queue_depth 0.0",
        'sharestore_operation_duration_seconds_count{kind="volume.create",state="succeeded"} 1.0',
        f'sharestore_pool_capacity_bytes{{name="{pool.name}",pool="{pool.uuid}"}}',
        f'sharestore_pool_allocated_bytes{{name="{pool.name}",pool="{pool.uuid}"}}',
        f'sharestore_pool_used_bytes{{name="{pool.name}",pool="{pool.uuid}"}}',
        f'sharestore_backup_point_capacity_bytes{{backup_point="{point.uuid}",name="bp-metrics"}}',
        f'sharestore_backup_point_used_bytes{{backup_point="{point.uuid}",name="bp-metrics"}} 0.0',
        f'sharestore_backup_point_allocated_bytes{{backup_point="{point.uuid}",name="bp-metrics"}} 0.0',
    ]:
        assert line in text, line
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#")
    }
    assert values[f'sharestore_pool_capacity_bytes{{name="{pool.name}",pool="{pool.uuid}"}}'] == pool.capacity


def test_request_id_reaches_the_operation_and_the_worker_log(api, caplog):
    handler_records = []

    class Collect(logging.Handler):
        def emit(self, record):
            handler_records.append(record)

    collect = Collect()
    collect.addFilter(RequestIdFilter())
    logger = logging.getLogger("sharestore")
    logger.addHandler(collect)
    try:
        with api.capture(execute=True):
            response = api.client.generic(
                "POST",
                "/v1/volume/share/create",
                json.dumps(create_body()),
                content_type="application/json",
                HTTP_X_REQUEST_ID="req-123",
            )
    finally:
        logger.removeHandler(collect)
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-123"
    operation = Operation.objects.get()
    assert operation.request_id == "req-123"
    # Lines logged while the task ran (inline here, in a qcluster worker in production) carry it.
    task_lines = [r for r in handler_records if r.name.startswith("sharestore.core")]
    assert task_lines and all(r.request_id == "req-123" for r in task_lines)


def test_request_id_generated_when_absent_or_unacceptable():
    first = Client().get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert first["X-Request-ID"] != "bad id with spaces" and len(first["X-Request-ID"]) == 32


def test_json_log_line():
    record = logging.LogRecord("sharestore.test", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"time", "level", "logger", "message", "request_id"}
    assert (line["level"], line["logger"], line["message"], line["request_id"]) == (
        "WARNING",
        "sharestore.test",
        "hello world",
        "-",
    )


@pytest.mark.django_db
def test_live_worker_hosts_reads_django_q2_cluster_stats():
    """What a running qcluster's sentinel saves (django-q2's Stat, in the shared cache table)."""
    import socket
    import uuid
    from types import SimpleNamespace

    from django.utils import timezone
    from django_q.conf import Conf
    from django_q.status import Stat

    assert health.live_worker_hosts() == set()
    sentinel = SimpleNamespace(
        parent_pid=None,
        pid=4242,
        cluster_id=uuid.uuid4(),
        broker=None,
        tob=timezone.now(),
        reincarnations=0,
        status=lambda: Conf.IDLE,
        monitor=None,
        pusher=None,
        pool=[],
        result_queue=SimpleNamespace(qsize=lambda: 0),
        task_queue=SimpleNamespace(qsize=lambda: 0),
    )
    Stat(sentinel).save()
    assert health.live_worker_hosts() == {socket.gethostname()}
    stopped = SimpleNamespace(**{**vars(sentinel), "status": lambda: Conf.STOPPED})
    Stat(stopped).save()
    assert health.live_worker_hosts() == set()
