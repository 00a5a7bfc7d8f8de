"""The clone endpoints on real images: the contract's `clone` and `clone/progress` examples replayed on
demo data (UUIDs from earlier answers) with every documented key and JSON type, whole answers, the
flatten extension, tenant tokens, and bad input that answers its scode and changes nothing."""

from __future__ import annotations

import copy
import json
import os
from urllib.parse import parse_qsl, urlsplit

import pytest
from rest_framework.test import APIClient

from sharestore import errors
from sharestore.core.models import Operation
from sharestore.core.services.tokens import token_create
from tests.contract import EXAMPLES, assert_matches_contract
from tests.helpers import (
    CLUSTER,
    HOST,
    POOL_BBB,
    POOL_DISKS,
    TENANT,
    assert_error,
    identical,
    qemu_img,
    qemu_io,
    scoped,
    storage_state,
    success_envelope,
)
from tests.services.snapshot_support import storage_fault
from volumes.choices import EventState
from volumes.models import Namespace, Pool, Snapshot, Tenant, Volume, VolumeAttachment

MiB = 1 << 20
MISSING = object()
UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


def wrapper(volume, progress) -> dict:
    return {
        "volume": volume,
        "clone_progress": progress,
        "cluster_uuid": "",
        "cluster_name": "",
        "cluster_mode": "",
        "tenant": "",
        "tenant_name": "",
    }


def example(endpoint: str, **replace) -> dict:
    body = copy.deepcopy(EXAMPLES[endpoint]["request"])
    for key, value in replace.items():
        assert key in body, key
        body[key] = value
    return body


def progress_query(volume_uuid: str) -> dict:
    """The contract's clone/progress query, on demo data: its keys, the example body's tenant and cluster."""
    query = dict(parse_qsl(urlsplit(EXAMPLES["clone/progress"]["url"]).query))
    body = EXAMPLES["clone/progress"]["request"]
    assert set(query) == set(body)
    return {
        **query,
        "tenant": body["tenant"],
        "cluster_uuid": body["cluster_uuid"],
        "volume_uuid": volume_uuid,
    }


def new_volume(api, name="zzz", tenant=TENANT) -> dict:
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name=name, capacity=16 * MiB, tenant=tenant, pool_uuid=POOL_DISKS)
    status, answer = api.post("create", body)
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["volume"]


def snapshot(api, volume_uuid, name="snap", tenant=TENANT) -> str:
    status, body = api.post(
        "snapshot/create",
        {"tenant": tenant, "cluster_uuid": CLUSTER, "volume_uuid": volume_uuid, "snapshot_name": name},
    )
    assert (status, body["scode"]) == (200, 0), body
    return body["data"]["snapshot"]["UUID"]


def head(volume: dict) -> str:
    return volume["AccessPath"][HOST]


def layer(snapshot_uuid: str) -> str:
    row = Snapshot.objects.select_related("volume__pool").get(uuid=snapshot_uuid)
    return os.path.join(row.volume.pool.path, row.layer_name)


@pytest.fixture
def source(api):
    volume = new_volume(api)
    qemu_io(head(volume), "qcow2", "write -P 0x11 0 1M", "write -P 0x22 4M 1M")
    snap = snapshot(api, volume["UUID"])
    qemu_io(head(volume), "qcow2", "write -P 0x33 0 1M")
    return {"volume": volume, "snapshot": snap}


