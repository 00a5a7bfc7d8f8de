"""Reads on pools for the pool API: pages of a cluster's pools and one pool, with the figures its
answer shows (live volumes, their capacities and allocated bytes) in the same query."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from sharestore import errors
from volumes.choices import LIVE_STATES
from volumes.models import Cluster, Host, Pool, PoolMount, Tenant, Zone

LIVE = Q(volumes__state__in=LIVE_STATES)


def pool_output_queryset(queryset: QuerySet[Pool]) -> QuerySet[Pool]:
    """Everything a pool's answer reads: zone, mounting hosts, allowed tenants, volume sums."""
    return (
        queryset.select_related("zone")
        .prefetch_related(
            Prefetch("mounts", queryset=PoolMount.objects.select_related("host").order_by("host__uuid")),
            "tenants__namespace",
        )
        .annotate(
            volume_count=Count("volumes", filter=LIVE),
            allocated=Coalesce(Sum("volumes__capacity", filter=LIVE), Value(0)),
            used_bytes=Coalesce(Sum("volumes__used", filter=LIVE), Value(0))
            + Coalesce(Sum("volumes__snap_length", filter=LIVE), Value(0)),
        )
    )


def usable_by(queryset: QuerySet[Pool], tenant: Tenant | None) -> QuerySet[Pool]:
    """Pools the tenant may use (no tenant listed on a pool: every tenant); None: every pool."""
    if tenant is None:
        return queryset
    allowed = Pool.objects.filter(Q(tenants__isnull=True) | Q(tenants=tenant)).values("pk")
    return queryset.filter(pk__in=allowed)


def pool_list(
    *, cluster: Cluster, tenant: Tenant | None, filter_name: str, offset: int, limit: int
) -> tuple[list[Pool], int]:
    """One page of the cluster's pools (by name), those the tenant may use when one is given."""
    base = usable_by(Pool.objects.filter(cluster=cluster), tenant)
    if filter_name:
        base = base.filter(name__icontains=filter_name)
    total = base.count()
    page_ids = list(base.order_by("name", "pk").values_list("pk", flat=True)[offset : offset + limit])
    pools = pool_output_queryset(Pool.objects.filter(pk__in=page_ids)).order_by("name", "pk")
    return list(pools), total


def pool_detail(*, uuid, cluster: Cluster, tenant: Tenant | None) -> Pool:
    """One pool of the cluster with its figures; another tenant's pool answers like a missing one."""
    pool = pool_output_queryset(usable_by(Pool.objects.filter(uuid=uuid, cluster=cluster), tenant)).first()
    if pool is None:
        raise errors.PoolNotFound(uuid=uuid, cluster=cluster.uuid)
    return pool


def zone_get(*, uuid) -> Zone:
    zone = Zone.objects.filter(uuid=uuid).first()
    if zone is None:
        raise errors.ZoneNotFound(uuid=uuid)
    return zone


def hosts_get(*, uuids, cluster: Cluster) -> list[Host]:
    """The cluster's hosts with these UUIDs, in the order given; an unknown one is refused."""
    found = {str(h.uuid): h for h in Host.objects.filter(uuid__in=uuids, cluster=cluster)}
    for uuid in uuids:
        if str(uuid) not in found:
            raise errors.HostNotFound(uuid=uuid, cluster=cluster.uuid)
    return [found[str(uuid)] for uuid in dict.fromkeys(uuids)]


def tenants_get(*, uuids) -> list[Tenant]:
    """The tenants with these UUIDs; an unknown one is refused."""
    found = {str(t.uuid): t for t in Tenant.objects.filter(uuid__in=uuids)}
    for uuid in uuids:
        if str(uuid) not in found:
            raise errors.TenantNotFound(uuid=uuid)
    return [found[str(uuid)] for uuid in dict.fromkeys(uuids)]


def tenant_of_caller(tenant_id: int) -> Tenant:
    """The tenant a tenant-bound token acts for."""
    return Tenant.objects.select_related("namespace").get(pk=tenant_id)
