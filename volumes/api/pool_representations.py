"""The platform's pool object, built from a pool read by `volumes.pool_selectors`."""

from __future__ import annotations

from decimal import Decimal

from sharestore.api.envelope import scope_fields
from volumes.models import Pool
from volumes.services.pool_types import pool_type_code


def ratio_text(ratio: Decimal) -> str:
    """`Attr.overAllocationThreshold`: the ratio as the platform writes it ("1.0", "2.0", "1.25")."""
    text = format(Decimal(ratio).normalize(), "f")
    return text if "." in text else f"{text}.0"


def epoch_times(obj) -> dict:
    """`Ctime` and `Mtime`: when the row was created and last changed, in epoch seconds."""
    return {"Ctime": int(obj.created.timestamp()), "Mtime": int(obj.modified.timestamp())}


def pool_representation(pool: Pool) -> dict:
    """Every key of the platform's pool object, with its JSON type (docs/api.md, Pools)."""
    hosts = [str(m.host.uuid) for m in pool.mounts.all()]
    tenants = sorted(pool.tenants.all(), key=lambda t: t.name)
    namespaces = [str(t.namespace.uuid) for t in tenants if hasattr(t, "namespace")]
    return {
        "UUID": str(pool.uuid),
        "Name": pool.name,
        "Type": pool_type_code(pool.pool_type),
        "NamespaceUUID": "",
        "ZoneUUID": str(pool.zone.uuid),
        "ZoneName": pool.zone.name,
        "MachineUUID": "",
        "IP": pool.ip,
        "Port": pool.port,
        "Source": pool.source,
        "Username": pool.username,
        # Never stored, never returned: no driver of ours logs in to its storage.
        "Password": "",
        **epoch_times(pool),
        "VolumeTotalCount": pool.volume_count,
        "AvailHosts": hosts or None,
        "Volumes": None,
        "Capacity": pool.capacity,
        "Used": int(pool.used_bytes),
        "AllocatedCapacity": int(pool.allocated),
        # The tenants the pool is limited to (their namespaces and names); null: every tenant.
        "ShareNsUUIDs": namespaces or None,
        "ShareNsNames": [t.name for t in tenants] or None,
        "Attr": {"overAllocationThreshold": ratio_text(pool.overcommit_ratio)},
        "Status": pool.status,
        "LimitHost": pool.limit_host,
    }


def pool_wrapper(pool: dict | None, *, cluster, tenant=None) -> dict:
    """The wrapper of get/create/delete/set/status/check answers."""
    return {
        "pool": pool,
        **scope_fields(cluster, tenant),
        "PoolTypes": None,
    }
