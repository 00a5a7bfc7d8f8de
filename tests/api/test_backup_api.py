"""The four backup endpoints of the contract on real images: the contract's request examples replayed
on demo data (UUIDs from earlier answers) with every documented key present in the same JSON type,
and bad input per endpoint that answers its scode and changes nothing."""

from __future__ import annotations

import copy
import os
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from backups.services.points import backup_point_create
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services.tokens import token_create
from tests.contract import EXAMPLES, assert_matches_contract
from tests.helpers import (
    CLUSTER,
    HOST,
    POOL_DISKS,
    TENANT,
    assert_error,
    identical,
    qemu_io,
    scoped,
    success_envelope,
)
from volumes.choices import EventState
from volumes.models import Namespace, Pool, Snapshot, Tenant, Volume

MiB = 1 << 20
MISSING = object()
UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
BACKUP_POINT = "7f74897a-3084-45e1-a413-6cd168ddd4b5"
CONTRACT_BACKUP_KEYS = list(EXAMPLES["backup/add"]["response"]["data"]["backup"])
EXTENSION_KEYS = [
    "BaseUUID",
    "Size",
    "Compressed",
    "Protected",
    "Checksum",
    "Progress",
    "Phase",
    "Error",
    "VerifyResult",
    "VerifiedTime",
]


@pytest.fixture(autouse=True)
def point(topology, data_dir) -> BackupPoint:
    directory = data_dir / "backup" / f"bp-{BACKUP_POINT}"
    directory.mkdir(parents=True)
    return backup_point_create(
        name="demo-backup-point",
        cluster=topology["cluster"],
        path=str(directory),
        capacity=1 << 40,
        uuid=BACKUP_POINT,
    )


def example(endpoint: str, **replace) -> dict:
    body = copy.deepcopy(EXAMPLES[endpoint]["request"])
    for key, value in replace.items():
        assert key in body, key
        body[key] = value
    return body


def example_query(**replace) -> dict:
    query = dict(parse_qsl(urlsplit(EXAMPLES["backup/list"]["url"]).query, keep_blank_values=True))
    for key, value in replace.items():
        assert key in query, key
        query[key] = value
    return query


def new_volume(api, name="test") -> dict:
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name=name, capacity=16 * MiB)
    status, answer = api.post("create", body)
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["volume"]


def new_snapshot(api, volume_uuid, name) -> dict:
    status, body = api.post("snapshot/create", scoped(volume_uuid=volume_uuid, snapshot_name=name))
    assert (status, body["scode"]) == (200, 0), body
    return body["data"]["snapshot"]


def layer_path(volume_uuid, snapshot_uuid) -> str:
    # Where the driver put the layer, as the snapshot's row records it (layers of a new snapshot sit
    # beside the head; older ones under snapshots/).
    pool = Pool.objects.get(uuid=POOL_DISKS)
    return os.path.join(
        pool.path, Snapshot.objects.get(uuid=snapshot_uuid, volume__uuid=volume_uuid).layer_name
    )


