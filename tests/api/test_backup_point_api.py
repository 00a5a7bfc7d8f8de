"""The platform's backup-point API (/v1/volume/internal/backuppoint/*, docs/api.md "Backup points"):
the lifecycle with every documented key in its documented JSON type, a password never stored nor
returned, tenant scope, and bad input per endpoint (error envelope, nothing changed)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from backups.services.points import backup_point_create
from sharestore.core.models import AuditEvent
from sharestore.core.services.tokens import token_create
from tests.api.test_pool_api import MISSING, overridden
from tests.conftest import Api
from tests.contract import shape_mismatches
from tests.helpers import CLUSTER, TENANT, assert_error
from volumes.models import Namespace, Tenant, Zone

UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
SECRET = "s3cret-pass-w0rd"
BASE = "/v1/volume/internal/backuppoint/"

# A listed backup point: every key with its documented JSON type.
POINT_OBJECT = {
    "tenant": "",
    "tenant_name": "",
    "Name": "",
    "UUID": "",
    "BType": "",
    "NsUUID": "",
    "Ref": 0,
    "indentify": {"IP": "", "PORT": "", "RootDir": "", "SubDir": "", "Dest": "", "Env": {}, "Pwd": ""},
    "Ctime": 0,
    "Mtime": 0,
    "Bpstate": "healthy",
}


def assert_point_object(point: dict) -> None:
    assert set(point) == set(POINT_OBJECT) and set(point["indentify"]) == set(POINT_OBJECT["indentify"])
    assert not shape_mismatches(point, POINT_OBJECT), shape_mismatches(point, POINT_OBJECT)
    assert all(type(point[key]) is int for key in ("Ref", "Ctime", "Mtime"))
    assert point["indentify"]["Pwd"] == ""


@pytest.fixture
def root(topology, data_dir):
    path = data_dir / "backup-root"
    for sub in ("bp1", "bp2"):
        (path / sub).mkdir(parents=True)
    return str(path)


def add_body(root: str, **overrides) -> dict:
    body = {
        "cluster_uuid": CLUSTER,
        "tenant": TENANT,
        "zone_uuid": str(Zone.objects.first().uuid),
        "name": "bp-nfs",
        "btype": "nfs",
        "ip": "10.0.0.9",
        "root_dir": root,
        "sub_dir": "bp1",
        "pass_word": "",
        "env": {},
    }
    overridden(body, overrides)
    return body


def update_body(root: str, uuid: str, **overrides) -> dict:
    body = {
        "cluster_uuid": CLUSTER,
        "tenant_uuid": TENANT,
        "backup_point_uuid": uuid,
        "backup_point_name": "bp-renamed",
        "ip": "10.0.0.10",
        "root_directory": root,
        "sub_dir": "bp2",
        "environment": {"zone": "b"},
    }
    overridden(body, overrides)
    return body


def listed(api, **query) -> dict:
    status, answer = api.get(BASE + "list", {"cluster_uuid": CLUSTER, **query})
    assert (status, answer["scode"]) == (200, 0), answer
    assert set(answer["data"]) == {"total_count", "list"}
    for point in answer["data"]["list"]:
        assert_point_object(point)
    return answer["data"]


def add(api, root, **overrides) -> str:
    status, answer = api.post(BASE + "add", add_body(root, **overrides))
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]["uuid"]


def test_backup_point_lifecycle_answers_every_documented_key(api, root, topology):
    status, answer = api.post(BASE + "add", add_body(root, env={"k": "v"}, capacity=1 << 30))
    assert (status, answer["scode"]) == (200, 0), answer
    assert set(answer["data"]) == {"uuid", "name"} and answer["data"]["name"] == "bp-nfs"
    uuid = answer["data"]["uuid"]
    point = BackupPoint.objects.get(uuid=uuid)
    assert (point.path, str(point.tenant.uuid), point.capacity) == (f"{root}/bp1", TENANT, 1 << 30)

    data = listed(api, tenant=TENANT)
    [item] = [p for p in data["list"] if p["UUID"] == uuid]
    assert data["total_count"] == len(data["list"])
    assert (item["tenant"], item["tenant_name"], item["Name"], item["BType"]) == (
        TENANT,
        "zhangyiru",
        "bp-nfs",
        "nfs",
    )
    assert item["NsUUID"] == str(topology["tenant"].namespace.uuid)
    assert (item["Ref"], item["Bpstate"]) == (0, "healthy")
    assert item["indentify"] == {
        "IP": "10.0.0.9",
        "PORT": "",
        "RootDir": root,
        "SubDir": "bp1",
        "Dest": f"{root}/bp1",
        "Env": {"k": "v"},
        "Pwd": "",
    }

    status, answer = api.post(BASE + "update", update_body(root, uuid))
    assert (status, answer) == (200, {**answer, "scode": 0, "data": {}})
    [item] = [p for p in listed(api, filter_name="renamed")["list"]]
    assert (item["UUID"], item["Name"]) == (uuid, "bp-renamed")
    assert (item["indentify"]["Dest"], item["indentify"]["IP"]) == (f"{root}/bp2", "10.0.0.10")
    assert item["indentify"]["Env"] == {"zone": "b"}

    backup = Backup.objects.create(
        name="b1",
        backup_point=BackupPoint.objects.get(uuid=uuid),
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        volume_uuid=UNKNOWN,
        volume_capacity=1 << 30,
        volume_type="block",
        snapshot_uuid=UNKNOWN,
        snapshot_name="s1",
        status=BackupStatus.COMPLETED,
    )
    assert [p["Ref"] for p in listed(api)["list"] if p["UUID"] == uuid] == [1]
    status, answer = api.post(BASE + "delete", {"cluster_uuid": CLUSTER, "uuid": uuid, "tenant": TENANT})
    assert_error(status, answer, 409, 4601)
    Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.DELETED)

    status, answer = api.post(
        BASE + "delete",
        {"cluster_uuid": CLUSTER, "uuid": uuid, "tenant": TENANT, "backup_point_name": "bp-renamed"},
    )
    assert (status, answer["scode"], answer["data"]) == (200, 0, {})
    assert (
        not BackupPoint.objects.filter(uuid=uuid).exists()
        and not Backup.objects.filter(pk=backup.pk).exists()
    )
    assert all(p["UUID"] != uuid for p in listed(api)["list"])


def test_a_password_is_stored_sealed_and_never_returned(api, root):
    status, answer = api.post(BASE + "add", add_body(root, pass_word=SECRET))
    assert (status, answer["scode"]) == (200, 0), answer
    assert SECRET not in json.dumps(answer)
    point = BackupPoint.objects.get(uuid=answer["data"]["uuid"])
    assert point.encrypts and SECRET not in point.password_sealed
    uuid = str(point.uuid)
    status, answer = api.get(BASE + "list", {"cluster_uuid": CLUSTER})
    assert SECRET not in json.dumps(answer)
    assert [p["indentify"]["Pwd"] for p in answer["data"]["list"] if p["UUID"] == uuid] == [""]
    row = BackupPoint.objects.filter(uuid=uuid).values()[0]
    assert SECRET not in json.dumps(row, default=str)
    assert not AuditEvent.objects.filter(message__contains=SECRET).exists()


def test_list_pages_and_tenant_scope(api, root, topology, django_capture_on_commit_callbacks):
    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    mine = add(api, root)
    theirs = add(api, root, tenant=OTHER_TENANT, name="theirs", sub_dir="bp2")
    shared = backup_point_create(name="shared", cluster=topology["cluster"], path=root, capacity=1 << 30)
    assert {p["UUID"] for p in listed(api, tenant=TENANT)["list"]} == {mine, str(shared.uuid)}
    assert {p["UUID"] for p in listed(api)["list"]} == {mine, theirs, str(shared.uuid)}
    page = listed(api, page_size="1", page_num="2")
    assert (page["total_count"], [p["Name"] for p in page["list"]]) == (3, ["shared"])
    shared_item = [p for p in listed(api)["list"] if p["Name"] == "shared"][0]
    assert (shared_item["tenant"], shared_item["NsUUID"], shared_item["indentify"]["RootDir"]) == (
        "",
        "",
        root,
    )

    _, key = token_create(name="other-tenant", tenant=other)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    tenant_api = Api(client, django_capture_on_commit_callbacks)
    assert {p["UUID"] for p in listed(tenant_api)["list"]} == {theirs, str(shared.uuid)}
    before = unchanged_state()
    status, answer = tenant_api.post(BASE + "delete", {"cluster_uuid": CLUSTER, "uuid": mine})
    assert_error(status, answer, 404, 3006)
    status, answer = tenant_api.post(BASE + "delete", {"cluster_uuid": CLUSTER, "uuid": str(shared.uuid)})
    assert_error(status, answer, 404, 3006)
    status, answer = tenant_api.post(BASE + "add", add_body(root, sub_dir="bp2", name="x"))
    assert_error(status, answer, 404, 3002)
    assert unchanged_state() == before


def unchanged_state() -> tuple:
    return (
        tuple(
            BackupPoint.objects.order_by("pk").values_list(
                "pk", "name", "path", "ip", "root_dir", "sub_dir", "env", "modified"
            )
        ),
        Backup.objects.count(),
        AuditEvent.objects.count(),
    )


ADD_CASES = [
    ("missing tenant", dict(tenant=MISSING), 400, 1002),
    ("missing zone", dict(zone_uuid=MISSING), 400, 1002),
    ("missing name", dict(name=MISSING), 400, 1002),
    ("missing btype", dict(btype=MISSING), 400, 1002),
    ("missing ip", dict(ip=MISSING), 400, 1002),
    ("missing root_dir", dict(root_dir=MISSING), 400, 1002),
    ("unknown btype", dict(btype="tape"), 400, 1001),
    ("unknown zone", dict(zone_uuid=UNKNOWN), 404, 3009),
    ("unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
    ("relative root_dir", dict(root_dir="backups"), 400, 1001),
    ("sub_dir escapes", dict(sub_dir="../bp1"), 400, 1001),
    ("absolute sub_dir", dict(sub_dir="/tmp"), 400, 1001),
    ("missing directory", dict(sub_dir="nope"), 400, 1001),
    ("env not an object", dict(env=[]), 400, 1001),
    ("integer ip", dict(ip=10), 400, 1001),
    ("empty name", dict(name=""), 400, 1005),
]


@pytest.mark.parametrize("overrides, http, scode", [c[1:] for c in ADD_CASES], ids=[c[0] for c in ADD_CASES])
def test_add_bad_input(api, root, overrides, http, scode):
    before = unchanged_state()
    status, answer = api.post(BASE + "add", add_body(root, **overrides))
    assert_error(status, answer, http, scode)
    assert SECRET not in json.dumps(answer)
    assert unchanged_state() == before


def test_add_twice_with_the_same_name_or_directory_changes_nothing(api, root):
    add(api, root)
    before = unchanged_state()
    assert_error(*api.post(BASE + "add", add_body(root, sub_dir="bp2")), 400, 1001)
    assert_error(*api.post(BASE + "add", add_body(root, name="other")), 400, 1001)
    assert unchanged_state() == before


UPDATE_CASES = [
    ("missing tenant", dict(tenant_uuid=MISSING), 400, 1002),
    ("missing name", dict(backup_point_name=MISSING), 400, 1002),
    ("missing root", dict(root_directory=MISSING), 400, 1002),
    ("missing sub_dir", dict(sub_dir=MISSING), 400, 1002),
    ("unknown point", dict(backup_point_uuid=UNKNOWN), 404, 3006),
    ("missing directory", dict(sub_dir="nope"), 400, 1001),
    ("sub_dir escapes", dict(sub_dir="../x"), 400, 1001),
    ("empty name", dict(backup_point_name=""), 400, 1005),
    ("environment not an object", dict(environment="x"), 400, 1001),
]


@pytest.mark.parametrize(
    "overrides, http, scode", [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_update_bad_input(api, root, overrides, http, scode):
    uuid = add(api, root)
    before = unchanged_state()
    status, answer = api.post(BASE + "update", update_body(root, uuid, **overrides))
    assert_error(status, answer, http, scode)
    assert unchanged_state() == before


DELETE_CASES = [
    ("missing uuid", dict(uuid=MISSING), 400, 1002),
    ("missing cluster", dict(cluster_uuid=MISSING), 400, 1002),
    ("malformed uuid", dict(uuid="bp"), 400, 1001),
    ("unknown point", dict(uuid=UNKNOWN), 404, 3006),
    ("other name", dict(backup_point_name="other"), 400, 1022),
    ("malformed tenant", dict(tenant="x"), 400, 1001),
]


@pytest.mark.parametrize(
    "overrides, http, scode", [c[1:] for c in DELETE_CASES], ids=[c[0] for c in DELETE_CASES]
)
def test_delete_bad_input(api, root, overrides, http, scode):
    body = {"cluster_uuid": CLUSTER, "uuid": add(api, root), "tenant": TENANT, "backup_point_name": "bp-nfs"}
    overridden(body, overrides)
    before = unchanged_state()
    assert_error(*api.post(BASE + "delete", body), http, scode)
    assert unchanged_state() == before


@pytest.mark.parametrize(
    "query, http, scode",
    [
        ({}, 400, 1002),
        ({"cluster_uuid": UNKNOWN}, 404, 3001),
        ({"cluster_uuid": CLUSTER, "tenant": UNKNOWN}, 404, 3002),
        ({"cluster_uuid": CLUSTER, "page_size": "x"}, 400, 1001),
        ({"cluster_uuid": CLUSTER, "page_size": "100000"}, 400, 1012),
    ],
)
def test_list_bad_input(api, root, query, http, scode):
    assert_error(*api.get(BASE + "list", query), http, scode)
