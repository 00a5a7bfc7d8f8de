"""The five snapshot endpoints of the contract on real images: the contract's request examples replayed
on demo data (UUIDs from earlier answers), whole-envelope answers, and bad input per endpoint that
answers its scode and changes nothing."""

from __future__ import annotations

import copy
import os
import uuid as uuid_lib

import pytest

from sharestore.core.models import AuditEvent, Operation
from tests.contract import EXAMPLES, assert_matches_contract
from tests.helpers import HOST, POOL_DISKS, pattern_matches, qemu_io, scoped
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Snapshot, Tenant, Volume, VolumeAttachment

MiB = 1 << 20
MISSING = object()
UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


def success_envelope(data) -> dict:
    return {"scode": 0, "desc": "", "message": "success", "message_cn": "成功", "stack": None, "data": data}


def wrapper(snapshot=None, tree=None) -> dict:
    return {
        "snapshot": snapshot,
        "tree": tree,
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


def new_volume(api, name="test") -> dict:
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name=name, capacity=16 * MiB)
    status, answer = api.post("create", body)
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["volume"]


def names(api, volume_uuid) -> list[str]:
    _, body = api.post("snapshot/list", scoped(volume_uuid=volume_uuid))
    return [s["Name"] for s in body["data"]["list"]]


def snap(api, volume_uuid, name) -> dict:
    _, body = api.post("snapshot/list", scoped(volume_uuid=volume_uuid))
    return next(s for s in body["data"]["list"] if s["Name"] == name)


def test_contract_examples_replay_on_demo_data(api):
    volume = new_volume(api)
    vol, head = volume["UUID"], volume["AccessPath"][HOST]
    qemu_io(head, "qcow2", "write -P 0xaa 0 1M")

    # "aaa" first, as the examples' tree shows it under "snap".
    status, body = api.post(
        "snapshot/create", example("snapshot/create", volume_uuid=vol, snapshot_name="aaa")
    )
    assert (status, body["scode"]) == (200, 0), body
    aaa = body["data"]["snapshot"]
    assert body == success_envelope(
        wrapper(
            {
                "Name": "aaa",
                "UUID": aaa["UUID"],
                "Volume": vol,
                "Desc": "",
                # The answer is given when the request is accepted; the freeze runs right after.
                "Status": SnapshotStatus.CREATING,
                "Ctime": aaa["Ctime"],
                "Attr": None,
                "Size": 0,
                "Children": None,
                "Parent": "",
                "Ref": 0,
            }
        )
    )
    qemu_io(head, "qcow2", "write -P 0xbb 1M 1M")
    status, body = api.post("snapshot/create", example("snapshot/create", volume_uuid=vol))
    assert status == 200
    assert_matches_contract("snapshot/create", body)
    created = body["data"]["snapshot"]
    assert (created["Name"], created["Parent"], created["Status"]) == ("snap", "aaa", SnapshotStatus.CREATING)

    status, body = api.post("snapshot/list", example("snapshot/list", volume_uuid=vol))
    assert status == 200
    assert_matches_contract("snapshot/list", body)
    assert body == success_envelope(
        {
            "list": [
                {
                    "Name": "aaa",
                    "UUID": aaa["UUID"],
                    "Volume": vol,
                    "Desc": "",
                    "Status": SnapshotStatus.AVAILABLE,
                    "Ctime": aaa["Ctime"],
                    "Attr": None,
                    "Size": MiB,
                    "Children": ["snap"],
                    "Parent": "",
                    "Ref": 0,
                },
                {
                    "Name": "snap",
                    "UUID": created["UUID"],
                    "Volume": vol,
                    "Desc": "",
                    "Status": SnapshotStatus.AVAILABLE,
                    "Ctime": created["Ctime"],
                    "Attr": None,
                    "Size": MiB,
                    "Children": ["head"],
                    "Parent": "aaa",
                    "Ref": 0,
                },
            ]
        }
    )

    status, body = api.post("snapshot/tree/get", example("snapshot/tree/get", volume_uuid=vol))
    assert status == 200
    assert_matches_contract("snapshot/tree/get", body)
    assert body == success_envelope(
        wrapper(
            tree={
                "UUID": "",
                "Parents": {"aaa": "", "snap": "aaa", "head": "snap"},
                "Children": {
                    "": {"Children": ["aaa"]},
                    "aaa": {"Children": ["snap"]},
                    "snap": {"Children": ["head"]},
                },
                "Root": "aaa",
            }
        )
    )

    status, body = api.post(
        "snapshot/rollback", example("snapshot/rollback", volume_uuid=vol, snapshot_uuid=aaa["UUID"])
    )
    assert status == 200
    assert_matches_contract("snapshot/rollback", body)
    assert body == success_envelope(wrapper())
    assert pattern_matches(head, "qcow2", 0, MiB, 0xAA) and pattern_matches(head, "qcow2", MiB, MiB, 0)
    _, body = api.post("snapshot/tree/get", scoped(volume_uuid=vol))
    assert body["data"]["tree"]["Children"]["aaa"] == {"Children": ["snap", "head"]}
    assert body["data"]["tree"]["Parents"]["head"] == "aaa"

    status, body = api.post(
        "snapshot/delete", example("snapshot/delete", volume_uuid=vol, snapshot_uuid=created["UUID"])
    )
    assert status == 200
    assert_matches_contract("snapshot/delete", body)
    assert body == success_envelope(wrapper())
    assert names(api, vol) == ["aaa"]
    _, body = api.post("snapshot/tree/get", scoped(volume_uuid=vol))
    assert body["data"]["tree"] == {
        "UUID": "",
        "Parents": {"aaa": "", "head": "aaa"},
        "Children": {"": {"Children": ["aaa"]}, "aaa": {"Children": ["head"]}},
        "Root": "aaa",
    }

    # snap_length/update: the sum of the layers' allocated bytes.
    status, body = api.post("snap_length/update", scoped(volume_uuid=vol, volume_name="test"))
    assert (status, body["data"]["volume"]["SnapLength"]) == (200, MiB)