def test_contract_examples_replay_on_demo_data(api):
    volume = new_volume(api)
    vol, head = volume["UUID"], volume["AccessPath"][HOST]
    qemu_io(head, "qcow2", "write -P 0xaa 0 1M")
    aaa = new_snapshot(api, vol, "aaa")

    started = int(time.time())
    status, body = api.post("backup/add", example("backup/add", volume_uuid=vol, snapshot_uuid=aaa["UUID"]))
    assert (status, body["scode"]) == (200, 0), body
    assert_matches_contract("backup/add", body)
    backup = body["data"]["backup"]
    assert list(backup) == CONTRACT_BACKUP_KEYS + EXTENSION_KEYS
    expected = {
        "tenant": TENANT,
        "tenant_name": "zhangyiru",
        "UUID": backup["UUID"],
        "Name": "backup",
        "BpUUID": BACKUP_POINT,
        "NsUUID": "83b1add8-2b9d-4f0c-8f3b-e0c3a2001006",
        "VolumeUUID": vol,
        "VolumeCapacity": 16 * MiB,
        "Snapshot": "aaa",
        "Ctime": backup["Ctime"],
        "Desc": "",
        "Attr": None,
        "VolumeType": "block",
        "Mtime": backup["Mtime"],
        "BpName": "demo-backup-point",
        "ExpiredTime": 0,
        "VolumeEventStatus": 0,
        "SnapshotUUID": aaa["UUID"],
        # The answer is given when the request is accepted; the backup runs right after.
        "Status": "BackupStarted",
        "cluster_uuid": CLUSTER,
        "cluster_name": "cluster_name_243",
        "cluster_mode": "",
        "BaseUUID": "",
        "Size": backup["Size"],
        "Compressed": True,
        "Protected": False,
        "Checksum": "",
        "Progress": 0.0,
        "Phase": "",
        "Error": None,
        "VerifyResult": "",
        "VerifiedTime": 0,
    }
    assert body == success_envelope({"backup": expected})
    assert backup["Ctime"] >= started and backup["Size"] > 0  # the reservation until the real size is known

    # list: the example's query string, with this volume and a time range around now.
    query = example_query(
        filter_volume_uuid=vol, filter_start_time=str(started - 5), filter_end_time=str(int(time.time()) + 5)
    )
    status, body = api.get("backup/list", query)
    assert (status, body["scode"]) == (200, 0), body
    assert_matches_contract("backup/list", body)
    assert body["data"]["TotalCount"] == 1
    listed = body["data"]["backup"][0]
    assert (listed["UUID"], listed["Status"], listed["Progress"], listed["Phase"]) == (
        backup["UUID"],
        "BackupCompleted",
        100.0,
        "done",
    )
    assert len(listed["Checksum"]) == 64 and listed["Error"] is None

    # A second backup is incremental on the first.
    qemu_io(head, "qcow2", "write -P 0xbb 4M 1M")
    snap2 = new_snapshot(api, vol, "snap")
    status, body = api.post(
        "backup/add",
        example("backup/add", volume_uuid=vol, snapshot_uuid=snap2["UUID"], backup_name="second"),
    )
    assert body["scode"] == 0 and body["data"]["backup"]["BaseUUID"] == backup["UUID"]
    second = body["data"]["backup"]["UUID"]

    # restore: the example's body with the first backup; the answer names the new volume.
    status, body = api.post("backup/restore", example("backup/restore", backup_uuid=backup["UUID"]))
    assert (status, body["scode"]) == (200, 0), body
    assert_matches_contract("backup/restore", body)
    assert body["data"]["backup"]["UUID"] == backup["UUID"]
    restored = body["data"]["volume"]
    assert (restored["Name"], restored["PoolUUID"], restored["Capacity"]) == ("restore", POOL_DISKS, 16 * MiB)
    assert restored["EventState"] == EventState.RESTORING
    status, body = api.post("get", scoped(volume_uuid=restored["UUID"]))
    assert body["data"]["volume"]["EventState"] == EventState.AVAILABLE
    assert identical(body["data"]["volume"]["AccessPath"][HOST], layer_path(vol, aaa["UUID"]))

    # delete: the example's body; the first backup is merged into the second, which still restores.
    status, body = api.post("backup/delete", example("backup/delete", backup_uuid=backup["UUID"]))
    assert (status, body) == (200, success_envelope({}))
    assert_matches_contract("backup/delete", body)
    status, body = api.get("backup/list", {"cluster_uuid": CLUSTER, "tenant": TENANT})
    assert [(b["UUID"], b["BaseUUID"]) for b in body["data"]["backup"]] == [(second, "")]
    status, body = api.post(
        "backup/restore", example("backup/restore", backup_uuid=second, new_volume_name="restore-2")
    )
    assert body["scode"] == 0, body
    status, body = api.post("get", scoped(volume_uuid=body["data"]["volume"]["UUID"]))
    assert identical(body["data"]["volume"]["AccessPath"][HOST], layer_path(vol, snap2["UUID"]))


