"""The six volume endpoints of the contract, on real qcow2 images in temporary pools."""

from __future__ import annotations

import copy
import os

import pytest

from sharestore.core.choices import OperationState
from sharestore.core.models import AuditEvent, Operation
from tests.contract import EXAMPLES, assert_matches_contract
from tests.helpers import (
    CLUSTER,
    HOST,
    POOL_BBB,
    POOL_DISKS,
    TENANT,
    image_info,
    pattern_matches,
    qemu_img,
    qemu_io,
    scoped,
    success_envelope,
)
from volumes.choices import EventState
from volumes.models import Volume

GiB = 1 << 30


def create_body(**overrides) -> dict:
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(overrides)
    return body


def pool_path(topology, pool_uuid: str) -> str:
    return next(p.path for p in topology["pools"] if str(p.uuid) == pool_uuid)


def test_contract_create_example_makes_a_real_image(api, topology):
    status, body = api.post("create", create_body())
    assert status == 200
    assert_matches_contract("create", body)
    volume = body["data"]["volume"]
    expected_path = os.path.join(pool_path(topology, POOL_DISKS), "volume", volume["UUID"])
    # The answer is given before the task runs; the task ran when the request committed.
    assert body == success_envelope(
        {
            "volume": {
                "UUID": volume["UUID"],
                "Name": "test",
                "NamespaceUUID": "83b1add8-2b9d-4f0c-8f3b-e0c3a2001006",
                "Type": "block",
                "PoolUUID": POOL_DISKS,
                "Capacity": 4294967296,
                "Used": 0,
                "Attr": None,
                "PoolName": "disks",
                "ZoneUUID": "3e2f589c-d5d7-4807-9c03-238fe967cdbd",
                "ZoneName": "default",
                "SnapLength": 0,
                "SnapCap": 12884901888,
                "Ctime": volume["Ctime"],
                "Mtime": volume["Mtime"],
                "AccessPath": {HOST: expected_path},
                "EventState": EventState.CREATING,
                "ShareNsUUIDs": None,
                "Parent": "",
                "ParentSnapshot": "",
                "Children": None,
            },
            "clone_progress": 0,
            "cluster_uuid": "",
            "cluster_name": "",
            "cluster_mode": "",
            "tenant": "",
            "tenant_name": "",
        }
    )
    info = image_info(expected_path)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 4294967296
    assert Volume.objects.get(uuid=volume["UUID"]).state == EventState.AVAILABLE
    operation = Operation.objects.get(target_uuid=volume["UUID"])
    assert (operation.state, operation.progress, operation.error_scode) == (
        OperationState.SUCCEEDED,
        100.0,
        0,
    )


def test_contract_list_example_returns_every_documented_key(api):
    api.post("create", create_body(volume_name="first"))
    api.post("create", create_body(volume_name="备份中发GV", pool_uuid=POOL_BBB))
    status, body = api.post("list", EXAMPLES["list"]["request"])
    assert status == 200
    assert_matches_contract("list", body)
    data = body["data"]
    assert data["TotalCount"] == 2
    assert [item["volume"]["Name"] for item in data["list"]] == ["备份中发GV", "first"]
    assert all(item["volume"]["EventState"] == EventState.AVAILABLE for item in data["list"])
    assert data["list"][0] | {"volume": None} == {
        "tenant": TENANT,
        "tenant_name": "zhangyiru",
        "volume": None,
        "cluster_uuid": CLUSTER,
        "cluster_name": "cluster_name_243",
        "cluster_mode": "",
    }
    assert data["each_range_list_state"] == [
        {
            "cluster_uuid": CLUSTER,
            "cluster_name": "cluster_name_243",
            "cluster_mode": "",
            "namespace_uuid": "83b1add8-2b9d-4f0c-8f3b-e0c3a2001006",
            "result": success_envelope(""),
            "total_count": 2,
        }
    ]


def test_list_filters_and_pages(api):
    for index in range(5):
        api.post(
            "create", create_body(volume_name=f"vol-{index}", pool_uuid=POOL_DISKS if index % 2 else POOL_BBB)
        )
    _, by_pool = api.post("list", scoped(filter_pool_uuid=POOL_DISKS))
    assert sorted(i["volume"]["Name"] for i in by_pool["data"]["list"]) == ["vol-1", "vol-3"]
    _, by_name = api.post("list", scoped(filter_name="OL-4"))
    assert [i["volume"]["Name"] for i in by_name["data"]["list"]] == ["vol-4"]
    _, page1 = api.post("list", scoped(page_num=1, page_size=2))
    _, page2 = api.post("list", scoped(page_num=2, page_size=2))
    _, page3 = api.post("list", scoped(page_num=3, page_size=2))
    names = [i["volume"]["Name"] for p in (page1, page2, page3) for i in p["data"]["list"]]
    assert names == ["vol-4", "vol-3", "vol-2", "vol-1", "vol-0"]
    assert page1["data"]["TotalCount"] == page3["data"]["TotalCount"] == 5
    _, page0 = api.post("list", scoped(page_num=0, page_size=2))
    assert page0["data"]["list"] == page1["data"]["list"]


