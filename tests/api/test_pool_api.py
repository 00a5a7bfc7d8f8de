"""The platform's pool API (/v1/pool/share/*, docs/api.md "Pools") on real pool directories: the
lifecycle with every documented key in its documented JSON type, the over-allocation threshold as
volume create sees it, status/check on a lost mount, and bad input per endpoint (error envelope,
nothing changed)."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from sharestore.core.models import AuditEvent
from sharestore.core.services.tokens import token_create
from tests.conftest import Api
from tests.contract import shape_mismatches
from tests.helpers import CLUSTER, HOST, POOL_DISKS, TENANT, assert_error, scoped
from volumes import drivers
from volumes.models import Namespace, Pool, PoolMount, Tenant, Volume
from volumes.services import demo

GiB = 1 << 30
MISSING = object()
UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
ZONE = "c5ee9e2e-0a9d-4b31-a6d6-5c0ab4f2a2c7"

# The platform's pool object: every key with its documented JSON type (null: an empty value).
POOL_OBJECT = {
    "UUID": "",
    "Name": "",
    "Type": 2,
    "NamespaceUUID": "",
    "ZoneUUID": "",
    "ZoneName": "",
    "MachineUUID": "",
    "IP": "",
    "Port": "",
    "Source": "",
    "Username": "",
    "Password": "",
    "Ctime": 0,
    "Mtime": 0,
    "VolumeTotalCount": 0,
    "AvailHosts": [""],
    "Volumes": None,
    "Capacity": 0,
    "ShareNsUUIDs": None,
    "Used": 0,
    "Attr": {"overAllocationThreshold": "1.0"},
    "ShareNsNames": None,
    "Status": "healthy",
    "AllocatedCapacity": 0,
    "LimitHost": False,
}
WRAPPER = {
    "pool": POOL_OBJECT,
    "cluster_uuid": "",
    "cluster_name": "",
    "cluster_mode": "",
    "tenant": "",
    "tenant_name": "",
    "PoolTypes": None,
}
INTEGER_KEYS = ["Type", "Ctime", "Mtime", "VolumeTotalCount", "Capacity", "Used", "AllocatedCapacity"]


def assert_pool_object(pool: dict) -> None:
    assert set(pool) == set(POOL_OBJECT)
    assert not shape_mismatches(pool, POOL_OBJECT), shape_mismatches(pool, POOL_OBJECT)
    assert all(type(pool[key]) is int for key in INTEGER_KEYS), pool
    assert pool["Password"] == ""


def assert_wrapper(data: dict) -> None:
    assert set(data) == set(WRAPPER)
    # set and status/check answer `pool: null`, delete `pool: {}`.
    example = WRAPPER if data["pool"] else dict(WRAPPER, pool=None)
    assert not shape_mismatches(data, example), shape_mismatches(data, example)
    if data["pool"]:
        assert_pool_object(data["pool"])


@pytest.fixture
def directory(topology, data_dir):
    path = data_dir / "nfs-pool"
    path.mkdir()
    return str(path)


def overridden(body: dict, overrides: dict) -> dict:
    """`body` with `overrides` applied in place: MISSING removes a key."""
    for key, value in overrides.items():
        if value is MISSING:
            body.pop(key)
        else:
            body[key] = value
    return body


def create_body(directory: str, **overrides) -> dict:
    body = {
        "cluster_uuid": CLUSTER,
        "pool_name": "nfs-pool",
        "pool_type": 2,
        "zone_uuid": str(Pool.objects.first().zone.uuid),
        "ip": "10.0.0.8",
        "port": "2049",
        "source": directory,
        "username": "",
        "password": "",
        "limit_host": False,
        "avail_host": [HOST],
        "avail_tenant": [],
        "attr": {"overAllocationThreshold": "1.0"},
        "capacity": GiB,
    }
    overridden(body, overrides)
    return body


def pool_body(uuid: str, **fields) -> dict:
    return {"tenant": TENANT, "cluster_uuid": CLUSTER, "pool_uuid": uuid, **fields}


def create(api, directory, **overrides) -> dict:
    status, answer = api.post("/v1/pool/share/create", create_body(directory, **overrides))
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["pool"]


def volume_body(pool_uuid: str, capacity: int, name: str = "v1") -> dict:
    return scoped(
        pool_uuid=pool_uuid, volume_name=name, volume_type="block", capacity=capacity, snap_capacity=0
    )


def test_pool_lifecycle_answers_every_documented_key(api, directory):
    status, answer = api.get("/v1/pool/share/pool_type/support", {"cluster_uuid": CLUSTER})
    assert (status, answer["data"]) == (200, {"PoolTypes": ["nfs", "disk", "rbd", "cephfs"]})

    status, answer = api.post("/v1/pool/share/create", create_body(directory))
    assert (status, answer["scode"]) == (200, 0), answer
    assert_wrapper(answer["data"])
    pool = answer["data"]["pool"]
    assert pool["Name"] == "nfs-pool" and pool["Type"] == 2 and pool["Status"] == "healthy"
    assert (pool["IP"], pool["Port"], pool["Source"]) == ("10.0.0.8", "2049", directory)
    assert pool["AvailHosts"] == [HOST] and pool["Attr"] == {"overAllocationThreshold": "1.0"}
    assert (pool["Capacity"], pool["AllocatedCapacity"], pool["VolumeTotalCount"]) == (GiB, 0, 0)
    assert answer["data"]["cluster_uuid"] == CLUSTER
    uuid = pool["UUID"]
    assert os.path.realpath(Pool.objects.get(uuid=uuid).path) == os.path.realpath(directory)

    status, answer = api.post("/v1/volume/share/create", volume_body(uuid, GiB // 4))
    assert (status, answer["scode"]) == (200, 0), answer
    status, answer = api.post("/v1/pool/share/get", pool_body(uuid))
    assert status == 200
    assert_wrapper(answer["data"])
    pool = answer["data"]["pool"]
    assert (pool["AllocatedCapacity"], pool["VolumeTotalCount"]) == (GiB // 4, 1)
    assert answer["data"]["tenant"] == TENANT and answer["data"]["tenant_name"] == "zhangyiru"

    status, answer = api.post(
        "/v1/pool/share/list", {"cluster_uuid": CLUSTER, "tenant": TENANT, "page_size": 2}
    )
    data = answer["data"]
    assert set(data) == {"infos", "each_range_list_state", "TotalCount"}
    total = Pool.objects.count()
    assert total > 2 and data["TotalCount"] == total
    assert len(data["infos"]) == 2 and data["each_range_list_state"][0]["total_count"] == total
    for item in data["infos"]:
        assert set(item) == {"tenant", "tenant_name", "pool", "cluster_uuid", "cluster_name", "cluster_mode"}
        assert_pool_object(item["pool"])
    status, answer = api.post("/v1/pool/share/list", {"cluster_uuid": CLUSTER, "filter_name": "nfs"})
    assert [i["pool"]["UUID"] for i in answer["data"]["infos"]] == [uuid]

    status, answer = api.post(
        "/v1/pool/share/set", pool_body(uuid, pool_name="nfs-pool", attr={"overAllocationThreshold": "1.5"})
    )
    assert (status, answer["data"]["pool"]) == (200, None)
    assert_wrapper(answer["data"])
    status, answer = api.post("/v1/pool/share/get", pool_body(uuid))
    assert answer["data"]["pool"]["Attr"] == {"overAllocationThreshold": "1.5"}

    status, answer = api.post("/v1/pool/share/status/check", pool_body(uuid))
    assert (status, answer["scode"], answer["data"]["pool"]) == (200, 0, None)

    status, answer = api.post("/v1/pool/share/delete", pool_body(uuid, pool_name="nfs-pool"))
    assert_error(status, answer, 409, 4600)
    volume = Volume.objects.get(pool__uuid=uuid)
    status, answer = api.post(
        "/v1/volume/share/delete", scoped(volume_uuid=str(volume.uuid), volume_name="v1")
    )
    assert status == 200, answer
    status, answer = api.post("/v1/pool/share/delete", pool_body(uuid, pool_name="nfs-pool"))
    assert (status, answer["scode"], answer["data"]["pool"]) == (200, 0, {})
    assert not Pool.objects.filter(uuid=uuid).exists()
    status, answer = api.post("/v1/pool/share/get", pool_body(uuid))
    assert_error(status, answer, 404, 3003)


@pytest.mark.parametrize("ratio, accepted", [("1.0", False), ("2.0", True)])
def test_over_allocation_threshold_decides_volume_create(api, directory, ratio, accepted):
    uuid = create(api, directory, attr={"overAllocationThreshold": ratio})["UUID"]
    status, answer = api.post("/v1/volume/share/create", volume_body(uuid, GiB // 2, "first"))
    assert status == 200, answer
    status, answer = api.post("/v1/volume/share/create", volume_body(uuid, GiB, "over"))
    if accepted:
        assert (status, answer["scode"]) == (200, 0), answer
        assert Volume.objects.filter(pool__uuid=uuid, name="over").exists()
    else:
        assert_error(status, answer, 409, 4006)
        assert not Volume.objects.filter(pool__uuid=uuid, name="over").exists()


@pytest.mark.parametrize("ratio, accepted", [("1.0", False), ("2.0", True)])
def test_over_allocation_threshold_decides_import_and_clone(api, directory, import_root, ratio, accepted):
    demo.demo_import_files_seed(import_root=import_root)
    uuid = create(api, directory, attr={"overAllocationThreshold": ratio})["UUID"]
    assert api.post("/v1/volume/share/create", volume_body(uuid, GiB * 3 // 4, "first"))[0] == 200
    body = dict(volume_body(uuid, GiB // 2, "imported"), backing_file=str(import_root / "my.qcow2"))
    imported = api.post("/v1/volume/share/create", body)
    status, answer = api.post(
        "/v1/volume/share/create", dict(volume_body(POOL_DISKS, GiB // 2, "source"), snap_capacity=GiB)
    )
    source = answer["data"]["volume"]["UUID"]
    status, answer = api.post(
        "/v1/volume/share/snapshot/create", scoped(volume_uuid=source, snapshot_name="s", desc="")
    )
    assert status == 200, answer
    clone = {
        "cluster_uuid": CLUSTER,
        "volume_uuid": source,
        "volume_name": "source",
        "clone_dst_pool_uuid": uuid,
        "clone_dst_vol_name": "cloned",
        "clone_dst_vol_tenant": TENANT,
        "snapshot_uuid": answer["data"]["snapshot"]["UUID"],
        "is_link": False,
    }
    cloned = api.post("/v1/volume/share/clone", clone)
    for status, answer in (imported, cloned):
        if accepted:
            assert (status, answer["scode"]) == (200, 0), answer
        else:
            assert_error(status, answer, 409, 4006)
    names = set(Volume.objects.filter(pool__uuid=uuid).live().values_list("name", flat=True))
    assert names == ({"first", "imported", "cloned"} if accepted else {"first"})


def test_set_lowers_the_threshold_for_the_next_create(api, directory):
    uuid = create(api, directory, attr={"overAllocationThreshold": "2.0"})["UUID"]
    assert api.post("/v1/volume/share/create", volume_body(uuid, GiB, "a"))[0] == 200
    body = pool_body(uuid, pool_name="nfs-pool", attr={"overAllocationThreshold": "1.0"})
    assert api.post("/v1/pool/share/set", body)[0] == 200
    status, answer = api.post("/v1/volume/share/create", volume_body(uuid, GiB // 2, "b"))
    assert_error(status, answer, 409, 4006)


def test_status_check_sees_a_lost_mount_and_its_return(api, directory):
    uuid = create(api, directory)["UUID"]
    os.rename(directory, directory + ".away")
    os.mkdir(directory)  # an empty mount point: no identity marker
    status, answer = api.post("/v1/pool/share/status/check", pool_body(uuid))
    assert_error(status, answer, 503, 5003)
    assert Pool.objects.get(uuid=uuid).status == "unavailable"
    assert api.post("/v1/pool/share/get", pool_body(uuid))[1]["data"]["pool"]["Status"] == "unavailable"
    os.rmdir(directory)
    os.rename(directory + ".away", directory)
    status, answer = api.post("/v1/pool/share/status/check", pool_body(uuid))
    assert (status, answer["scode"]) == (200, 0)
    assert Pool.objects.get(uuid=uuid).status == "healthy"


def test_create_defaults_and_restrictions(api, directory):
    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    pool = create(
        api, directory, capacity=MISSING, limit_host=True, avail_tenant=[OTHER_TENANT], attr={}, pool_type=7
    )
    assert pool["Capacity"] > 0 and pool["LimitHost"] is True and pool["Type"] == 7
    assert pool["Attr"] == {"overAllocationThreshold": "1.0"}
    assert pool["ShareNsNames"] == ["other"] and pool["ShareNsUUIDs"] == [str(other.namespace.uuid)]
    assert list(PoolMount.objects.filter(pool__uuid=pool["UUID"]).values_list("host__uuid", flat=True)) == [
        __import__("uuid").UUID(HOST)
    ]
    # Limited to another tenant: the demo tenant does not see it.
    status, answer = api.post("/v1/pool/share/get", pool_body(pool["UUID"]))
    assert_error(status, answer, 404, 3003)


def test_pool_types_come_from_the_driver_registry(api, monkeypatch):
    monkeypatch.delitem(drivers.DRIVERS, "rbd")
    status, answer = api.get("/v1/pool/share/pool_type/support", {"cluster_uuid": CLUSTER})
    assert answer["data"]["PoolTypes"] == ["nfs", "disk", "cephfs"]


def test_a_tenant_token_reads_but_does_not_manage_pools(
    topology, directory, django_capture_on_commit_callbacks
):
    _, key = token_create(name="tenant", tenant=topology["tenant"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    tenant_api = Api(client, django_capture_on_commit_callbacks)
    status, answer = tenant_api.post("/v1/pool/share/create", create_body(directory))
    assert_error(status, answer, 403, 2003)
    uuid = str(topology["pools"][0].uuid)
    status, answer = tenant_api.post("/v1/pool/share/get", pool_body(uuid))
    assert status == 200 and answer["data"]["pool"]["UUID"] == uuid
    status, answer = tenant_api.post("/v1/pool/share/list", {"cluster_uuid": CLUSTER})
    assert answer["data"]["infos"][0]["tenant"] == TENANT
    status, answer = tenant_api.post(
        "/v1/pool/share/set", pool_body(uuid, pool_name=topology["pools"][0].name, attr={})
    )
    assert_error(status, answer, 403, 2003)
    status, answer = tenant_api.post(
        "/v1/pool/share/delete", pool_body(uuid, pool_name=topology["pools"][0].name)
    )
    assert_error(status, answer, 403, 2003)
    assert Pool.objects.filter(uuid=uuid).exists()


def unchanged_state() -> tuple:
    return (
        tuple(
            Pool.objects.order_by("pk").values_list("pk", "name", "overcommit_ratio", "status", "modified")
        ),
        PoolMount.objects.count(),
        AuditEvent.objects.count(),
    )


CREATE_CASES = [
    ("missing pool_name", dict(pool_name=MISSING), 400, 1002),
    ("missing pool_type", dict(pool_type=MISSING), 400, 1002),
    ("missing zone", dict(zone_uuid=MISSING), 400, 1002),
    ("missing ip", dict(ip=MISSING), 400, 1002),
    ("missing attr", dict(attr=MISSING), 400, 1002),
    ("string pool_type", dict(pool_type="2"), 400, 1001),
    ("pool_type out of range", dict(pool_type=9), 400, 1001),
    ("iscsi has no driver", dict(pool_type=1), 400, 1021),
    ("rbd with a directory path", dict(pool_type=6), 400, 1001),
    ("unknown zone", dict(zone_uuid=UNKNOWN), 404, 3009),
    ("unknown host", dict(avail_host=[UNKNOWN]), 404, 3010),
    ("unknown tenant", dict(avail_tenant=[UNKNOWN]), 404, 3002),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
    ("ratio not a number", dict(attr={"overAllocationThreshold": "lots"}), 400, 1001),
    ("ratio zero", dict(attr={"overAllocationThreshold": "0"}), 400, 1001),
    ("ratio as a number", dict(attr={"overAllocationThreshold": 2}), 400, 1001),
    ("unknown attr", dict(attr={"color": "red"}), 400, 1001),
    ("attr not an object", dict(attr=["1.0"]), 400, 1001),
    ("limit_host without hosts", dict(limit_host=True, avail_host=[]), 400, 1001),
    ("limit_host not a boolean", dict(limit_host="yes"), 400, 1001),
    ("no location", dict(source=""), 400, 1002),
    ("missing directory", dict(source="/nonexistent/pool"), 400, 1001),
    ("empty name", dict(pool_name=""), 400, 1005),
    ("negative capacity", dict(capacity=-1), 400, 1001),
]


@pytest.mark.parametrize(
    "overrides, http, scode", [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_create_bad_input(api, directory, overrides, http, scode):
    before = unchanged_state()
    status, answer = api.post("/v1/pool/share/create", create_body(directory, **overrides))
    assert_error(status, answer, http, scode)
    assert unchanged_state() == before


def test_create_with_a_taken_name_changes_nothing(api, directory):
    create(api, directory)
    before = unchanged_state()
    status, answer = api.post("/v1/pool/share/create", create_body(directory))
    assert_error(status, answer, 400, 1001)
    assert unchanged_state() == before


POOL_CASES = [
    ("get", "missing pool", dict(pool_uuid=MISSING), 400, 1002),
    ("get", "missing tenant", dict(tenant=MISSING), 400, 1002),
    ("get", "unknown pool", dict(pool_uuid=UNKNOWN), 404, 3003),
    ("get", "unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("get", "malformed cluster", dict(cluster_uuid="x"), 400, 1001),
    ("delete", "missing name", dict(pool_name=MISSING), 400, 1002),
    ("delete", "other name", dict(pool_name="other"), 400, 1022),
    ("delete", "unknown pool", dict(pool_uuid=UNKNOWN), 404, 3003),
    ("set", "missing attr", dict(attr=MISSING), 400, 1002),
    ("set", "attr without threshold", dict(attr={}), 400, 1002),
    ("set", "bad ratio", dict(attr={"overAllocationThreshold": "-1"}), 400, 1001),
    ("set", "other name", dict(pool_name="other"), 400, 1022),
    ("status/check", "unknown pool", dict(pool_uuid=UNKNOWN), 404, 3003),
    ("status/check", "unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
    ("list", "page_size too large", dict(page_size=10**6), 400, 1012),
    ("list", "string page_num", dict(page_num="1"), 400, 1001),
    ("list", "unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("list", "missing cluster", dict(cluster_uuid=MISSING), 400, 1002),
]


@pytest.mark.parametrize(
    "endpoint, overrides, http, scode",
    [c[:1] + c[2:] for c in POOL_CASES],
    ids=[f"{c[0]}: {c[1]}" for c in POOL_CASES],
)
def test_pool_endpoint_bad_input(api, directory, endpoint, overrides, http, scode):
    uuid = create(api, directory)["UUID"]
    body = pool_body(uuid, pool_name="nfs-pool", attr={"overAllocationThreshold": "3.0"})
    overridden(body, overrides)
    before = unchanged_state()
    status, answer = api.post(f"/v1/pool/share/{endpoint}", body)
    assert_error(status, answer, http, scode)
    assert unchanged_state() == before


def test_pool_type_support_bad_input(api):
    assert_error(*api.get("/v1/pool/share/pool_type/support", {}), 400, 1002)
    assert_error(*api.get("/v1/pool/share/pool_type/support", {"cluster_uuid": UNKNOWN}), 404, 3001)
    assert_error(*api.post("/v1/pool/share/pool_type/support", {"cluster_uuid": CLUSTER}), 405, 1007)
