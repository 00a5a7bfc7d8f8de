"""`list` and `get` answer byte for byte what they answered before the read path was tuned (issue 12).

A fixed data set (three tenants, two clusters, four pools in two zones, mounts on two hosts, volumes
with zero, one and three attachments, linked and full clones, snapshots, deleted rows) is queried
through the API with several filters, pages and page sizes, and each raw response body is compared
with `golden/volume_read.json`, recorded from the code before the change. To re-record (only when an
answer is meant to change): `SHARESTORE_GOLDEN_RECORD=1 pytest tests/api/test_volume_read_golden.py`.

The same module pins the number of queries of a `list` and a `get` request.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from sharestore.core.services.tokens import token_create
from volumes.choices import EventState, SnapshotStatus
from volumes.models import (
    Cluster,
    Host,
    Namespace,
    Pool,
    PoolMount,
    Snapshot,
    Tenant,
    Volume,
    VolumeAttachment,
    Zone,
)

GOLDEN = Path(__file__).parent / "golden" / "volume_read.json"
EPOCH = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def u(kind: int, n: int) -> str:
    """A fixed UUID: kind in the first group, n in the last."""
    return str(uuid.UUID(f"{kind:08x}-0000-4000-8000-{n:012x}"))


T1, T2, T3 = u(1, 1), u(1, 2), u(1, 3)
C1, C2 = u(2, 1), u(2, 2)
P1, P2, P3, P4 = u(3, 1), u(3, 2), u(3, 3), u(3, 4)


def seed() -> None:
    z1 = Zone.objects.create(uuid=u(4, 1), name="zone-one")
    z2 = Zone.objects.create(uuid=u(4, 2), name="区域二")
    c1 = Cluster.objects.create(uuid=C1, name="cluster-one", mode="share", zone=z1)
    c2 = Cluster.objects.create(uuid=C2, name="cluster-two", mode="", zone=z2)
    h1 = Host.objects.create(uuid=u(5, 2), name="h-b", cluster=c1)
    h2 = Host.objects.create(uuid=u(5, 1), name="h-a", cluster=c1)
    h3 = Host.objects.create(uuid=u(5, 3), name="h-c", cluster=c2)
    tenants = []
    for i, (tu, name) in enumerate([(T1, "alpha"), (T2, "张三"), (T3, "gamma")], start=1):
        tenant = Tenant.objects.create(uuid=tu, name=name)
        Namespace.objects.create(uuid=u(6, i), tenant=tenant)
        tenants.append(tenant)
    pools = [
        Pool.objects.create(
            uuid=P1, name="pool-a", cluster=c1, zone=z1, path="/srv/pools/a", capacity=1 << 40
        ),
        Pool.objects.create(uuid=P2, name="池-b", cluster=c1, zone=z2, path="/srv/pools/b", capacity=1 << 40),
        Pool.objects.create(
            uuid=P3, name="pool-c", cluster=c1, zone=z1, path="/srv/pools/c", capacity=1 << 40
        ),
        Pool.objects.create(
            uuid=P4, name="pool-d", cluster=c2, zone=z2, path="/srv/pools/d", capacity=1 << 40
        ),
    ]
    PoolMount.objects.create(pool=pools[0], host=h1, mount_path="/mnt/a-on-b")
    PoolMount.objects.create(pool=pools[0], host=h2, mount_path="/mnt/a-on-a/")
    PoolMount.objects.create(pool=pools[1], host=h2, mount_path="/mnt/b")
    PoolMount.objects.create(pool=pools[3], host=h3, mount_path="/mnt/d")
    # pools[2] has no mount: AccessPath {}.

    states = [EventState.AVAILABLE] * 6 + [
        EventState.CREATING,
        EventState.ERROR,
        EventState.DELETED,
        EventState.DELETING,
    ]
    volumes: list[Volume] = []
    n = 0
    for ti, tenant in enumerate(tenants):
        for ci, cluster in enumerate((c1, c2)):
            count = {0: 23, 1: 7, 2: 4}[ti] if ci == 0 else 3
            for i in range(count):
                n += 1
                pool = pools[3] if ci == 1 else pools[i % 3]
                # Every fourth volume shares its creation time with the one before (the id breaks the tie).
                created = EPOCH + dt.timedelta(minutes=n - (1 if n % 4 == 0 else 0), microseconds=0)
                volumes.append(
                    Volume(
                        uuid=u(7, n),
                        name=f"{'Data' if i % 2 else 'vol'}-{ti}-{ci}-{i:02d}",
                        tenant=tenant,
                        namespace=tenant.namespace,
                        cluster=cluster,
                        pool=pool,
                        volume_type=("block", "share", "fs")[i % 3],
                        capacity=(i + 1) << 30,
                        snap_cap=i << 20,
                        used=i * 4096,
                        snap_length=i * 512,
                        state=states[i % len(states)],
                        created=created,
                        modified=created + dt.timedelta(seconds=i * 7 + 1, microseconds=500000),
                    )
                )
    Volume.objects.bulk_create(volumes)
    by_uuid = {str(v.uuid): v for v in Volume.objects.all()}

    def vol(n: int) -> Volume:
        return by_uuid[u(7, n)]

    # Attachments: one on volume 1, three on volume 2 (out of creation order on purpose), one on a C2 volume.
    VolumeAttachment.objects.create(
        volume=vol(1),
        vm_uuid=u(8, 1),
        device="vda",
        host_uuid=u(5, 1),
        vm_name="vm-1",
        vm_type="kvm",
        created=EPOCH,
    )
    for k, minute in ((2, 5), (3, 1), (4, 3)):
        VolumeAttachment.objects.create(
            volume=vol(2),
            vm_uuid=u(8, k),
            device=f"vd{k}",
            host_uuid="" if k == 3 else u(5, 2),
            vm_name=f"虚拟机-{k}",
            vm_type="",
            created=EPOCH + dt.timedelta(minutes=minute),
        )
    VolumeAttachment.objects.create(volume=vol(24), vm_uuid=u(8, 9), created=EPOCH)

    # Snapshots on volume 3 and 5; linked clones of them; a full clone (source only) of volume 1.
    s1 = Snapshot.objects.create(uuid=u(9, 1), volume=vol(3), name="s1", layer_name="snap/1", created=EPOCH)
    s2 = Snapshot.objects.create(
        uuid=u(9, 2),
        volume=vol(3),
        name="s2",
        parent=s1,
        layer_name="snap/2",
        created=EPOCH + dt.timedelta(seconds=1),
    )
    s3 = Snapshot.objects.create(
        uuid=u(9, 3),
        volume=vol(5),
        name="s3",
        status=SnapshotStatus.HIDDEN,
        layer_name="snap/3",
        created=EPOCH,
    )
    Volume.objects.filter(pk=vol(3).pk).update(current_snapshot=s2)
    Volume.objects.filter(pk__in=[vol(10).pk, vol(11).pk]).update(source_volume=vol(3), parent_snapshot=s1)
    Volume.objects.filter(pk=vol(12).pk).update(source_volume=vol(3), parent_snapshot=s2)
    Volume.objects.filter(pk=vol(17).pk).update(source_volume=vol(5), parent_snapshot=s3)
    Volume.objects.filter(pk=vol(13).pk).update(source_volume=vol(1))
    # A deleted clone is not a child; a clone in another tenant still is.
    Volume.objects.filter(pk=vol(9).pk).update(source_volume=vol(1))
    Volume.objects.filter(pk=vol(27).pk).update(source_volume=vol(1))


LIST_CASES = {
    "t1c1-default": {"tenant": T1, "cluster_uuid": C1},
    "t1c1-p1-s10": {"tenant": T1, "cluster_uuid": C1, "page_num": 1, "page_size": 10},
    "t1c1-p0-s10": {"tenant": T1, "cluster_uuid": C1, "page_num": 0, "page_size": 10},
    "t1c1-p2-s10": {"tenant": T1, "cluster_uuid": C1, "page_num": 2, "page_size": 10},
    "t1c1-last-s7": {"tenant": T1, "cluster_uuid": C1, "page_num": 3, "page_size": 7},
    "t1c1-beyond-s7": {"tenant": T1, "cluster_uuid": C1, "page_num": 9, "page_size": 7},
    "t1c1-s1-p5": {"tenant": T1, "cluster_uuid": C1, "page_num": 5, "page_size": 1},
    "t1c1-s100": {"tenant": T1, "cluster_uuid": C1, "page_size": 100},
    "t1c1-pool-a": {"tenant": T1, "cluster_uuid": C1, "filter_pool_uuid": P1},
    "t1c1-pool-b-s2-p2": {
        "tenant": T1,
        "cluster_uuid": C1,
        "filter_pool_uuid": P2,
        "page_num": 2,
        "page_size": 2,
    },
    "t1c1-pool-other-cluster": {"tenant": T1, "cluster_uuid": C1, "filter_pool_uuid": P4},
    "t1c1-pool-unknown": {"tenant": T1, "cluster_uuid": C1, "filter_pool_uuid": u(3, 99)},
    "t1c1-name-data": {"tenant": T1, "cluster_uuid": C1, "filter_name": "data"},
    "t1c1-name-pool-s3-p2": {
        "tenant": T1,
        "cluster_uuid": C1,
        "filter_name": "VOL",
        "filter_pool_uuid": P3,
        "page_num": 2,
        "page_size": 3,
    },
    "t1c1-name-none": {"tenant": T1, "cluster_uuid": C1, "filter_name": "nothing"},
    "t1c1-name-empty": {"tenant": T1, "cluster_uuid": C1, "filter_name": "", "filter_pool_uuid": ""},
    "t1c2": {"tenant": T1, "cluster_uuid": C2},
    "t2c1-s3-p3": {"tenant": T2, "cluster_uuid": C1, "page_num": 3, "page_size": 3},
    "t2c1": {"tenant": T2, "cluster_uuid": C1},
    "t3c1": {"tenant": T3, "cluster_uuid": C1},
    "t3c2-s2": {"tenant": T3, "cluster_uuid": C2, "page_size": 2},
    "unknown-tenant": {"tenant": u(1, 99), "cluster_uuid": C1},
    "unknown-cluster": {"tenant": T1, "cluster_uuid": u(2, 99)},
    "page-too-large": {"tenant": T1, "cluster_uuid": C1, "page_size": 1001},
    "bad-page": {"tenant": T1, "cluster_uuid": C1, "page_size": "10"},
    "bad-pool": {"tenant": T1, "cluster_uuid": C1, "filter_pool_uuid": "nope"},
}

GET_CASES = {
    f"get-{n}": {"tenant": t, "cluster_uuid": c, "volume_uuid": u(7, n)}
    for n, t, c in [
        (1, T1, C1),
        (2, T1, C1),
        (3, T1, C1),
        (5, T1, C1),
        (10, T1, C1),
        (12, T1, C1),
        (13, T1, C1),
        (17, T1, C1),
        (24, T1, C2),
        (27, T2, C1),
        (30, T2, C1),
        (36, T3, C1),
    ]
}
GET_CASES.update(
    {
        "get-deleted": {"tenant": T1, "cluster_uuid": C1, "volume_uuid": u(7, 9)},
        "get-other-tenant": {"tenant": T2, "cluster_uuid": C1, "volume_uuid": u(7, 1)},
        "get-other-cluster": {"tenant": T1, "cluster_uuid": C2, "volume_uuid": u(7, 1)},
        "get-unknown": {"tenant": T1, "cluster_uuid": C1, "volume_uuid": u(7, 999)},
        "get-unknown-tenant": {"tenant": u(1, 99), "cluster_uuid": C1, "volume_uuid": u(7, 1)},
    }
)


@pytest.fixture
def read_client(db):
    seed()
    _, key = token_create(name="golden-platform")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def answers(client) -> dict[str, dict]:
    out = {}
    for path, cases in (("list", LIST_CASES), ("get", GET_CASES)):
        for name, body in cases.items():
            response = client.generic(
                "POST", f"/v1/volume/share/{path}", json.dumps(body), content_type="application/json"
            )
            out[f"{path}:{name}"] = {"status": response.status_code, "body": response.content.decode("utf-8")}
    # A tenant token: its own tenant, and another tenant (which answers like an unknown one).
    _, key = token_create(name="golden-tenant", tenant=Tenant.objects.get(uuid=T2))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    for name, (path, body) in {
        "tenant-token-own-list": ("list", {"tenant": T2, "cluster_uuid": C1, "page_size": 2}),
        "tenant-token-own-get": ("get", {"tenant": T2, "cluster_uuid": C1, "volume_uuid": u(7, 27)}),
        "tenant-token-other-list": ("list", {"tenant": T1, "cluster_uuid": C1}),
        "tenant-token-other-get": ("get", {"tenant": T1, "cluster_uuid": C1, "volume_uuid": u(7, 1)}),
    }.items():
        response = client.generic(
            "POST", f"/v1/volume/share/{path}", json.dumps(body), content_type="application/json"
        )
        out[f"{path}:{name}"] = {"status": response.status_code, "body": response.content.decode("utf-8")}
    return out


def test_list_and_get_answers_are_unchanged(read_client):
    got = answers(read_client)
    if os.environ.get("SHARESTORE_GOLDEN_RECORD"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(
            json.dumps(got, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name


def test_golden_data_set_covers_what_it_should():
    """The recorded answers exercise attachments, clones, empty and last pages, not just empty lists."""
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    bodies = {name: json.loads(a["body"]) for name, a in expected.items()}
    first = bodies["list:t1c1-default"]["data"]
    assert first["TotalCount"] == 19 and len(first["list"]) == 19
    text = json.dumps(bodies)
    assert '"Attachments"' in text and '"Children": ["' in text and '"ParentSnapshot": "0000' in text
    assert bodies["list:t1c1-beyond-s7"]["data"]["list"] == []
    assert len(bodies["list:t1c1-last-s7"]["data"]["list"]) == 19 - 14