def test_get_returns_the_volume(api):
    _, created = api.post("create", create_body(volume_name="one"))
    uuid = created["data"]["volume"]["UUID"]
    status, body = api.post("get", scoped(volume_uuid=uuid))
    assert status == 200
    assert_matches_contract("get", body)
    assert body["data"]["volume"]["UUID"] == uuid
    assert body["data"]["volume"]["EventState"] == EventState.AVAILABLE
    assert body["data"] | {"volume": None} == {
        "volume": None,
        "clone_progress": 0,
        "cluster_uuid": "",
        "cluster_name": "",
        "cluster_mode": "",
        "tenant": "",
        "tenant_name": "",
    }


def test_delete_removes_row_from_live_set_and_file(api, topology):
    _, created = api.post("create", create_body(volume_name="doomed"))
    volume = created["data"]["volume"]
    path = volume["AccessPath"][HOST]
    assert os.path.isfile(path)
    status, body = api.post("delete", scoped(volume_uuid=volume["UUID"], volume_name="doomed", force=True))
    assert status == 200
    assert_matches_contract("delete", body)
    assert body == success_envelope(
        {
            "volume": None,
            "clone_progress": 0,
            "cluster_uuid": "",
            "cluster_name": "",
            "cluster_mode": "",
            "tenant": "",
            "tenant_name": "",
        }
    )
    assert not os.path.exists(path)
    assert Volume.objects.get(uuid=volume["UUID"]).state == EventState.DELETED
    status, body = api.post("get", scoped(volume_uuid=volume["UUID"]))
    assert (status, body["scode"]) == (404, 3004)
    # The name is free again once the volume left the live set.
    status, body = api.post("create", create_body(volume_name="doomed"))
    assert (status, body["scode"]) == (200, 0)
    trail = list(
        AuditEvent.objects.filter(object_uuid=volume["UUID"])
        .order_by("created", "id")
        .values_list("action", flat=True)
    )
    assert trail == [
        "volume.create",
        "volume.create.finish",
        "volume.create.succeeded",
        "volume.delete",
        "volume.delete.finish",
        "volume.delete.succeeded",
    ]


def test_used_update_reads_allocation_from_disk(api):
    _, created = api.post("create", create_body(volume_name="written", capacity=64 << 20))
    volume = created["data"]["volume"]
    qemu_io(volume["AccessPath"][HOST], "qcow2", "write -P 0x11 0 3M")
    status, body = api.post("used/update", scoped(volume_uuid=volume["UUID"], volume_name="written"))
    assert status == 200
    assert_matches_contract("used/update", body)
    assert body["data"]["volume"]["Used"] == 3 << 20
    assert Volume.objects.get(uuid=volume["UUID"]).used == 3 << 20
    # The same service as the console's and the command's refresh: it records who changed what.
    event = AuditEvent.objects.get(action="usage.refresh", object_uuid=volume["UUID"])
    assert event.actor == AuditEvent.objects.get(action="volume.create", object_uuid=volume["UUID"]).actor
    assert event.message.startswith("used ") and event.message.endswith(f" -> {3 << 20}")


def test_snap_length_update_is_zero_without_snapshots(api):
    _, created = api.post("create", create_body(volume_name="nosnap"))
    volume = created["data"]["volume"]
    status, body = api.post("snap_length/update", scoped(volume_uuid=volume["UUID"], volume_name="nosnap"))
    assert status == 200
    assert_matches_contract("snap_length/update", body)
    assert body["data"]["volume"]["SnapLength"] == 0


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_import_copies_content_and_detects_capacity(api, import_root, fmt):
    source = import_root / f"source.{fmt}"
    qemu_img("create", "-q", "-f", fmt, str(source), str(48 << 20))
    qemu_io(source, fmt, "write -P 0x5a 0 1M", "write -P 0xc3 40M 512k")
    status, body = api.post(
        "create", create_body(volume_name=f"imported-{fmt}", capacity=None, backing_file=str(source))
    )
    assert (status, body["scode"]) == (200, 0), body
    volume = body["data"]["volume"]
    assert volume["Capacity"] == 48 << 20
    assert volume["EventState"] == EventState.IMPORTING
    target = volume["AccessPath"][HOST]
    assert qemu_img("compare", "-f", fmt, "-F", "qcow2", str(source), target).returncode == 0
    assert pattern_matches(target, "qcow2", 40 << 20, 512 << 10, 0xC3)
    assert image_info(target)["format"] == "qcow2"
    assert image_info(target).get("backing-filename") is None
    assert Volume.objects.get(uuid=volume["UUID"]).state == EventState.AVAILABLE
    assert Operation.objects.get(target_uuid=volume["UUID"]).progress == 100.0


