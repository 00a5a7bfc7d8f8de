"""Reads of tenant quotas: a tenant's limits and what it holds against them (the quota API, the
console and the quota checks of `volumes.services.quotas` read through these)."""

from __future__ import annotations

from django.db.models import Count, Q, Sum

from volumes.choices import LIVE_STATES, BackupStatus, SnapshotStatus
from volumes.models import Snapshot, Tenant, TenantQuota, Volume

# Quota name (API, command, errors) -> TenantQuota column.
QUOTA_FIELDS = {
    "volumes": "max_volumes",
    "bytes": "max_bytes",
    "snapshots": "max_snapshots",
    "backups": "max_backups",
}
# What counts against the quotas: what the tenant holds and is not on its way out. A volume or
# snapshot being deleted, a hidden snapshot layer (deleted, still backing others) and a backup being
# deleted, failed or deleted no longer count.
COUNTED_SNAPSHOT_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.CREATING, SnapshotStatus.ERROR]
COUNTED_BACKUP_STATUSES = [BackupStatus.STARTED, BackupStatus.RUNNING, BackupStatus.COMPLETED]


def tenant_usage(*, tenant_id: int, only=None) -> dict[str, int]:
    """What the tenant holds, per quota (`only`: just these quotas; one query each)."""
    keys = list(QUOTA_FIELDS) if only is None else list(only)
    usage: dict[str, int] = {}
    if "volumes" in keys or "bytes" in keys:
        live = Volume.objects.filter(tenant_id=tenant_id, state__in=LIVE_STATES).aggregate(
            count=Count("pk"), total=Sum("capacity")
        )
        usage["volumes"], usage["bytes"] = live["count"], live["total"] or 0
    if "snapshots" in keys:
        usage["snapshots"] = Snapshot.objects.filter(
            volume__tenant_id=tenant_id,
            volume__state__in=LIVE_STATES,
            status__in=COUNTED_SNAPSHOT_STATUSES,
        ).count()
    if "backups" in keys:
        # Through the reverse relation: volumes never imports the backups app.
        usage["backups"] = Tenant.objects.filter(pk=tenant_id).aggregate(
            n=Count("backups", filter=Q(backups__status__in=COUNTED_BACKUP_STATUSES))
        )["n"]
    return {k: usage[k] for k in keys}


def tenant_quota(*, tenant: Tenant) -> dict:
    """The tenant's limits (None = unlimited) and usage, per quota: `{name: {"limit", "used"}}`."""
    quota = TenantQuota.objects.filter(tenant=tenant).first()
    used = tenant_usage(tenant_id=tenant.pk)
    return {
        key: {"limit": getattr(quota, column) if quota else None, "used": used[key]}
        for key, column in QUOTA_FIELDS.items()
    }
