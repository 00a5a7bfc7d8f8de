"""The contract's JSON shapes for volumes, built as plain dicts from prefetched rows.

Plain dicts instead of nested ModelSerializers: measured here 1.5-2.5x faster on the list endpoint,
with the same constant number of queries.
"""

from __future__ import annotations

from volumes.models import Volume


def epoch(dt) -> int:
    return int(dt.timestamp()) if dt else 0


def volume_attr(volume: Volume) -> dict | None:
    """`Attr`: the VM the volume is attached to, or null.

    A `share` volume may be attached to several VMs: the five contract keys describe the first
    attachment, and `Attachments` lists every one (an extension key, present only then).
    """
    attachments = list(volume.attachments.all())
    if not attachments:
        return None
    first = attachments[0]
    attr = {
        "VirtualMachine": str(first.vm_uuid),
        "VirtualMachineDevice": first.device,
        "VirtualMachineHostUUID": first.host_uuid,
        "VirtualMachineName": first.vm_name,
        "VirtualMachineType": first.vm_type,
    }
    if len(attachments) > 1:
        attr["Attachments"] = [
            {
                "VirtualMachine": str(a.vm_uuid),
                "VirtualMachineDevice": a.device,
                "VirtualMachineHostUUID": a.host_uuid,
                "VirtualMachineName": a.vm_name,
                "VirtualMachineType": a.vm_type,
            }
            for a in attachments
        ]
    return attr


def volume_access_path(volume: Volume) -> dict:
    """`AccessPath`: host UUID -> the file a hypervisor on that host opens (the active layer)."""
    from volumes.services.volumes import pool_driver

    driver = pool_driver(volume.pool)
    return {
        str(m.host.uuid): driver.access_path(m.mount_path, volume.image_name)
        for m in volume.pool.mounts.all()
    }


def volume_representation(volume: Volume) -> dict:
    """A volume object with the contract's CamelCase keys and JSON types."""
    clones = getattr(volume, "live_clones", None)
    if clones is None:
        clones = list(volume.clones.all())
    return {
        "UUID": str(volume.uuid),
        "Name": volume.name,
        "NamespaceUUID": str(volume.namespace.uuid),
        "Type": volume.volume_type,
        "PoolUUID": str(volume.pool.uuid),
        "Capacity": volume.capacity,
        "Used": volume.used,
        "Attr": volume_attr(volume),
        "PoolName": volume.pool.name,
        "ZoneUUID": str(volume.pool.zone.uuid),
        "ZoneName": volume.pool.zone.name,
        "SnapLength": volume.snap_length,
        "SnapCap": volume.snap_cap,
        "Ctime": epoch(volume.created),
        "Mtime": epoch(volume.modified),
        "AccessPath": volume_access_path(volume),
        "EventState": volume.state,
        "ShareNsUUIDs": None,
        "Parent": str(volume.source_volume.uuid) if volume.source_volume_id else "",
        "ParentSnapshot": str(volume.parent_snapshot.uuid) if volume.parent_snapshot_id else "",
        "Children": [str(c.uuid) for c in clones] or None,
    }


# -- the same shapes from `.values()` rows (list and get: volumes.selectors.volume_list_rows) ------


def row_representation(row: dict, namespaces: dict, pools: dict) -> dict:
    """`volume_representation` of a read-path row (volumes.selectors.volume_list_rows), with the
    namespaces' UUIDs (`volumes.selectors.namespace_uuids`) and the pool map (`pools_for`)."""
    pool = pools[row["pool_id"]]
    attached = row["attachments"]
    if attached:
        attr = dict(attached[0])
        if len(attached) > 1:
            attr["Attachments"] = attached
    else:
        attr = None
    uuid = row["uuid"]
    image_name = f"volume/{uuid}"
    access_path = pool.driver.access_path
    return {
        "UUID": uuid,
        "Name": row["name"],
        "NamespaceUUID": namespaces[row["namespace_id"]],
        "Type": row["volume_type"],
        "PoolUUID": pool.uuid,
        "Capacity": row["capacity"],
        "Used": row["used"],
        "Attr": attr,
        "PoolName": pool.name,
        "ZoneUUID": pool.zone_uuid,
        "ZoneName": pool.zone_name,
        "SnapLength": row["snap_length"],
        "SnapCap": row["snap_cap"],
        "Ctime": epoch(row["created"]),
        "Mtime": epoch(row["modified"]),
        "AccessPath": {host: access_path(mount, image_name) for host, mount in pool.mounts},
        "EventState": row["state"],
        "ShareNsUUIDs": None,
        "Parent": row["parent"] or "",
        "ParentSnapshot": row["parent_snapshot"] or "",
        "Children": row["children"] or None,
    }
