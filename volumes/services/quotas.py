"""Tenant quotas: set a tenant's limits, and check them inside the transaction that reserves a new
volume, snapshot or backup (the console, `manage.py set_quota` and the quota API call `quota_set`).

A check locks the tenant's quota row (`select_for_update`), counts what the tenant holds, and raises
the quota's own error when the request would go over; the caller then creates its row in the same
transaction, so two concurrent requests that would each fit alone cannot both pass: the second waits
for the first to commit and counts its row. A tenant without a quota row, or a null limit, is
unlimited (nothing to lock: no limit can be crossed).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from sharestore import errors
from sharestore.core.services.state import audit
from volumes.models import Tenant, TenantQuota
from volumes.quota_selectors import QUOTA_FIELDS, tenant_usage

# English and Chinese names of each quota in its refusal.
_NAMES = {
    "volumes": ("volume count", "卷数量", errors.VolumeQuotaExceeded),
    "bytes": ("capacity (bytes)", "容量（字节）", errors.CapacityQuotaExceeded),
    "snapshots": ("snapshot count", "快照数量", errors.SnapshotQuotaExceeded),
    "backups": ("backup count", "备份数量", errors.BackupQuotaExceeded),
}


# Counts are 32-bit columns, bytes 64-bit.
MAX_LIMIT = {"volumes": 2**31 - 1, "bytes": 2**63 - 1, "snapshots": 2**31 - 1, "backups": 2**31 - 1}


def _validate_limit(value, *, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT[field]:
        raise errors.InvalidParameter(
            field=field,
            reason=f"must be an integer from 0 to {MAX_LIMIT[field]}, or null for unlimited",
            reason_cn=f"必须是 0 到 {MAX_LIMIT[field]} 之间的整数，或 null 表示不限",
        )
    return value


@transaction.atomic
def quota_set(*, actor: str, tenant: Tenant, **limits) -> TenantQuota:
    """Set some of the tenant's limits (`volumes`, `bytes`, `snapshots`, `backups`; None = unlimited);
    limits not named keep their value. Lowering a limit under what the tenant holds is allowed: it
    only refuses new objects."""
    unknown = sorted(set(limits) - set(QUOTA_FIELDS))
    if unknown:
        raise errors.InvalidParameter(
            field=unknown[0], reason="not a quota (volumes, bytes, snapshots, backups)"
        )
    values = {QUOTA_FIELDS[k]: _validate_limit(v, field=k) for k, v in limits.items()}
    quota, _created = TenantQuota.objects.select_for_update().get_or_create(tenant=tenant)
    changes = [f"{k}: {getattr(quota, c)} -> {values[c]}" for k, c in QUOTA_FIELDS.items() if c in values]
    for column, value in values.items():
        setattr(quota, column, value)
    quota.modified = timezone.now()
    quota.save()
    message = ", ".join(changes) + " (None: unlimited)"
    audit(actor=actor, action="tenant.quota", object_type="tenant", object_uuid=tenant.uuid, message=message)
    return quota


def quota_check(
    *, tenant: Tenant | int, volumes: int = 0, bytes: int = 0, snapshots: int = 0, backups: int = 0
):
    """Refuse (QuotaExceeded subclasses) unless the tenant can hold this much more. Call inside the
    transaction that then creates the object: the quota row stays locked until it commits."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    quota = TenantQuota.objects.select_for_update().filter(tenant_id=tenant_id).first()
    if quota is None:
        return
    requested = {"volumes": volumes, "bytes": bytes, "snapshots": snapshots, "backups": backups}
    wanted = [k for k, n in requested.items() if n and getattr(quota, QUOTA_FIELDS[k]) is not None]
    if not wanted:
        return
    used = tenant_usage(tenant_id=tenant_id, only=wanted)
    for key in wanted:
        limit = getattr(quota, QUOTA_FIELDS[key])
        if used[key] + requested[key] > limit:
            name, name_cn, error = _NAMES[key]
            raise error(
                tenant=quota.tenant.uuid,
                quota=name,
                quota_cn=name_cn,
                limit=limit,
                used=used[key],
                requested=requested[key],
                over=used[key] + requested[key] - limit,
            )
