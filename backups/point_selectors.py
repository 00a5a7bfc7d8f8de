"""Reads on backup points for the platform's backup-point API: pages of them and one to change,
with `Ref` (the backups they hold) counted in the same query."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from backups.choices import BackupStatus
from backups.models import BackupPoint
from sharestore import errors
from volumes.models import Cluster, Tenant


def point_output_queryset(queryset: QuerySet[BackupPoint]) -> QuerySet[BackupPoint]:
    """Everything a listed backup point reads: its tenant and namespace, its backups' count."""
    return queryset.select_related("tenant", "tenant__namespace").annotate(
        ref=Count("backups", filter=~Q(backups__status=BackupStatus.DELETED))
    )


def point_list(
    *, cluster: Cluster, tenant: Tenant | None, filter_name: str, offset: int, limit: int
) -> tuple[list[BackupPoint], int]:
    """One page of the cluster's backup points by name: the tenant's and the shared ones when a
    tenant is given, every one otherwise."""
    base = BackupPoint.objects.filter(cluster=cluster)
    if tenant is not None:
        base = base.filter(Q(tenant__isnull=True) | Q(tenant=tenant))
    if filter_name:
        base = base.filter(name__icontains=filter_name)
    total = base.count()
    page = point_output_queryset(base.order_by("name", "pk"))[offset : offset + limit]
    return list(page), total


def point_for_change(
    *, uuid, cluster: Cluster, tenant: Tenant | None, allowed_tenant_id: int | None
) -> BackupPoint:
    """A backup point the caller may change: a tenant-bound caller only its own tenant's; a platform
    caller any of the cluster (the named tenant's or a shared one when it names a tenant)."""
    queryset = BackupPoint.objects.filter(uuid=uuid, cluster=cluster)
    if allowed_tenant_id is not None:
        queryset = queryset.filter(tenant_id=allowed_tenant_id)
    elif tenant is not None:
        queryset = queryset.filter(Q(tenant__isnull=True) | Q(tenant=tenant))
    point = queryset.first()
    if point is None:
        raise errors.BackupPointNotFound(uuid=uuid)
    return point