def test_contract_examples_replay_on_demo_data(api, source):
    vol, snap = source["volume"], source["snapshot"]
    body = example("clone", volume_uuid=vol["UUID"], snapshot_uuid=snap)
    status, answer = api.post("clone", body)
    assert (status, answer["scode"]) == (200, 0), answer
    assert_matches_contract("clone", answer)
    clone = answer["data"]["volume"]
    # The answer is given when the request is accepted; the overlay is created right after.
    assert answer == success_envelope(
        wrapper(
            {
                **clone,
                "Name": "test",
                "PoolUUID": POOL_DISKS,
                "Capacity": 16 * MiB,
                "Used": 0,
                "EventState": EventState.CLONING,
                "Parent": vol["UUID"],
                "ParentSnapshot": snap,
                "Children": None,
                "SnapCap": vol["SnapCap"],
                "Type": vol["Type"],
            },
            0.0,
        )
    )
    assert clone["UUID"] != vol["UUID"] and clone["AccessPath"][HOST].endswith(f"/volume/{clone['UUID']}")

    status, answer = api.get("clone/progress", progress_query(clone["UUID"]))
    assert (status, answer["scode"]) == (200, 0), answer
    assert_matches_contract("clone/progress", answer)
    assert answer["data"]["clone_progress"] == 100.0
    assert answer["data"]["volume"]["EventState"] == EventState.AVAILABLE
    assert identical(head(clone), layer(snap))
    # The source's UUID answers for its newest clone; the source lists it among its Children.
    _, by_source = api.get("clone/progress", progress_query(vol["UUID"]))
    assert by_source == answer
    _, got = api.post("get", scoped(volume_uuid=vol["UUID"]))
    assert got["data"]["volume"]["Children"] == [clone["UUID"]]
    _, listed = api.post("snapshot/list", scoped(volume_uuid=vol["UUID"]))
    item = listed["data"]["list"][0]
    assert (item["Ref"], item["Attr"]) == (1, {"LinkCloneUsed": "LinkCloneUsed"})

    # A full clone of the same snapshot into another pool, with the example's body otherwise.
    body = example(
        "clone",
        volume_uuid=vol["UUID"],
        snapshot_uuid=snap,
        is_link=False,
        clone_dst_vol_name="full",
        clone_dst_pool_uuid=POOL_BBB,
    )
    status, answer = api.post("clone", body)
    assert (status, answer["scode"]) == (200, 0), answer
    assert_matches_contract("clone", answer)
    full = answer["data"]["volume"]
    assert (full["EventState"], full["Parent"], full["ParentSnapshot"], full["PoolUUID"]) == (
        EventState.CLONING,
        vol["UUID"],
        "",
        POOL_BBB,
    )
    status, answer = api.get("clone/progress", progress_query(full["UUID"]))
    assert_matches_contract("clone/progress", answer)
    assert answer == success_envelope(wrapper(answer["data"]["volume"], 100.0))
    assert answer["data"]["volume"]["EventState"] == EventState.AVAILABLE
    assert answer["data"]["volume"]["Used"] == 2 * MiB
    assert identical(head(full), layer(snap))
    assert "backing-filename" not in qemu_img("info", "-U", "--output=json", head(full)).stdout

    # The example's body fields are accepted on the GET as well.
    status, answer = api.get("clone/progress", {})
    assert (status, answer["scode"]) == (400, 1002)


def test_progress_accepts_the_example_body(api, source):
    body = example("clone", volume_uuid=source["volume"]["UUID"], snapshot_uuid=source["snapshot"])
    clone = api.post("clone", body)[1]["data"]["volume"]
    request = example("clone/progress", volume_uuid=clone["UUID"])
    with api.capture(execute=True):
        response = api.client.generic(
            "GET", "/v1/volume/share/clone/progress", json.dumps(request), content_type="application/json"
        )
    assert response.status_code == 200 and response.json()["data"]["clone_progress"] == 100.0


def test_flatten_extension(api, source):
    vol, snap = source["volume"], source["snapshot"]
    clone = api.post("clone", example("clone", volume_uuid=vol["UUID"], snapshot_uuid=snap))[1]["data"][
        "volume"
    ]
    qemu_io(head(clone), "qcow2", "write -P 0x44 8M 1M")
    status, answer = api.post("flatten", scoped(volume_uuid=clone["UUID"], volume_name="test"))
    assert (status, answer["scode"]) == (200, 0), answer
    assert answer["data"]["volume"]["EventState"] == EventState.FLATTENING
    assert answer["data"]["clone_progress"] == 0.0
    _, answer = api.get("clone/progress", progress_query(clone["UUID"]))
    assert answer["data"]["clone_progress"] == 100.0
    flat = answer["data"]["volume"]
    assert (flat["EventState"], flat["Parent"], flat["ParentSnapshot"]) == (
        EventState.AVAILABLE,
        vol["UUID"],
        "",
    )
    assert "backing-filename" not in qemu_img("info", "-U", "--output=json", head(clone)).stdout
    _, listed = api.post("snapshot/list", scoped(volume_uuid=vol["UUID"]))
    assert (listed["data"]["list"][0]["Ref"], listed["data"]["list"][0]["Attr"]) == (0, None)
    # Again: not a linked clone any more.
    status, answer = api.post("flatten", scoped(volume_uuid=clone["UUID"], volume_name="test"))
    assert (status, answer["scode"]) == (409, 4203)
    # The snapshot can go now; the flattened clone keeps its content.
    status, answer = api.post(
        "snapshot/delete", scoped(volume_uuid=vol["UUID"], snapshot_uuid=snap, snapshot_name="snap")
    )
    assert (status, answer["scode"]) == (200, 0), answer
    qemu_io(head(clone), "qcow2", "read -P 0x11 0 1M", "read -P 0x22 4M 1M", "read -P 0x44 8M 1M")


