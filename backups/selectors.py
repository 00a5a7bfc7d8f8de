"""Reads on backup points and backups. Every lookup of a tenant's backup is scoped by tenant and
cluster, so another tenant's backup answers exactly like a missing one."""

from __future__ import annotations

import time

from django.db.models import F, Q, QuerySet, Sum

from backups.choices import SPACE_HOLDING_STATUSES, BackupPointStatus, BackupStatus
from backups.filtersets import BackupFilterSet
from backups.models import Backup, BackupPoint
from sharestore import errors
from volumes.models import Cluster, Tenant, Volume
from volumes.selectors import caller_scoped, first_or_raise, live_volume_get


def backup_point_get(*, uuid, cluster: Cluster, tenant: Tenant) -> BackupPoint:
    """A backup point of the cluster that the tenant may use (no tenant on the point: every tenant)."""
    points = BackupPoint.objects.filter(uuid=uuid, cluster=cluster).filter(
        Q(tenant__isnull=True) | Q(tenant=tenant)
    )
    point = first_or_raise(points, errors.BackupPointNotFound, uuid=uuid)
    if point.status != BackupPointStatus.HEALTHY:
        raise errors.BackupPointUnavailable(point=point.name, reason=f"marked {point.status}")
    return point


def volume_for_backup(
    *, uuid, cluster: Cluster, tenant: Tenant | None, allowed_tenant_id: int | None
) -> Volume:
    """The live volume to back up. backup/add names no tenant in the contract: a tenant-bound caller
    reaches its own volumes only; a platform caller any volume of the cluster, or the named tenant's."""
    return live_volume_get(uuid=uuid, cluster=cluster, tenant=tenant, allowed_tenant_id=allowed_tenant_id)


def backup_output_queryset(queryset: QuerySet[Backup]) -> QuerySet[Backup]:
    """Everything a backup's representation reads, in one query."""
    return queryset.select_related("tenant", "tenant__namespace", "cluster", "backup_point", "volume", "base")


def backup_get(
    *, uuid, cluster: Cluster, tenant: Tenant | None = None, allowed_tenant_id: int | None = None
) -> Backup:
    """A backup that is not deleted, of the tenant (when given) and the caller's tenant (when bound)."""
    queryset = Backup.objects.filter(uuid=uuid, cluster=cluster).exclude(status=BackupStatus.DELETED)
    queryset = caller_scoped(queryset, tenant=tenant, allowed_tenant_id=allowed_tenant_id)
    return first_or_raise(backup_output_queryset(queryset), errors.BackupNotFound, uuid=uuid)


def backup_list(
    *,
    cluster: Cluster,
    tenant: Tenant | None,
    allowed_tenant_id: int | None,
    filters: dict,
    offset: int,
    limit: int,
) -> tuple[list[Backup], int]:
    """One page of backups (not deleted) in the cluster, newest first, and the total count."""
    base = Backup.objects.filter(cluster=cluster).exclude(status=BackupStatus.DELETED)
    base = caller_scoped(base, tenant=tenant, allowed_tenant_id=allowed_tenant_id)
    queryset = BackupFilterSet(filters, queryset=base).qs.order_by("-created", "-id")
    total = queryset.count()
    return list(backup_output_queryset(queryset)[offset : offset + limit]), total


def backup_point_used(point: BackupPoint) -> int:
    """Bytes its backups occupy as recorded: every backup whose file exists or is being written
    (SPACE_HOLDING_STATUSES); a started one's size is its reservation."""
    total = Backup.objects.filter(backup_point=point, status__in=SPACE_HOLDING_STATUSES).aggregate(
        total=Sum("size")
    )["total"]
    return total or 0


def backups_expired(*, now: int | None = None) -> list[Backup]:
    """Backups whose ExpiredTime has passed and that are not protected, oldest first."""
    now = int(time.time()) if now is None else now
    return list(
        Backup.objects.filter(
            status__in=[BackupStatus.COMPLETED, BackupStatus.FAILED],
            protected=False,
            expired_time__gt=0,
            expired_time__lte=now,
        )
        .select_related("backup_point")
        .order_by("created", "id")
    )


def backups_to_verify(*, limit: int) -> list[Backup]:
    """Completed backups, never verified first, then the longest ago."""
    return list(
        Backup.objects.filter(status=BackupStatus.COMPLETED)
        .select_related("backup_point")
        .order_by(F("verified_at").asc(nulls_first=True), "created", "id")[:limit]
    )