def test_list_shows_linked_clones_and_backups_in_ref_and_attr(api):
    volume = new_volume(api)
    api.post("snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name="aaa"))
    source = Volume.objects.get(uuid=volume["UUID"])
    snapshot = Snapshot.objects.get(volume=source, name="aaa")
    # A linked clone's row as issue 4's clone makes it (the clone's files do not matter here).
    Volume.objects.create(
        uuid=uuid_lib.uuid4(),
        name="clone",
        tenant=source.tenant,
        namespace=source.namespace,
        cluster=source.cluster,
        pool=source.pool,
        volume_type="block",
        capacity=source.capacity,
        snap_cap=0,
        state=EventState.AVAILABLE,
        source_volume=source,
        parent_snapshot=snapshot,
    )
    status, body = api.post("snapshot/list", scoped(volume_uuid=volume["UUID"]))
    assert_matches_contract("snapshot/list", body)
    item = body["data"]["list"][0]
    assert (item["Ref"], item["Attr"]) == (1, {"LinkCloneUsed": "LinkCloneUsed"})
    from tests.services.test_snapshots import make_backup

    make_backup(snapshot, "BackupStarted")
    _, body = api.post("snapshot/list", scoped(volume_uuid=volume["UUID"]))
    item = body["data"]["list"][0]
    assert (item["Ref"], item["Attr"]) == (2, {"LinkCloneUsed": "LinkCloneUsed", "BackupUsed": "BackupUsed"})
    status, body = api.post(
        "snapshot/delete", scoped(volume_uuid=volume["UUID"], snapshot_uuid=item["UUID"], snapshot_name="aaa")
    )
    assert (status, body["scode"]) == (409, 4103)
    assert "linked clone" in body["message"] and "running backup" in body["message"]


def test_hidden_snapshots_leave_the_api_and_the_tree_joins_over_them(api):
    volume = new_volume(api)
    vol = volume["UUID"]
    for name in ("a", "b"):
        api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name=name))
    a = snap(api, vol, "a")
    api.post("snapshot/rollback", scoped(volume_uuid=vol, snapshot_uuid=a["UUID"]))
    status, body = api.post(
        "snapshot/delete", scoped(volume_uuid=vol, snapshot_uuid=a["UUID"], snapshot_name="a")
    )
    assert (status, body["scode"]) == (200, 0)
    assert names(api, vol) == ["b"]
    assert snap(api, vol, "b")["Parent"] == ""
    _, body = api.post("snapshot/tree/get", scoped(volume_uuid=vol))
    assert body["data"]["tree"] == {
        "UUID": "",
        "Parents": {"b": "", "head": ""},
        "Children": {"": {"Children": ["b", "head"]}},
        "Root": "b",
    }
    # The hidden snapshot answers like a missing one.
    status, body = api.post("snapshot/rollback", scoped(volume_uuid=vol, snapshot_uuid=a["UUID"]))
    assert (status, body["scode"]) == (404, 3005)