def test_a_failed_clone_answers_its_failure(api, source):
    body = example(
        "clone", volume_uuid=source["volume"]["UUID"], snapshot_uuid=source["snapshot"], is_link=False
    )
    with storage_fault(5, fault=errors.StorageError):
        status, answer = api.post("clone", body)
    assert (status, answer["scode"]) == (200, 0), answer
    clone = answer["data"]["volume"]
    status, answer = api.get("clone/progress", progress_query(clone["UUID"]))
    assert (status, answer["scode"]) == (500, 5001), answer
    assert answer["message"] == "storage operation failed: injected failure after step 5"
    assert answer["message_cn"] == "存储操作失败：详情见英文消息"
    assert answer["data"] is None
    _, got = api.post("get", scoped(volume_uuid=clone["UUID"]))
    assert (got["data"]["volume"]["EventState"], got["data"]["volume"]["ParentSnapshot"]) == (
        EventState.ERROR,
        "",
    )
    assert not os.path.exists(head(clone))
    # A volume in error is deleted as usual, and its name is free again.
    status, answer = api.post("delete", scoped(volume_uuid=clone["UUID"], volume_name="test"))
    assert (status, answer["scode"]) == (200, 0)
    assert api.post("clone", body)[1]["scode"] == 0


# -- tenants -------------------------------------------------------------------------------------


@pytest.fixture
def other_tenant(topology):
    tenant = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=tenant)
    return tenant


def tenant_client(tenant) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {token_create(name=f'token-{tenant.name}', tenant=tenant)[1]}"
    )
    return client


def test_a_platform_token_clones_for_another_tenant_and_tenant_tokens_stay_in_their_tenant(
    api, source, other_tenant
):
    vol, snap = source["volume"], source["snapshot"]
    body = example(
        "clone", volume_uuid=vol["UUID"], snapshot_uuid=snap, is_link=False, clone_dst_vol_tenant=OTHER_TENANT
    )
    status, answer = api.post("clone", body)
    assert (status, answer["scode"]) == (200, 0), answer
    theirs = answer["data"]["volume"]
    assert theirs["NamespaceUUID"] == str(other_tenant.namespace.uuid)
    # Polled as the other tenant: their volume. Polled by the source as its owner: progress only.
    _, answer = api.get(
        "clone/progress", {"tenant": OTHER_TENANT, "cluster_uuid": CLUSTER, "volume_uuid": theirs["UUID"]}
    )
    assert answer["data"]["volume"]["UUID"] == theirs["UUID"] and answer["data"]["clone_progress"] == 100.0
    _, answer = api.get("clone/progress", progress_query(vol["UUID"]))
    assert (answer["data"]["volume"], answer["data"]["clone_progress"]) == (None, 100.0)

    owner = Tenant.objects.get(uuid=TENANT)
    client = tenant_client(owner)

    def call(body):
        with api.capture(execute=True):
            response = client.post("/v1/volume/share/clone", body, format="json")
        return response.status_code, response.json()

    status, answer = call(
        example("clone", volume_uuid=vol["UUID"], snapshot_uuid=snap, clone_dst_vol_name="mine")
    )
    assert (status, answer["scode"]) == (200, 0), answer
    before = (Volume.objects.count(), Operation.objects.count())
    status, answer = call(
        example(
            "clone",
            volume_uuid=vol["UUID"],
            snapshot_uuid=snap,
            clone_dst_vol_name="x",
            clone_dst_vol_tenant=OTHER_TENANT,
        )
    )
    assert (status, answer["scode"]) == (404, 3002)
    status, answer = call(
        example(
            "clone",
            volume_uuid=theirs["UUID"],
            volume_name="test",
            snapshot_uuid=snap,
            clone_dst_vol_name="x",
        )
    )
    assert (status, answer["scode"]) == (404, 3004)
    assert (Volume.objects.count(), Operation.objects.count()) == before
    with api.capture(execute=True):
        response = client.get(
            "/v1/volume/share/clone/progress",
            {"tenant": OTHER_TENANT, "cluster_uuid": CLUSTER, "volume_uuid": theirs["UUID"]},
        )
    assert (response.status_code, response.json()["scode"]) == (404, 3002)


