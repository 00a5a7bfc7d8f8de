"""Table-driven bad input for the six volume endpoints: each case answers its documented scode and
HTTP status in a whole error envelope, and changes nothing (no row, no operation, no file)."""

from __future__ import annotations

import os
import uuid

import pytest

from sharestore.core.models import AuditEvent, Operation
from tests.helpers import CLUSTER, POOL_DISKS, TENANT, assert_error, qemu_img, scoped
from volumes.models import Tenant, Volume

MISSING = object()
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def create_body(**overrides) -> dict:
    body = scoped(
        pool_uuid=POOL_DISKS, volume_name="v", volume_type="block", capacity=1 << 30, snap_capacity=1 << 30
    )
    for key, value in overrides.items():
        if value is MISSING:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def snapshot_of_storage(data_dir) -> tuple:
    files = sorted(
        os.path.relpath(os.path.join(d, f), data_dir) for d, _, fs in os.walk(data_dir) for f in fs
    )
    return (
        tuple(Volume.objects.order_by("pk").values_list("pk", "state", "name", "used", "modified")),
        Operation.objects.count(),
        AuditEvent.objects.count(),
        tuple(files),
    )


CREATE_CASES = [
    ("missing tenant", dict(tenant=MISSING), 400, 1002),
    ("missing cluster", dict(cluster_uuid=MISSING), 400, 1002),
    ("missing pool", dict(pool_uuid=MISSING), 400, 1002),
    ("missing name", dict(volume_name=MISSING), 400, 1002),
    ("missing type", dict(volume_type=MISSING), 400, 1002),
    ("missing snap_capacity", dict(snap_capacity=MISSING), 400, 1002),
    ("missing capacity without backing_file", dict(capacity=MISSING), 400, 1002),
    ("null tenant", dict(tenant=None), 400, 1002),
    ("malformed tenant", dict(tenant="not-a-uuid"), 400, 1001),
    ("integer tenant", dict(tenant=12345), 400, 1001),
    ("malformed pool", dict(pool_uuid="0eca2be3"), 400, 1001),
    ("unknown cluster", dict(cluster_uuid=UNKNOWN), 404, 3001),
    ("unknown tenant", dict(tenant=UNKNOWN), 404, 3002),
    ("unknown pool", dict(pool_uuid=UNKNOWN), 404, 3003),
    ("bad volume_type", dict(volume_type="disk"), 400, 1003),
    ("empty volume_type", dict(volume_type=""), 400, 1003),
    ("numeric volume_type", dict(volume_type=1), 400, 1001),
    ("zero capacity", dict(capacity=0), 400, 1004),
    ("negative capacity", dict(capacity=-4096), 400, 1004),
    ("absurd capacity", dict(capacity=1 << 62), 400, 1004),
    ("tiny capacity", dict(capacity=4096), 400, 1004),
    ("misaligned capacity", dict(capacity=(1 << 30) + 1), 400, 1004),
    ("string capacity", dict(capacity="1073741824"), 400, 1001),
    ("fractional capacity", dict(capacity=1.5), 400, 1001),
    ("boolean capacity", dict(capacity=True), 400, 1001),
    ("negative snap_capacity", dict(snap_capacity=-1), 400, 1004),
    ("empty name", dict(volume_name=""), 400, 1005),
    ("blank name", dict(volume_name="   "), 400, 1005),
    ("long name", dict(volume_name="x" * 129), 400, 1005),
    ("control characters in name", dict(volume_name="bad\nname"), 400, 1005),
    ("numeric name", dict(volume_name=42), 400, 1001),
    ("backing_file outside roots", dict(backing_file="/etc/passwd"), 422, 1010),
    ("relative backing_file", dict(backing_file="my.qcow2"), 422, 1010),
    ("missing backing_file", dict(backing_file="{root}/nope.qcow2"), 422, 1010),
    ("backing_file directory", dict(backing_file="{root}"), 422, 1010),
    ("backing_file traversal", dict(backing_file="{root}/../../../../etc/passwd"), 422, 1010),
]