def test_import_with_larger_capacity_grows_the_image(api, import_root):
    source = import_root / "small.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(source), str(16 << 20))
    qemu_io(source, "qcow2", "write -P 0x77 0 1M")
    status, body = api.post(
        "create", create_body(volume_name="grown", capacity=64 << 20, backing_file=str(source))
    )
    assert status == 200, body
    target = body["data"]["volume"]["AccessPath"][HOST]
    assert image_info(target)["virtual-size"] == 64 << 20
    assert pattern_matches(target, "qcow2", 0, 1 << 20, 0x77)
    assert pattern_matches(target, "qcow2", 16 << 20, 48 << 20, 0)


def test_chinese_names_round_trip(api):
    status, body = api.post("create", create_body(volume_name="数据盘-一号"))
    assert status == 200
    _, listed = api.post("list", scoped(filter_name="一号"))
    assert [i["volume"]["Name"] for i in listed["data"]["list"]] == ["数据盘-一号"]


def test_pool_capacity_is_enforced_with_overcommit(api, topology):
    pool = next(p for p in topology["pools"] if str(p.uuid) == POOL_DISKS)
    pool.capacity = 10 * GiB
    pool.overcommit_ratio = 1.5
    pool.save()
    assert api.post("create", create_body(volume_name="a", capacity=10 * GiB))[1]["scode"] == 0
    status, body = api.post("create", create_body(volume_name="b", capacity=6 * GiB))
    assert (status, body["scode"]) == (409, 4006)
    assert "5368709120" in body["message"]
    assert api.post("create", create_body(volume_name="c", capacity=5 * GiB))[1]["scode"] == 0
    assert not Volume.objects.filter(name="b").exists()


def test_attach_and_detach_extension(api):
    _, created = api.post("create", create_body(volume_name="shared", volume_type="share"))
    uuid = created["data"]["volume"]["UUID"]
    vm1, vm2 = "863b64eb-c8ed-4f25-9af9-9c96b28a7200", "963b64eb-c8ed-4f25-9af9-9c96b28a7201"
    status, body = api.post(
        "attach",
        scoped(
            volume_uuid=uuid, vm_uuid=vm1, vm_device="sda", vm_host_uuid=HOST, vm_name="qqq", vm_type="GUS"
        ),
    )
    assert status == 200
    assert body["data"]["volume"]["Attr"] == {
        "VirtualMachine": vm1,
        "VirtualMachineDevice": "sda",
        "VirtualMachineHostUUID": HOST,
        "VirtualMachineName": "qqq",
        "VirtualMachineType": "GUS",
    }
    _, body = api.post("attach", scoped(volume_uuid=uuid, vm_uuid=vm2, vm_device="sdb"))
    assert body["data"]["volume"]["Attr"]["VirtualMachine"] == vm1
    assert [a["VirtualMachine"] for a in body["data"]["volume"]["Attr"]["Attachments"]] == [vm1, vm2]
    status, body = api.post("delete", scoped(volume_uuid=uuid, volume_name="shared"))
    assert (status, body["scode"]) == (409, 4003)
    api.post("detach", scoped(volume_uuid=uuid, vm_uuid=vm1))
    _, body = api.post("detach", scoped(volume_uuid=uuid, vm_uuid=vm2))
    assert body["data"]["volume"]["Attr"] is None
    status, body = api.post("delete", scoped(volume_uuid=uuid, volume_name="shared"))
    assert (status, body["scode"]) == (200, 0)


def test_block_volume_takes_one_vm(api):
    _, created = api.post("create", create_body(volume_name="blk"))
    uuid = created["data"]["volume"]["UUID"]
    api.post("attach", scoped(volume_uuid=uuid, vm_uuid="863b64eb-c8ed-4f25-9af9-9c96b28a7200"))
    status, body = api.post(
        "attach", scoped(volume_uuid=uuid, vm_uuid="963b64eb-c8ed-4f25-9af9-9c96b28a7201")
    )
    assert (status, body["scode"]) == (409, 4007)


def test_force_delete_detaches_but_never_overrides_a_busy_volume(api):
    _, created = api.post("create", create_body(volume_name="attached"))
    uuid = created["data"]["volume"]["UUID"]
    api.post("attach", scoped(volume_uuid=uuid, vm_uuid="863b64eb-c8ed-4f25-9af9-9c96b28a7200"))
    Volume.objects.filter(uuid=uuid).update(state=EventState.SNAPSHOTTING)
    status, body = api.post("delete", scoped(volume_uuid=uuid, volume_name="attached", force=True))
    assert (status, body["scode"]) == (409, 4001)
    assert "snapshotting" in body["message"]
    Volume.objects.filter(uuid=uuid).update(state=EventState.AVAILABLE)
    status, body = api.post("delete", scoped(volume_uuid=uuid, volume_name="attached", force=True))
    assert (status, body["scode"]) == (200, 0)