def test_list_filters_and_pages(api):
    volume = new_volume(api)
    snapshot = new_snapshot(api, volume["UUID"], "s")
    uuids = []
    for index in range(3):
        _, body = api.post(
            "backup/add",
            example(
                "backup/add",
                volume_uuid=volume["UUID"],
                snapshot_uuid=snapshot["UUID"],
                backup_name=f"nightly-{index}",
                desc="weekly" if index == 1 else "",
            ),
        )
        uuids.append(body["data"]["backup"]["UUID"])
    base = {"cluster_uuid": CLUSTER, "tenant": TENANT}
    _, body = api.get("backup/list", {**base, "page_num": 1, "page_size": 2})
    assert [b["UUID"] for b in body["data"]["backup"]] == uuids[::-1][:2] and body["data"]["TotalCount"] == 3
    _, body = api.get("backup/list", {**base, "page_num": 2, "page_size": 2})
    assert [b["UUID"] for b in body["data"]["backup"]] == [uuids[0]]
    _, body = api.get("backup/list", {**base, "filter_desc": "week"})
    assert [b["UUID"] for b in body["data"]["backup"]] == [uuids[1]]
    _, body = api.get("backup/list", {**base, "filter_name": "NIGHTLY-2"})
    assert [b["UUID"] for b in body["data"]["backup"]] == [uuids[2]]
    _, body = api.get("backup/list", {**base, "filter_end_time": "1615797008"})
    assert body["data"] == {"backup": [], "TotalCount": 0}
    _, body = api.get("backup/list", {**base, "filter_volume_uuid": UNKNOWN})
    assert body["data"]["TotalCount"] == 0


# -- bad input --------------------------------------------------------------------------------------


@pytest.fixture
def world(api, topology, data_dir):
    """A volume with a snapshot and a completed backup; another volume with a snapshot; another tenant."""
    volume = new_volume(api, "v1")
    qemu_io(volume["AccessPath"][HOST], "qcow2", "write -P 0x11 0 2M")
    snapshot = new_snapshot(api, volume["UUID"], "s1")
    other_volume = new_volume(api, "v2")
    other_snapshot = new_snapshot(api, other_volume["UUID"], "s2")
    _, body = api.post(
        "backup/add", example("backup/add", volume_uuid=volume["UUID"], snapshot_uuid=snapshot["UUID"])
    )
    backup = body["data"]["backup"]
    tenant = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=tenant)
    return {
        "volume": volume["UUID"],
        "snapshot": snapshot["UUID"],
        "other_snapshot": other_snapshot["UUID"],
        "backup": backup["UUID"],
        "data_dir": data_dir,
    }


def state_of_everything(data_dir) -> tuple:
    files = sorted(
        os.path.relpath(os.path.join(d, f), data_dir) for d, _, fs in os.walk(data_dir) for f in fs
    )
    return (
        tuple(Volume.objects.order_by("pk").values_list("pk", "state", "name", "modified")),
        tuple(Backup.objects.order_by("pk").values_list("pk", "status", "base_id", "size", "modified")),
        Operation.objects.count(),
        AuditEvent.objects.count(),
        tuple(files),
    )


def with_fields(body: dict, changes: dict, world: dict) -> dict:
    body = dict(body)
    for key, value in changes.items():
        if value is MISSING:
            body.pop(key, None)
        elif isinstance(value, str) and value.startswith("@"):
            body[key] = world[value[1:]]
        else:
            body[key] = value
    return body