# -- bad input -----------------------------------------------------------------------------------


@pytest.fixture
def world(api, source, other_tenant):
    """The source (with `snap`), a second volume with its own snapshot, another tenant's volume, a clone."""
    second = new_volume(api, "second")
    second_snap = snapshot(api, second["UUID"], "theirs")
    theirs = new_volume(api, "theirs", tenant=OTHER_TENANT)
    body = example(
        "clone",
        volume_uuid=source["volume"]["UUID"],
        snapshot_uuid=source["snapshot"],
        clone_dst_vol_name="existing",
    )
    existing = api.post("clone", body)[1]["data"]["volume"]
    return {
        "volume": source["volume"]["UUID"],
        "snap": source["snapshot"],
        "second_snap": second_snap,
        "theirs": theirs["UUID"],
        "existing": existing["UUID"],
        "plain": second["UUID"],
    }


# With the platform token these tests use, another tenant's volume is a valid source (clone names no
# tenant); a tenant token's view is in test_a_platform_token_clones_for_another_tenant_and_tenant_tokens_...
CLONE_CASES = [
    ("missing volume_uuid", {"volume_uuid": MISSING}, 400, 1002),
    ("missing volume_name", {"volume_name": MISSING}, 400, 1002),
    ("missing cluster_uuid", {"cluster_uuid": MISSING}, 400, 1002),
    ("missing clone_dst_vol_name", {"clone_dst_vol_name": MISSING}, 400, 1002),
    ("missing clone_dst_vol_tenant", {"clone_dst_vol_tenant": MISSING}, 400, 1002),
    ("missing clone_dst_pool_uuid", {"clone_dst_pool_uuid": MISSING}, 400, 1002),
    ("missing is_link", {"is_link": MISSING}, 400, 1002),
    ("missing snapshot_uuid", {"snapshot_uuid": MISSING}, 400, 1002),
    ("null is_link", {"is_link": None}, 400, 1002),
    ("string is_link", {"is_link": "true"}, 400, 1001),
    ("integer is_link", {"is_link": 1}, 400, 1001),
    ("malformed volume_uuid", {"volume_uuid": "zzz"}, 400, 1001),
    ("integer snapshot_uuid", {"snapshot_uuid": 7}, 400, 1001),
    ("integer clone_dst_vol_name", {"clone_dst_vol_name": 7}, 400, 1001),
    ("malformed clone_dst_pool_uuid", {"clone_dst_pool_uuid": "disks"}, 400, 1001),
    ("unknown cluster", {"cluster_uuid": UNKNOWN}, 404, 3001),
    ("unknown source", {"volume_uuid": UNKNOWN}, 404, 3004),
    ("wrong volume_name", {"volume_name": "other"}, 400, 1006),
    ("unknown snapshot", {"snapshot_uuid": UNKNOWN}, 404, 3005),
    ("snapshot of another volume", {"snapshot_uuid": "{second_snap}"}, 404, 3005),
    ("unknown destination tenant", {"clone_dst_vol_tenant": UNKNOWN}, 404, 3002),
    ("unknown destination pool", {"clone_dst_pool_uuid": UNKNOWN}, 404, 3003),
    ("pool not open to the destination tenant", {"@pool_tenants": True}, 404, 3003),
    ("name clash", {"clone_dst_vol_name": "existing"}, 409, 4002),
    ("name clash with the source", {"clone_dst_vol_name": "zzz"}, 409, 4002),
    ("empty name", {"clone_dst_vol_name": ""}, 400, 1005),
    ("too long a name", {"clone_dst_vol_name": "x" * 129}, 400, 1005),
    ("full destination pool", {"@pool_capacity": 16 * MiB * 2}, 409, 4006),
    ("busy source", {"@state": EventState.MERGING}, 409, 4001),
    ("source in error", {"@state": EventState.ERROR}, 409, 4001),
    ("snapshot in error", {"@snap_status": 4}, 409, 4001),
]