@pytest.mark.parametrize("label,overrides,status,scode", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_create_rejects_bad_input(api, data_dir, label, overrides, status, scode):
    root = str(data_dir / "import")
    overrides = {
        k: v.format(root=root) if isinstance(v, str) and "{root}" in v else v for k, v in overrides.items()
    }
    before = snapshot_of_storage(data_dir)
    got_status, body = api.post("create", create_body(**overrides))
    assert_error(got_status, body, status, scode)
    assert snapshot_of_storage(data_dir) == before


def test_create_rejects_hostile_images(api, data_dir, import_root):
    cases = {}
    # A qcow2 whose backing file is a host file outside the roots.
    qemu_img("create", "-q", "-f", "raw", str(import_root / "base.raw"), "1M")
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "/etc/passwd",
        "-F",
        "raw",
        str(import_root / "backed.qcow2"),
        "1M",
    )
    cases["backed.qcow2"] = "backing file"
    # A qcow2 with an external data file.
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={import_root / 'data.bin'}",
        str(import_root / "datafile.qcow2"),
        "1M",
    )
    cases["datafile.qcow2"] = "data-file"
    # A truncated qcow2 (passes info, fails check).
    qemu_img("create", "-q", "-f", "qcow2", str(import_root / "full.qcow2"), "8M")
    import subprocess

    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", str(import_root / "full.qcow2")],
        check=True,
        capture_output=True,
    )
    data = (import_root / "full.qcow2").read_bytes()
    (import_root / "truncated.qcow2").write_bytes(data[: len(data) // 2])
    cases["truncated.qcow2"] = "check"
    # A symlink into the root pointing outside it.
    os.symlink("/etc/passwd", import_root / "link.raw")
    cases["link.raw"] = "outside"
    # An empty file.
    (import_root / "empty.raw").write_bytes(b"")
    cases["empty.raw"] = "empty"
    before = snapshot_of_storage(data_dir)
    for file_name, reason in cases.items():
        status, body = api.post(
            "create",
            create_body(volume_name=file_name, capacity=MISSING, backing_file=str(import_root / file_name)),
        )
        assert_error(status, body, 422, 1010)
        assert reason in body["message"], (file_name, body["message"])
    assert snapshot_of_storage(data_dir) == before


def test_capacity_smaller_than_image_is_refused(api, data_dir, import_root):
    qemu_img("create", "-q", "-f", "qcow2", str(import_root / "big.qcow2"), str(64 << 20))
    before = snapshot_of_storage(data_dir)
    status, body = api.post(
        "create", create_body(capacity=32 << 20, backing_file=str(import_root / "big.qcow2"))
    )
    assert_error(status, body, 400, 1011)
    assert snapshot_of_storage(data_dir) == before


def test_duplicate_name_is_refused(api, data_dir):
    assert api.post("create", create_body(volume_name="dup"))[1]["scode"] == 0
    before = snapshot_of_storage(data_dir)
    status, body = api.post("create", create_body(volume_name="dup"))
    assert_error(status, body, 409, 4002)
    assert snapshot_of_storage(data_dir) == before


@pytest.fixture
def volume_uuid(api):
    _, body = api.post("create", create_body(volume_name="target"))
    return body["data"]["volume"]["UUID"]


@pytest.fixture
def other_tenant_volume(api, topology):
    """A volume of another tenant, in the same cluster and pool."""
    from volumes.models import Namespace

    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    _, body = api.post("create", create_body(tenant=OTHER_TENANT, volume_name="theirs"))
    assert body["scode"] == 0
    return body["data"]["volume"]["UUID"]


ENDPOINTS_ON_ONE_VOLUME = {
    "get": {},
    "delete": {"volume_name": "target"},
    "used/update": {"volume_name": "target"},
    "snap_length/update": {"volume_name": "target"},
}


def _one_volume_cases():
    for endpoint, extra in ENDPOINTS_ON_ONE_VOLUME.items():
        named = "volume_name" in extra
        cases = [
            ("missing volume_uuid", {"volume_uuid": MISSING}, 400, 1002),
            ("malformed volume_uuid", {"volume_uuid": "xyz"}, 400, 1001),
            ("unknown volume", {"volume_uuid": UNKNOWN}, 404, 3004),
            ("other tenant's volume", {"volume_uuid": "{other}"}, 404, 3004),
            ("missing tenant", {"tenant": MISSING}, 400, 1002),
            ("unknown cluster", {"cluster_uuid": UNKNOWN}, 404, 3001),
        ]
        if named:
            cases += [
                ("missing volume_name", {"volume_name": MISSING}, 400, 1002),
                ("wrong volume_name", {"volume_name": "not-target"}, 400, 1006),
            ]
        if endpoint == "delete":
            cases += [("string force", {"force": "yes"}, 400, 1001)]
        for label, overrides, status, scode in cases:
            yield pytest.param(endpoint, extra, overrides, status, scode, id=f"{endpoint}: {label}")


@pytest.mark.parametrize("endpoint,extra,overrides,status,scode", list(_one_volume_cases()))
def test_volume_endpoints_reject_bad_input(
    api, data_dir, volume_uuid, other_tenant_volume, endpoint, extra, overrides, status, scode
):
    body = scoped(volume_uuid=volume_uuid, **extra)
    for key, value in overrides.items():
        if value is MISSING:
            body.pop(key)
        else:
            body[key] = other_tenant_volume if value == "{other}" else value
    before = snapshot_of_storage(data_dir)
    got_status, answer = api.post(endpoint, body)
    assert_error(got_status, answer, status, scode)
    assert snapshot_of_storage(data_dir) == before


LIST_CASES = [
    ("missing tenant", {"tenant": MISSING}, 400, 1002),
    ("missing cluster", {"cluster_uuid": MISSING}, 400, 1002),
    ("malformed filter_pool_uuid", {"filter_pool_uuid": "pool"}, 400, 1001),
    ("negative page_num", {"page_num": -1}, 400, 1001),
    ("string page_size", {"page_size": "10"}, 400, 1001),
    ("page_size over the maximum", {"page_size": 1001}, 400, 1012),
    ("unknown tenant", {"tenant": UNKNOWN}, 404, 3002),
]


@pytest.mark.parametrize("label,overrides,status,scode", LIST_CASES, ids=[c[0] for c in LIST_CASES])
def test_list_rejects_bad_input(api, label, overrides, status, scode):
    body = scoped(page_size=10)
    for key, value in overrides.items():
        if value is MISSING:
            body.pop(key)
        else:
            body[key] = value
    assert_error(*api.post("list", body), status, scode)


@pytest.mark.parametrize(
    "raw,content_type,status,scode",
    [
        ("{not json", "application/json", 400, 1000),
        ("[1, 2]", "application/json", 400, 1000),
        ('"just a string"', "application/json", 400, 1000),
        ("tenant=x", "application/x-www-form-urlencoded", 400, 1000),
        ("[" * 33 + "]" * 33, "application/json", 400, 1014),
        ('{"capacity": NaN}', "application/json", 400, 1000),
        ("\xff\xfe", "application/octet-stream", 400, 1000),
    ],
    ids=["broken json", "json array", "json string", "form body", "deep nesting", "NaN", "not utf-8"],
)
def test_malformed_bodies(api, data_dir, raw, content_type, status, scode):
    before = snapshot_of_storage(data_dir)
    assert_error(*api.post("create", raw=raw, content_type=content_type), status, scode)
    assert snapshot_of_storage(data_dir) == before


def test_wrong_method_and_unknown_route(api):
    response = api.client.get("/v1/volume/share/create")
    assert response.status_code == 405 and response.json()["scode"] == 1007
    response = api.client.post("/v1/volume/share/nope", {}, format="json")
    assert response.status_code == 404 and response.json()["scode"] == 3099


def test_extra_fields_are_ignored(api):
    status, body = api.post("create", create_body(pool_name="disks", unexpected={"nested": True}))
    assert (status, body["scode"]) == (200, 0)


def test_listing_does_not_show_other_tenants_volumes(api, other_tenant_volume, volume_uuid):
    _, body = api.post("list", scoped())
    assert [i["volume"]["UUID"] for i in body["data"]["list"]] == [volume_uuid]
    _, theirs = api.post("list", {"tenant": OTHER_TENANT, "cluster_uuid": CLUSTER})
    assert [i["volume"]["UUID"] for i in theirs["data"]["list"]] == [other_tenant_volume]
    assert TENANT != OTHER_TENANT and uuid.UUID(other_tenant_volume)