def test_rollback_with_snapshot_first_returns_the_snapshot_it_took(api):
    volume = new_volume(api)
    vol, head = volume["UUID"], volume["AccessPath"][HOST]
    api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s1"))
    qemu_io(head, "qcow2", "write -P 0x42 0 1M")
    s1 = snap(api, vol, "s1")
    status, body = api.post(
        "snapshot/rollback",
        scoped(volume_uuid=vol, snapshot_uuid=s1["UUID"], snapshot_first=True, snapshot_first_name="undo"),
    )
    assert (status, body["scode"]) == (200, 0), body
    assert_matches_contract("snapshot/rollback", body)
    first = body["data"]["snapshot"]
    assert (first["Name"], first["Parent"], first["Status"]) == ("undo", "s1", SnapshotStatus.CREATING)
    assert pattern_matches(head, "qcow2", 0, MiB, 0)
    status, body = api.post("snapshot/rollback", scoped(volume_uuid=vol, snapshot_uuid=first["UUID"]))
    assert (status, body["scode"]) == (200, 0)
    assert pattern_matches(head, "qcow2", 0, MiB, 0x42)


def test_chinese_snapshot_names_round_trip(api):
    volume = new_volume(api)
    status, body = api.post(
        "snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name="升级前", desc="备份")
    )
    assert (status, body["scode"]) == (200, 0)
    assert snap(api, volume["UUID"], "升级前")["Desc"] == "备份"


# -- bad input -----------------------------------------------------------------------------------


def storage_state(data_dir) -> tuple:
    files = sorted(
        os.path.relpath(os.path.join(d, f), data_dir) for d, _, fs in os.walk(data_dir) for f in fs
    )
    return (
        tuple(Volume.objects.order_by("pk").values_list("pk", "state", "current_snapshot_id", "modified")),
        tuple(Snapshot.objects.order_by("pk").values_list("pk", "name", "status", "parent_id", "modified")),
        Operation.objects.count(),
        AuditEvent.objects.count(),
        tuple(files),
    )


def assert_error(status, body, expected_status, expected_scode):
    assert (status, body["scode"]) == (expected_status, expected_scode), body
    assert set(body) == {"scode", "desc", "message", "message_cn", "stack", "data"}
    assert body["data"] is None and body["stack"] is None
    assert body["message"] and body["message_cn"] and body["message"] != body["message_cn"]


