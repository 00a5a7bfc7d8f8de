"""snap_capacity 0 means "this volume takes no snapshots" (docs/api.md): snapshot/create answers 4107
with a message that says so, not 4102's "delete snapshots"; a positive SnapCap is a quota as before."""

from __future__ import annotations

from tests.helpers import POOL_DISKS, assert_error, scoped, storage_state
from volumes.models import Snapshot

MiB = 1 << 20


def create(api, name, snap_capacity):
    body = scoped(
        pool_uuid=POOL_DISKS,
        volume_name=name,
        volume_type="block",
        capacity=16 * MiB,
        snap_capacity=snap_capacity,
    )
    status, answer = api.post("create", body)
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["volume"]


def test_zero_snap_capacity_is_accepted_and_disables_snapshots(api, data_dir):
    volume = create(api, "nosnaps", 0)
    assert volume["SnapCap"] == 0
    before = storage_state(data_dir)
    status, body = api.post("snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name="s1"))
    assert_error(status, body, 409, 4107)
    assert volume["UUID"] in body["message"] and "SnapCap is 0" in body["message"]
    assert "delete" not in body["message"] and "删除" not in body["message_cn"]
    assert "快照容量为 0" in body["message_cn"]
    assert storage_state(data_dir) == before
    assert not Snapshot.objects.exists()


def test_a_positive_snap_capacity_takes_snapshots(api):
    volume = create(api, "snaps", MiB)
    status, body = api.post("snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name="s1"))
    assert (status, body["scode"]) == (200, 0), body
    assert Snapshot.objects.filter(name="s1").exists()
