"""The contract's examples replayed in a platform's natural order against a real `manage.py qcluster`
(issue 15): every call right after the previous answer, never sleeping between calls, polling only
where a long copy runs (backup, restore); every answer scode 0 and shaped as the contract shows.

Runs where a worker process can reach the test database (PostgreSQL in CI).
"""

from __future__ import annotations

import time

import pytest

from backups.models import Backup
from sharestore.core.choices import ACTIVE_OPERATION_STATES
from sharestore.core.models import Operation
from tests.api.test_backup_api import example, example_query, point  # noqa: F401  (the demo backup point)
from tests.contract import assert_matches_contract
from tests.helpers import POOL_DISKS, qemu_io, scoped
from tests.services.test_real_worker import worker  # noqa: F401  (the real qcluster fixture)
from volumes.choices import BackupStatus, EventState, SnapshotStatus
from volumes.models import Volume

COPY_TIMEOUT = 120.0
# The name the list, tree and backup examples show (the tree is keyed by snapshot names).
SNAPSHOT = "aaa"


def ok(endpoint: str, answer) -> dict:
    status, body = answer
    assert (status, body["scode"]) == (200, 0), (endpoint, body)
    assert_matches_contract(endpoint, body)
    return body["data"]


def poll(call, done, what: str):
    """Where a long copy runs: ask again until `done(answer)`."""
    deadline = time.monotonic() + COPY_TIMEOUT
    while True:
        data = call()
        if done(data):
            return data
        assert time.monotonic() < deadline, f"{what} did not finish: {data}"
        time.sleep(0.2)


@pytest.mark.usefixtures("worker")
def test_contract_sequence_back_to_back_on_a_real_worker(api, settings):
    # Bounded waits, generous for a loaded CI machine (a worker's first task also waits for it to start).
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 60
    settings.SHARESTORE_BUSY_WAIT_SECONDS = 60

    body = example("create", capacity=16 << 20)
    body.pop("backing_file")
    volume = ok("create", api.post("create", body))["volume"]
    assert volume["EventState"] == EventState.AVAILABLE
    vol, name = volume["UUID"], volume["Name"]
    qemu_io(next(iter(volume["AccessPath"].values())), "qcow2", "write -P 0xaa 0 1M")

    snapshot = ok(
        "snapshot/create",
        api.post("snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name=SNAPSHOT)),
    )["snapshot"]
    assert (snapshot["Status"], snapshot["Children"], snapshot["Size"]) == (
        SnapshotStatus.AVAILABLE,
        ["head"],
        1 << 20,
    )
    snap = snapshot["UUID"]

    listed = ok("snapshot/list", api.post("snapshot/list", example("snapshot/list", volume_uuid=vol)))["list"]
    assert [(s["UUID"], s["Status"]) for s in listed] == [(snap, SnapshotStatus.AVAILABLE)]
    tree = ok(
        "snapshot/tree/get", api.post("snapshot/tree/get", example("snapshot/tree/get", volume_uuid=vol))
    )
    assert tree["tree"]["Parents"] == {SNAPSHOT: "", "head": SNAPSHOT}

    clone = ok(
        "clone",
        api.post(
            "clone",
            example(
                "clone",
                volume_uuid=vol,
                volume_name=name,
                clone_dst_pool_uuid=POOL_DISKS,
                clone_dst_vol_name="linked",
                snapshot_uuid=snap,
            ),
        ),
    )
    assert (clone["volume"]["EventState"], clone["clone_progress"]) == (EventState.AVAILABLE, 100.0)
    linked = clone["volume"]["UUID"]
    progress = ok("clone/progress", api.get("clone/progress", scoped(volume_uuid=linked)))
    assert progress["clone_progress"] == 100.0

    backup = ok(
        "backup/add",
        api.post("backup/add", example("backup/add", volume_uuid=vol, snapshot_uuid=snap)),
    )["backup"]
    query = example_query(filter_volume_uuid=vol, filter_start_time="", filter_end_time="")
    listed = poll(
        lambda: ok("backup/list", api.get("backup/list", query)),
        lambda data: data["backup"] and data["backup"][0]["Status"] == BackupStatus.COMPLETED,
        "backup",
    )
    assert [b["UUID"] for b in listed["backup"]] == [backup["UUID"]]

    restored = ok(
        "backup/restore",
        api.post("backup/restore", example("backup/restore", backup_uuid=backup["UUID"])),
    )["volume"]["UUID"]
    poll(
        lambda: ok("get", api.post("get", scoped(volume_uuid=restored))),
        lambda data: data["volume"]["EventState"] == EventState.AVAILABLE,
        "restore",
    )

    ok(
        "snapshot/rollback",
        api.post("snapshot/rollback", example("snapshot/rollback", volume_uuid=vol, snapshot_uuid=snap)),
    )
    assert Volume.objects.get(uuid=vol).state == EventState.AVAILABLE

    ok("delete", api.post("delete", example("delete", volume_uuid=linked, volume_name="linked")))
    ok("delete", api.post("delete", example("delete", volume_uuid=restored, volume_name="restore")))
    ok(
        "snapshot/delete",
        api.post(
            "snapshot/delete",
            example("snapshot/delete", volume_uuid=vol, snapshot_uuid=snap, snapshot_name=SNAPSHOT),
        ),
    )
    ok("backup/delete", api.post("backup/delete", example("backup/delete", backup_uuid=backup["UUID"])))
    ok("delete", api.post("delete", example("delete", volume_uuid=vol, volume_name=name)))

    # After the last call: everything the calls started ends, and nothing is left behind.
    deadline = time.monotonic() + COPY_TIMEOUT
    while Operation.objects.filter(state__in=ACTIVE_OPERATION_STATES).exists():
        assert time.monotonic() < deadline, list(Operation.objects.values("kind", "state", "phase"))
        time.sleep(0.2)
    assert set(Volume.objects.values_list("state", flat=True)) == {EventState.DELETED}
    assert Backup.objects.get(uuid=backup["UUID"]).status == BackupStatus.DELETED
    assert not Operation.objects.exclude(state="succeeded").exists(), list(
        Operation.objects.exclude(state="succeeded").values("kind", "error_message")
    )