@pytest.fixture
def tree(api):
    """A volume "target" with snapshots s1 <- s2 <- head, and another tenant's volume."""
    from volumes.models import Namespace

    volume = new_volume(api, "target")
    for name in ("s1", "s2"):
        assert (
            api.post("snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name=name))[1]["scode"]
            == 0
        )
    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(tenant=OTHER_TENANT, volume_name="theirs", capacity=16 * MiB, pool_uuid=POOL_DISKS)
    theirs = api.post("create", body)[1]["data"]["volume"]["UUID"]
    return {
        "volume": volume["UUID"],
        "other": theirs,
        "s1": snap(api, volume["UUID"], "s1")["UUID"],
        "s2": snap(api, volume["UUID"], "s2")["UUID"],
    }


REQUESTS = {
    "snapshot/create": {"snapshot_name": "new", "desc": ""},
    "snapshot/delete": {"snapshot_uuid": "{s2}", "snapshot_name": "s2"},
    "snapshot/rollback": {"snapshot_uuid": "{s1}"},
    "snapshot/tree/get": {},
    "snapshot/list": {},
}


def _cases():
    for endpoint, extra in REQUESTS.items():
        cases = [
            ("missing volume_uuid", {"volume_uuid": MISSING}, 400, 1002),
            ("malformed volume_uuid", {"volume_uuid": "xyz"}, 400, 1001),
            ("integer volume_uuid", {"volume_uuid": 12}, 400, 1001),
            ("unknown volume", {"volume_uuid": UNKNOWN}, 404, 3004),
            ("other tenant's volume", {"volume_uuid": "{other}"}, 404, 3004),
            ("missing tenant", {"tenant": MISSING}, 400, 1002),
            ("unknown tenant", {"tenant": UNKNOWN}, 404, 3002),
            ("missing cluster", {"cluster_uuid": MISSING}, 400, 1002),
            ("unknown cluster", {"cluster_uuid": UNKNOWN}, 404, 3001),
        ]
        if endpoint == "snapshot/create":
            cases += [
                ("missing snapshot_name", {"snapshot_name": MISSING}, 400, 1002),
                ("null snapshot_name", {"snapshot_name": None}, 400, 1002),
                ("integer snapshot_name", {"snapshot_name": 5}, 400, 1001),
                ("empty snapshot_name", {"snapshot_name": ""}, 400, 1005),
                ("reserved snapshot_name", {"snapshot_name": "head"}, 400, 1005),
                ("control characters", {"snapshot_name": "a\tb"}, 400, 1005),
                ("too long", {"snapshot_name": "x" * 129}, 400, 1005),
                ("duplicate name", {"snapshot_name": "s1"}, 409, 4101),
                ("integer desc", {"desc": 1}, 400, 1001),
                ("attached volume", {"@attach": True}, 409, 4003),
                ("busy volume", {"@state": EventState.MERGING}, 409, 4001),
            ]
        if endpoint == "snapshot/delete":
            cases += [
                ("missing snapshot_uuid", {"snapshot_uuid": MISSING}, 400, 1002),
                ("missing snapshot_name", {"snapshot_name": MISSING}, 400, 1002),
                ("malformed snapshot_uuid", {"snapshot_uuid": "s2"}, 400, 1001),
                ("unknown snapshot", {"snapshot_uuid": UNKNOWN}, 404, 3005),
                ("wrong snapshot_name", {"snapshot_name": "s1"}, 400, 4106),
                ("attached volume", {"@attach": True}, 409, 4003),
                ("busy volume", {"@state": EventState.ROLLING_BACK}, 409, 4001),
            ]
        if endpoint == "snapshot/rollback":
            cases += [
                ("missing snapshot_uuid", {"snapshot_uuid": MISSING}, 400, 1002),
                ("unknown snapshot", {"snapshot_uuid": UNKNOWN}, 404, 3005),
                ("string snapshot_first", {"snapshot_first": "yes"}, 400, 1001),
                (
                    "duplicate snapshot_first_name",
                    {"snapshot_first": True, "snapshot_first_name": "s2"},
                    409,
                    4101,
                ),
                (
                    "reserved snapshot_first_name",
                    {"snapshot_first": True, "snapshot_first_name": "head"},
                    400,
                    1005,
                ),
                ("attached volume", {"@attach": True}, 409, 4003),
                ("busy volume", {"@state": EventState.SNAPSHOTTING}, 409, 4001),
            ]
        for label, overrides, status, scode in cases:
            yield pytest.param(endpoint, extra, overrides, status, scode, id=f"{endpoint}: {label}")


@pytest.mark.parametrize("endpoint,extra,overrides,status,scode", list(_cases()))
def test_snapshot_endpoints_reject_bad_input(api, data_dir, tree, endpoint, extra, overrides, status, scode):
    body = scoped(
        volume_uuid=tree["volume"],
        **{k: v.format(**tree) if isinstance(v, str) else v for k, v in extra.items()},
    )
    volume = Volume.objects.get(uuid=tree["volume"])
    for key, value in overrides.items():
        if key == "@attach":
            VolumeAttachment.objects.create(volume=volume, vm_uuid="863b64eb-c8ed-4f25-9af9-9c96b28a7200")
        elif key == "@state":
            Volume.objects.filter(pk=volume.pk).update(state=value)
        elif value is MISSING:
            body.pop(key)
        else:
            body[key] = value.format(**tree) if isinstance(value, str) and "{" in value else value
    before = storage_state(data_dir)
    got_status, answer = api.post(endpoint, body)
    assert_error(got_status, answer, status, scode)
    assert storage_state(data_dir) == before
    if scode == 4003:
        assert "hypervisor holds the active layer open" in answer["message"]
        assert "863b64eb-c8ed-4f25-9af9-9c96b28a7200" in answer["message"]


def test_snapcap_and_depth_limits_answer_their_scodes(api, data_dir, settings):
    volume = new_volume(api)
    vol, head = volume["UUID"], volume["AccessPath"][HOST]
    Volume.objects.filter(uuid=vol).update(snap_cap=MiB)
    qemu_io(head, "qcow2", "write -P 1 0 1M")
    assert api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s1"))[1]["scode"] == 0
    before = storage_state(data_dir)
    status, body = api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s2"))
    assert_error(status, body, 409, 4102)
    assert f"{MiB} of {MiB} bytes" in body["message"]
    assert storage_state(data_dir) == before
    Volume.objects.filter(uuid=vol).update(snap_cap=1 << 30)
    settings.SHARESTORE_SNAPSHOT_MAX_DEPTH = 2
    assert api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s2"))[1]["scode"] == 0
    before = storage_state(data_dir)
    status, body = api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s3"))
    assert_error(status, body, 409, 4104)
    assert "limit of 2" in body["message"]
    assert storage_state(data_dir) == before
    # Deleting an older snapshot merges its layer away and makes room.
    s1 = snap(api, vol, "s1")["UUID"]
    assert (
        api.post("snapshot/delete", scoped(volume_uuid=vol, snapshot_uuid=s1, snapshot_name="s1"))[1]["scode"]
        == 0
    )
    assert api.post("snapshot/create", scoped(volume_uuid=vol, snapshot_name="s3"))[1]["scode"] == 0
    assert names(api, vol) == ["s2", "s3"]