ADD_CASES = [
    ("missing volume", dict(volume_uuid=MISSING), 400, 1002),
    ("missing cluster", dict(cluster_uuid=MISSING), 400, 1002),
    ("missing snapshot", dict(snapshot_uuid=MISSING), 400, 1002),
    ("missing name", dict(backup_name=MISSING), 400, 1002),
    ("missing backup point", dict(backup_point_uuid=MISSING), 400, 1002),
    ("malformed volume", dict(volume_uuid="3e0925e0"), 400, 1001),
    ("integer snapshot", dict(snapshot_uuid=7), 400, 1001),
    ("numeric name", dict(backup_name=5), 400, 1001),
    ("empty name", dict(backup_name=""), 400, 1005),
    ("string compress", dict(compress="yes"), 400, 1001),
    ("negative expiry", dict(expired_time=-1), 400, 1001),
    ("string expiry", dict(expired_time="0"), 400, 1001),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
    ("unknown volume", dict(volume_uuid=UNKNOWN), 404, 3004),
    ("unknown snapshot", dict(snapshot_uuid=UNKNOWN), 404, 3005),
    ("snapshot of another volume", dict(snapshot_uuid="@other_snapshot"), 404, 3005),
    ("unknown backup point", dict(backup_point_uuid=UNKNOWN), 404, 3006),
    ("other tenant's volume", dict(tenant=OTHER_TENANT), 404, 3004),
    ("unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
]


@pytest.mark.parametrize("label,changes,http,scode", ADD_CASES, ids=[c[0] for c in ADD_CASES])
def test_add_bad_input_changes_nothing(api, world, label, changes, http, scode):
    body = with_fields(
        example("backup/add", volume_uuid=world["volume"], snapshot_uuid=world["snapshot"]), changes, world
    )
    before = state_of_everything(world["data_dir"])
    status, answer = api.post("backup/add", body)
    assert_error(status, answer, http, scode)
    assert state_of_everything(world["data_dir"]) == before


def test_add_refused_when_the_backup_point_is_full_or_gone(api, world, point):
    body = example("backup/add", volume_uuid=world["volume"], snapshot_uuid=world["snapshot"])
    before = state_of_everything(world["data_dir"])
    BackupPoint.objects.filter(pk=point.pk).update(capacity=1 << 20)
    status, answer = api.post("backup/add", body)
    assert_error(status, answer, 409, 4301)
    assert "recorded capacity" in answer["message"]
    BackupPoint.objects.filter(pk=point.pk).update(capacity=1 << 40, path=str(world["data_dir"] / "gone"))
    status, answer = api.post("backup/add", body)
    assert_error(status, answer, 503, 5301)
    assert state_of_everything(world["data_dir"]) == before


DELETE_CASES = [
    ("missing tenant", dict(tenant=MISSING), 400, 1002),
    ("missing backup", dict(backup_uuid=MISSING), 400, 1002),
    ("malformed backup", dict(backup_uuid="fba864c4"), 400, 1001),
    ("unknown backup", dict(backup_uuid=UNKNOWN), 404, 3007),
    ("other tenant's backup", dict(tenant=OTHER_TENANT), 404, 3007),
    ("unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
]


@pytest.mark.parametrize("label,changes,http,scode", DELETE_CASES, ids=[c[0] for c in DELETE_CASES])
def test_delete_bad_input_changes_nothing(api, world, label, changes, http, scode):
    body = with_fields(example("backup/delete", backup_uuid=world["backup"]), changes, world)
    before = state_of_everything(world["data_dir"])
    status, answer = api.post("backup/delete", body)
    assert_error(status, answer, http, scode)
    assert state_of_everything(world["data_dir"]) == before


def test_delete_of_a_protected_backup_is_refused(api, world):
    Backup.objects.filter(uuid=world["backup"]).update(protected=True)
    before = state_of_everything(world["data_dir"])
    status, answer = api.post("backup/delete", example("backup/delete", backup_uuid=world["backup"]))
    assert_error(status, answer, 409, 4304)
    assert state_of_everything(world["data_dir"]) == before


RESTORE_CASES = [
    ("missing backup", dict(backup_uuid=MISSING), 400, 1002),
    ("missing new tenant", dict(new_volume_tenant=MISSING), 400, 1002),
    ("missing name", dict(new_volume_name=MISSING), 400, 1002),
    ("missing pool", dict(new_pool_uuid=MISSING), 400, 1002),
    ("empty name", dict(new_volume_name=""), 400, 1005),
    ("taken name", dict(new_volume_name="v1"), 409, 4002),
    ("unknown backup", dict(backup_uuid=UNKNOWN), 404, 3007),
    ("other tenant's backup", dict(tenant=OTHER_TENANT), 404, 3007),
    ("unknown pool", dict(new_pool_uuid=UNKNOWN), 404, 3003),
    ("unknown new tenant", dict(new_volume_tenant=UNKNOWN), 404, 3002),
]


@pytest.mark.parametrize("label,changes,http,scode", RESTORE_CASES, ids=[c[0] for c in RESTORE_CASES])
def test_restore_bad_input_changes_nothing(api, world, label, changes, http, scode):
    body = with_fields(example("backup/restore", backup_uuid=world["backup"]), changes, world)
    before = state_of_everything(world["data_dir"])
    status, answer = api.post("backup/restore", body)
    assert_error(status, answer, http, scode)
    assert state_of_everything(world["data_dir"]) == before


def test_restore_into_a_full_pool_changes_nothing(api, world):
    Pool.objects.filter(uuid=POOL_DISKS).update(capacity=33 * MiB)  # two 16 MiB volumes already live
    before = state_of_everything(world["data_dir"])
    status, answer = api.post("backup/restore", example("backup/restore", backup_uuid=world["backup"]))
    assert_error(status, answer, 409, 4006)
    assert state_of_everything(world["data_dir"]) == before


LIST_CASES = [
    ("missing cluster", dict(cluster_uuid=MISSING), 400, 1002),
    ("malformed tenant", dict(tenant="fab210d2"), 400, 1001),
    ("text page", dict(page_num="first"), 400, 1001),
    ("negative page size", dict(page_size="-1"), 400, 1001),
    ("huge page size", dict(page_size="100000"), 400, 1012),
    ("text start time", dict(filter_start_time="yesterday"), 400, 1001),
    ("malformed volume", dict(filter_volume_uuid="3e0925e0"), 400, 1001),
    ("unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
]


@pytest.mark.parametrize("label,changes,http,scode", LIST_CASES, ids=[c[0] for c in LIST_CASES])
def test_list_bad_input(api, world, label, changes, http, scode):
    query = with_fields(example_query(filter_volume_uuid=world["volume"]), changes, world)
    status, answer = api.get("backup/list", query)
    assert_error(status, answer, http, scode)


def test_a_tenant_token_sees_only_its_own_backups(api, world, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    from tests.conftest import Api

    other = Tenant.objects.get(uuid=OTHER_TENANT)
    _, key = token_create(name="other-tenant", tenant=other)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    tenant_api = Api(client, django_capture_on_commit_callbacks)
    status, answer = tenant_api.get("backup/list", {"cluster_uuid": CLUSTER})
    assert (status, answer["data"]) == (200, {"backup": [], "TotalCount": 0})
    status, answer = tenant_api.post(
        "backup/delete", example("backup/delete", backup_uuid=world["backup"], tenant=OTHER_TENANT)
    )
    assert_error(status, answer, 404, 3007)
    body = example("backup/restore", backup_uuid=world["backup"], new_volume_tenant=OTHER_TENANT)
    status, answer = tenant_api.post("backup/restore", body)
    assert_error(status, answer, 404, 3007)
    status, answer = tenant_api.post(
        "backup/add", example("backup/add", volume_uuid=world["volume"], snapshot_uuid=world["snapshot"])
    )
    assert_error(status, answer, 404, 3004)
    assert Backup.objects.get(uuid=world["backup"]).status == BackupStatus.COMPLETED
