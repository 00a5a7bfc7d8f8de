"""Back-to-back calls (docs/api.md): short steps answer their finished state, a call that finds its
volume busy with a short step waits for it, one busy with a long operation is answered at once with
the operation named, and a volume delete during a snapshot merge runs when the merge ends.

Requests really commit here (transactional tests), so the operations are dispatched as in production:
inline at commit (django-q2 sync mode), or to a "worker" thread that runs queued operations through
the task entry after a delay (another process in production; the request only reads the row).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest
from django.db import connection
from django_q.conf import Conf

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.tasks import operation_task
from tests.api.test_snapshot_api import example, new_volume
from tests.helpers import POOL_DISKS, assert_error, qemu_io, scoped
from tests.services.test_real_worker import database_url
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Pool, Snapshot, Volume

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_dispatch(monkeypatch):
    """Operations stay queued after commit until a test (or its worker thread) runs them."""
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr("sharestore.core.services.operations._send", lambda *args: None)


@contextlib.contextmanager
def worker_thread(delay: float):
    """Run queued operations through the task entry, each `delay` seconds after it is seen."""
    if database_url() is None:
        pytest.skip("threads share no in-memory SQLite test database cleanly (runs on PostgreSQL in CI)")
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                for pk in Operation.objects.filter(state=OperationState.QUEUED).values_list("pk", flat=True):
                    time.sleep(delay)
                    operation_task(pk)
                stop.wait(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def run_queued() -> None:
    for pk in (
        Operation.objects.filter(state=OperationState.QUEUED).order_by("pk").values_list("pk", flat=True)
    ):
        operation_task(pk)


def test_short_steps_answer_finished_when_dispatched_inline(api):
    volume = new_volume(api)
    assert volume["EventState"] == EventState.AVAILABLE
    status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=volume["UUID"]))
    assert (status, body["scode"]) == (200, 0), body
    assert body["data"]["snapshot"]["Status"] == SnapshotStatus.AVAILABLE
    assert body["data"]["snapshot"]["Children"] == ["head"]


def test_short_steps_wait_for_a_worker_elsewhere(api, no_dispatch, settings):
    with worker_thread(delay=0.3):
        volume = new_volume(api)
        assert volume["EventState"] == EventState.AVAILABLE
        vol = volume["UUID"]
        qemu_io(next(iter(volume["AccessPath"].values())), "qcow2", "write -P 0xaa 0 1M")
        status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=vol))
        assert (status, body["scode"]) == (200, 0), body
        snapshot = body["data"]["snapshot"]
        assert (snapshot["Status"], snapshot["Size"]) == (SnapshotStatus.AVAILABLE, 1 << 20)
        assert Volume.objects.get(uuid=vol).state == EventState.AVAILABLE

        status, body = api.post(
            "clone",
            example(
                "clone",
                volume_uuid=vol,
                volume_name=volume["Name"],
                clone_dst_pool_uuid=POOL_DISKS,
                clone_dst_vol_name="linked",
                snapshot_uuid=snapshot["UUID"],
            ),
        )
        assert (status, body["scode"]) == (200, 0), body
        assert (body["data"]["volume"]["EventState"], body["data"]["clone_progress"]) == (0, 100.0)

        status, body = api.post(
            "snapshot/rollback", example("snapshot/rollback", volume_uuid=vol, snapshot_uuid=snapshot["UUID"])
        )
        assert (status, body["scode"]) == (200, 0), body
        assert Operation.objects.get(kind=OperationKind.SNAPSHOT_ROLLBACK).state == OperationState.SUCCEEDED


def test_an_expired_wait_answers_the_running_state(api, no_dispatch, settings):
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0.2
    volume = new_volume(api, name="slow")
    assert volume["EventState"] == EventState.CREATING
    run_queued()
    assert Volume.objects.get(uuid=volume["UUID"]).state == EventState.AVAILABLE


def test_a_failed_short_step_answers_its_scode(api, no_dispatch, settings):
    with worker_thread(delay=0):
        volume = new_volume(api)
    head = next(iter(volume["AccessPath"].values()))
    os.remove(head)  # the freeze fails on storage
    with worker_thread(delay=0.1):
        status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=volume["UUID"]))
    operation = Operation.objects.get(kind=OperationKind.SNAPSHOT_CREATE)
    assert operation.state == OperationState.FAILED
    assert operation.error_scode >= 5000
    assert_error(status, body, status, operation.error_scode)
    assert status >= 500
    assert not Snapshot.objects.exists()


def test_a_call_waits_for_a_short_step_that_holds_its_volume(api, no_dispatch, settings):
    with worker_thread(delay=0):
        volume = new_volume(api)
    vol = volume["UUID"]
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0  # the first call answers while its step is queued
    status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="a"))
    assert body["data"]["snapshot"]["Status"] == SnapshotStatus.CREATING
    assert Volume.objects.get(uuid=vol).state == EventState.SNAPSHOTTING
    with worker_thread(delay=0.3):
        status, body = api.post(
            "snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="b")
        )
    assert (status, body["scode"]) == (200, 0), body
    # b was accepted after a ended (the wait); b's own step answered at once (wait 0): run it here,
    # the thread may have stopped before it saw b.
    assert Snapshot.objects.get(name="a").status == SnapshotStatus.AVAILABLE
    run_queued()
    assert sorted(Snapshot.objects.values_list("name", "status")) == [
        ("a", SnapshotStatus.AVAILABLE),
        ("b", SnapshotStatus.AVAILABLE),
    ]


def test_a_short_step_that_outlasts_the_busy_wait_is_named(api, no_dispatch, settings):
    with worker_thread(delay=0):
        volume = new_volume(api)
    vol = volume["UUID"]
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0
    settings.SHARESTORE_BUSY_WAIT_SECONDS = 0.3
    api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="a"))
    operation = Operation.objects.get(kind=OperationKind.SNAPSHOT_CREATE)
    status, body = api.post("delete", example("delete", volume_uuid=vol, volume_name=volume["Name"]))
    assert_error(status, body, 409, 4010)
    assert str(operation.uuid) in body["message"] and "create snapshot" in body["message"]
    assert "0.0% done" in body["message"] and "cannot delete it now" in body["message"]
    assert "创建快照" in body["message_cn"] and "snapshot.create" not in body["message_cn"]


def answered_then_run(answer):
    """A call answered at once (no wait), then the operations it queued run: ready for the next call."""
    run_queued()
    return answer


def test_a_long_operation_is_named_at_once(api, no_dispatch, settings):
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0
    volume = answered_then_run(new_volume(api))
    vol = volume["UUID"]
    _, body = answered_then_run(
        api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="a"))
    )
    answered_then_run(
        api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="b"))
    )
    snapshot = body["data"]["snapshot"]
    status, body = api.post(
        "snapshot/delete",
        example("snapshot/delete", volume_uuid=vol, snapshot_uuid=snapshot["UUID"], snapshot_name="a"),
    )
    assert (status, body["scode"]) == (200, 0), body
    merge = Operation.objects.get(kind=OperationKind.SNAPSHOT_DELETE)
    Operation.objects.filter(pk=merge.pk).update(state=OperationState.RUNNING, progress=42.5)
    status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="c"))
    assert_error(status, body, 409, 4010)
    assert body["message"] == (
        f"volume {vol} is busy: delete snapshot (operation {merge.uuid}) is 42.5% done; "
        "cannot take a snapshot now, retry when it finishes"
    )
    assert body["message_cn"] == (
        f"卷 {vol} 正忙：删除快照（操作 {merge.uuid}）已完成 42.5%，暂时无法创建快照，请在其完成后重试"
    )


def volume_files(pool: Pool, volume: Volume) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), pool.path)
        for d, _, files in os.walk(pool.path)
        for f in files
        if str(volume.uuid) in os.path.join(d, f)
    )


def test_a_volume_delete_during_a_merge_runs_when_the_merge_ends(api, no_dispatch, settings):
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0
    volume = answered_then_run(new_volume(api))
    vol = volume["UUID"]
    head = next(iter(volume["AccessPath"].values()))
    qemu_io(head, "qcow2", "write -P 0xaa 0 2M")
    _, body = answered_then_run(
        api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="a"))
    )
    qemu_io(head, "qcow2", "write -P 0xbb 1M 2M")
    snapshot = body["data"]["snapshot"]
    pool = Pool.objects.get(uuid=POOL_DISKS)
    row = Volume.objects.get(uuid=vol)
    assert volume_files(pool, row)  # the head and the snapshot's layer
    status, body = api.post(
        "snapshot/delete",
        example("snapshot/delete", volume_uuid=vol, snapshot_uuid=snapshot["UUID"], snapshot_name="a"),
    )
    assert (status, body["scode"]) == (200, 0), body
    assert Volume.objects.get(uuid=vol).state == EventState.MERGING

    status, body = api.post("delete", example("delete", volume_uuid=vol, volume_name=volume["Name"]))
    assert (status, body["scode"]) == (200, 0), body
    row.refresh_from_db()
    # Accepted: recorded, and nothing removed under the merge.
    assert (row.state, row.deleted_at is not None) == (EventState.MERGING, True)
    assert AuditEvent.objects.filter(action="volume.delete.queued", object_uuid=vol).exists()
    assert not Operation.objects.filter(kind=OperationKind.VOLUME_DELETE).exists()

    run_queued()  # the merge (on real storage), which then queues the delete
    merge = Operation.objects.get(kind=OperationKind.SNAPSHOT_DELETE)
    assert merge.state == OperationState.SUCCEEDED
    assert Volume.objects.get(uuid=vol).state == EventState.DELETING
    run_queued()  # the delete
    row.refresh_from_db()
    assert row.state == EventState.DELETED
    assert Operation.objects.get(kind=OperationKind.VOLUME_DELETE).state == OperationState.SUCCEEDED
    assert volume_files(pool, row) == []
    status, body = api.post("get", scoped(volume_uuid=vol))
    assert_error(status, body, 404, 3004)


def test_a_rollback_waits_for_a_linked_clone_being_linked(api, no_dispatch, settings):
    with worker_thread(delay=0):
        volume = new_volume(api)
        vol = volume["UUID"]
        _, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=vol))
    snap = body["data"]["snapshot"]["UUID"]
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0
    clone = example(
        "clone",
        volume_uuid=vol,
        volume_name=volume["Name"],
        clone_dst_pool_uuid=POOL_DISKS,
        clone_dst_vol_name="linked",
        snapshot_uuid=snap,
    )
    status, body = api.post("clone", clone)
    assert body["data"]["volume"]["EventState"] == EventState.CLONING  # answered before the link
    with worker_thread(delay=0.3):
        status, body = api.post(
            "snapshot/rollback", example("snapshot/rollback", volume_uuid=vol, snapshot_uuid=snap)
        )
    assert (status, body["scode"]) == (200, 0), body
    assert Volume.objects.get(name="linked").state == EventState.AVAILABLE
    assert Operation.objects.get(kind=OperationKind.SNAPSHOT_ROLLBACK).state in (
        OperationState.QUEUED,
        OperationState.SUCCEEDED,
    )