@pytest.mark.parametrize("is_link", [True, False], ids=["linked", "full"])
@pytest.mark.parametrize("overrides,status,scode", [pytest.param(*c[1:], id=c[0]) for c in CLONE_CASES])
def test_clone_rejects_bad_input_and_changes_nothing(api, data_dir, world, is_link, overrides, status, scode):
    body = example("clone", volume_uuid=world["volume"], snapshot_uuid=world["snap"], is_link=is_link)
    for key, value in overrides.items():
        if key == "@pool_tenants":
            Pool.objects.get(uuid=POOL_DISKS).tenants.add(Tenant.objects.get(uuid=OTHER_TENANT))
        elif key == "@pool_capacity":
            Pool.objects.filter(uuid=POOL_DISKS).update(capacity=value)
        elif key == "@state":
            Volume.objects.filter(uuid=world["volume"]).update(state=value)
        elif key == "@snap_status":
            Snapshot.objects.filter(uuid=world["snap"]).update(status=value)
        elif value is MISSING:
            body.pop(key)
        else:
            body[key] = value.format(**world) if isinstance(value, str) and "{" in value else value
    before = storage_state(data_dir)
    got_status, answer = api.post("clone", body)
    assert_error(got_status, answer, status, scode)
    assert storage_state(data_dir) == before


PROGRESS_CASES = [
    ("missing volume_uuid", {"volume_uuid": MISSING}, 400, 1002),
    ("missing tenant", {"tenant": MISSING}, 400, 1002),
    ("malformed volume_uuid", {"volume_uuid": "abc"}, 400, 1001),
    ("unknown cluster", {"cluster_uuid": UNKNOWN}, 404, 3001),
    ("unknown tenant", {"tenant": UNKNOWN}, 404, 3002),
    ("unknown volume", {"volume_uuid": UNKNOWN}, 404, 3004),
    ("other tenant's volume", {"volume_uuid": "{theirs}"}, 404, 3004),
    ("a volume never cloned", {"volume_uuid": "{plain}"}, 404, 3008),
]


@pytest.mark.parametrize("overrides,status,scode", [pytest.param(*c[1:], id=c[0]) for c in PROGRESS_CASES])
def test_progress_rejects_bad_input(api, data_dir, world, overrides, status, scode):
    query = progress_query(world["existing"])
    for key, value in overrides.items():
        if value is MISSING:
            query.pop(key)
        else:
            query[key] = value.format(**world) if "{" in value else value
    before = storage_state(data_dir)
    got_status, answer = api.get("clone/progress", query)
    assert_error(got_status, answer, status, scode)
    assert storage_state(data_dir) == before


FLATTEN_CASES = [
    ("missing volume_name", {"volume_name": MISSING}, 400, 1002),
    ("wrong volume_name", {"volume_name": "zzz"}, 400, 1006),
    ("unknown volume", {"volume_uuid": UNKNOWN}, 404, 3004),
    ("not a linked clone", {"volume_uuid": "{volume}", "volume_name": "zzz"}, 409, 4203),
    ("attached", {"@attach": True}, 409, 4003),
    ("busy", {"@state": EventState.SNAPSHOTTING}, 409, 4001),
]


@pytest.mark.parametrize("overrides,status,scode", [pytest.param(*c[1:], id=c[0]) for c in FLATTEN_CASES])
def test_flatten_rejects_bad_input(api, data_dir, world, overrides, status, scode):
    body = scoped(volume_uuid=world["existing"], volume_name="existing")
    for key, value in overrides.items():
        if key == "@attach":
            VolumeAttachment.objects.create(
                volume=Volume.objects.get(uuid=world["existing"]),
                vm_uuid="863b64eb-c8ed-4f25-9af9-9c96b28a7200",
            )
        elif key == "@state":
            Volume.objects.filter(uuid=world["existing"]).update(state=value)
        elif value is MISSING:
            body.pop(key)
        else:
            body[key] = value.format(**world) if "{" in value else value
    before = storage_state(data_dir)
    got_status, answer = api.post("flatten", body)
    assert_error(got_status, answer, status, scode)
    assert storage_state(data_dir) == before


def test_a_clone_reading_a_snapshot_refuses_deleting_it_or_its_volume(api, source):
    vol, snap = source["volume"], source["snapshot"]
    api.post("clone", example("clone", volume_uuid=vol["UUID"], snapshot_uuid=snap))
    status, answer = api.post(
        "snapshot/delete", scoped(volume_uuid=vol["UUID"], snapshot_uuid=snap, snapshot_name="snap")
    )
    assert (status, answer["scode"]) == (409, 4103)
    status, answer = api.post("delete", scoped(volume_uuid=vol["UUID"], volume_name="zzz", force=True))
    assert (status, answer["scode"]) == (409, 4005)
    assert "linked clones" in answer["message"]
