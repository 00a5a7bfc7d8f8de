"""The list endpoint's cost does not grow with the page (no N+1) and its query is index-backed."""

from __future__ import annotations

import re

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.helpers import CLUSTER, TENANT, scoped
from volumes.choices import LIVE_STATES, EventState
from volumes.models import Cluster, Pool, Tenant, Volume, VolumeAttachment


def make_volumes(topology, count: int) -> None:
    tenant = Tenant.objects.get(uuid=TENANT)
    cluster = Cluster.objects.get(uuid=CLUSTER)
    pools = list(Pool.objects.all())
    rows = [
        Volume(
            name=f"bulk-{i}",
            tenant=tenant,
            namespace=tenant.namespace,
            cluster=cluster,
            pool=pools[i % len(pools)],
            volume_type="block",
            capacity=1 << 30,
            snap_cap=0,
            state=EventState.AVAILABLE,
        )
        for i in range(count)
    ]
    Volume.objects.bulk_create(rows)
    for volume in Volume.objects.filter(name__startswith="bulk-")[: count // 2]:
        VolumeAttachment.objects.create(
            volume=volume, vm_uuid="863b64eb-c8ed-4f25-9af9-9c96b28a7200", device="sda"
        )


def count_queries(api, body) -> int:
    with CaptureQueriesContext(connection) as ctx:
        status, answer = api.post("list", body)
    assert status == 200 and answer["scode"] == 0
    return len(ctx.captured_queries), len(answer["data"]["list"])


def test_list_query_count_does_not_grow_with_page_size(api, topology):
    make_volumes(topology, 60)
    api.post("list", scoped(page_size=1))  # the token's last-use stamp is written at most once a minute
    small, small_rows = count_queries(api, scoped(page_size=2))
    large, large_rows = count_queries(api, scoped(page_size=50))
    assert (small_rows, large_rows) == (2, 50)
    assert small == large
    assert large <= 12


def test_list_query_uses_the_tenant_cluster_index(api, topology):
    make_volumes(topology, 60)
    # Other tenants' volumes, so that the tenant is as selective as it is in production.
    from volumes.models import Namespace

    cluster = Cluster.objects.get(uuid=CLUSTER)
    pools = list(Pool.objects.all())
    rows = []
    for t in range(30):
        other = Tenant.objects.create(name=f"tenant-{t}")
        Namespace.objects.create(tenant=other)
        rows += [
            Volume(
                name=f"bulk-{t}-{i}",
                tenant=other,
                namespace=other.namespace,
                cluster=cluster,
                pool=pools[i % 3],
                volume_type="block",
                capacity=1 << 30,
                snap_cap=0,
                state=EventState.AVAILABLE,
            )
            for i in range(60)
        ]
    Volume.objects.bulk_create(rows)
    tenant = Tenant.objects.get(uuid=TENANT)
    cluster = Cluster.objects.get(uuid=CLUSTER)
    pool = Pool.objects.first()
    queryset = Volume.objects.filter(
        tenant=tenant, cluster=cluster, pool=pool, name__icontains="bulk", state__in=LIVE_STATES
    ).order_by("-created", "-id")[:10]
    plan = queryset.explain()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE volumes_volume")
        # A tiny table may still be scanned sequentially; forbid that to see which index serves the query.
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            plan = queryset.explain()
            cursor.execute("SET enable_seqscan = on")
    assert re.search(r"volumes_vol_(live_)?tenant_cl", plan), plan
