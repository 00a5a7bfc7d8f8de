"""Reads on volumes and their surroundings. Every lookup of a tenant's object is scoped by tenant
and cluster, so another tenant's object answers exactly like a missing one."""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Prefetch, Q, QuerySet

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import Operation
from sharestore.core.services import readcache
from volumes.choices import BACKUP_READING_STATUSES, LIVE_STATES, EventState, SnapshotStatus
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


def first_or_raise(queryset: QuerySet, not_found: type[errors.ServiceError], **params):
    """The queryset's first row, or `not_found(**params)` (a NotFound error) when it has none."""
    found = queryset.first()
    if found is None:
        raise not_found(**params)
    return found


def caller_scoped(queryset: QuerySet, *, tenant: Tenant | None, allowed_tenant_id: int | None) -> QuerySet:
    """Rows for a request that may name no tenant: only the named `tenant`'s when given, and a
    tenant-bound caller (`allowed_tenant_id`) reaches its own tenant's only."""
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    if allowed_tenant_id is not None:
        queryset = queryset.filter(tenant_id=allowed_tenant_id)
    return queryset


def cluster_get(*, uuid) -> Cluster:
    clusters = Cluster.objects.select_related("zone").filter(uuid=uuid)
    return first_or_raise(clusters, errors.ClusterNotFound, uuid=uuid)


def tenant_get(*, uuid, allowed_tenant_id: int | None = None) -> Tenant:
    """The tenant, if the caller may act for it (allowed_tenant_id None: a platform caller)."""
    tenant = Tenant.objects.select_related("namespace").filter(uuid=uuid).first()
    if tenant is None or (allowed_tenant_id is not None and tenant.pk != allowed_tenant_id):
        raise errors.TenantNotFound(uuid=uuid)
    return tenant


def pool_get(*, uuid, cluster: Cluster, tenant: Tenant) -> Pool:
    """A pool of the cluster that the tenant may use (an empty tenant list means every tenant)."""
    pools = Pool.objects.select_related("zone").filter(uuid=uuid, cluster=cluster)
    pool = first_or_raise(pools, errors.PoolNotFound, uuid=uuid, cluster=cluster.uuid)
    allowed = list(pool.tenants.values_list("pk", flat=True))
    if allowed and tenant.pk not in allowed:
        raise errors.PoolNotFound(uuid=uuid, cluster=cluster.uuid)
    return pool


def volume_output_queryset(queryset: QuerySet[Volume]) -> QuerySet[Volume]:
    """Everything a volume's representation reads, fetched in a constant number of queries."""
    return queryset.select_related(
        "tenant", "namespace", "cluster", "pool", "pool__zone", "source_volume", "parent_snapshot"
    ).prefetch_related(
        Prefetch("pool__mounts", queryset=PoolMount.objects.select_related("host").order_by("host__uuid")),
        Prefetch("attachments", queryset=VolumeAttachment.objects.order_by("created", "id")),
        Prefetch(
            "clones",
            queryset=Volume.objects.filter(state__in=LIVE_STATES)
            .only("uuid", "source_volume_id")
            .order_by("created", "id"),
            to_attr="live_clones",
        ),
    )


def volume_get(*, uuid, tenant: Tenant, cluster: Cluster, include_deleting: bool = False) -> Volume:
    queryset = Volume.objects.filter(uuid=uuid, tenant=tenant, cluster=cluster)
    if not include_deleting:
        queryset = queryset.filter(state__in=LIVE_STATES)
    return first_or_raise(volume_output_queryset(queryset), errors.VolumeNotFound, uuid=uuid)


def live_volume_get(
    *, uuid, cluster: Cluster, tenant: Tenant | None = None, allowed_tenant_id: int | None
) -> Volume:
    """A live volume of the cluster for a request that may name no tenant (clone, backup add): only the
    named `tenant`'s when given; a tenant-bound caller (`allowed_tenant_id`) reaches its own tenant's
    only, another tenant's volume answers like a missing one."""
    queryset = Volume.objects.select_related("tenant", "tenant__namespace", "cluster", "pool").filter(
        uuid=uuid, cluster=cluster, state__in=LIVE_STATES
    )
    queryset = caller_scoped(queryset, tenant=tenant, allowed_tenant_id=allowed_tenant_id)
    return first_or_raise(queryset, errors.VolumeNotFound, uuid=uuid)


# -- the read path of list and get (issue 12) -----------------------------------------------------
# Tenants, clusters and pools change rarely and are read by every request: they come from small
# per-process maps kept at most SHARESTORE_READ_CACHE_SECONDS (sharestore.core.services.readcache).
# The volume rows, their attachments, live clones and the count: one statement on PostgreSQL, one
# ORM query per kind elsewhere (docs/api.md, "Read path").

_scope_cache = readcache.TTLCache()
_pool_cache = readcache.TTLCache(max_entries=4)
readcache.clear_on_change(Tenant, Namespace, Cluster, Zone, Pool, PoolMount, Host)

# The volume's own columns, as both read paths name them.
VOLUME_COLUMNS = (
    "id",
    "uuid",
    "name",
    "volume_type",
    "pool_id",
    "namespace_id",
    "capacity",
    "used",
    "snap_length",
    "snap_cap",
    "created",
    "modified",
    "state",
)
VOLUME_ROW_FIELDS = (
    *VOLUME_COLUMNS,
    "source_volume_id",
    "source_volume__uuid",
    "parent_snapshot_id",
    "parent_snapshot__uuid",
)


def cached_scope(*, tenant_uuid, cluster_uuid, allowed_tenant_id: int | None) -> tuple[Tenant, Cluster]:
    """`cluster_get` then `tenant_get` (same errors, same order) through the per-process cache.

    The instances returned are shared between requests: read them, never change them.
    """
    key = ("cluster", str(cluster_uuid))
    cluster = _scope_cache.get(key)
    if cluster is None:
        cluster = cluster_get(uuid=cluster_uuid)
        _scope_cache.set(key, cluster)
    key = ("tenant", str(tenant_uuid))
    tenant = _scope_cache.get(key)
    if tenant is None:
        tenant = Tenant.objects.select_related("namespace").filter(uuid=tenant_uuid).first()
        if tenant is None:
            raise errors.TenantNotFound(uuid=tenant_uuid)
        _scope_cache.set(key, tenant)
    if allowed_tenant_id is not None and tenant.pk != allowed_tenant_id:
        raise errors.TenantNotFound(uuid=tenant_uuid)
    return tenant, cluster


class PoolInfo:
    """What a volume's representation reads of its pool: names, zone, and where each host opens it."""

    __slots__ = ("driver", "mounts", "name", "uuid", "zone_name", "zone_uuid")

    def __init__(self, pool: Pool, mounts: list[tuple[str, str]]):
        from volumes.services.volumes import pool_driver

        self.uuid = str(pool.uuid)
        self.name = pool.name
        self.zone_uuid = str(pool.zone.uuid)
        self.zone_name = pool.zone.name
        self.mounts = mounts  # (host UUID, mount path), by host UUID
        self.driver = pool_driver(pool)


def pool_map(*, need_id: int | None = None, need_uuid: str | None = None) -> dict:
    """{"by_id": {pk: PoolInfo}, "by_uuid": {uuid: pk}} of every pool, reloaded when a pool asked for
    is not in it yet (two queries, at most once per SHARESTORE_READ_CACHE_SECONDS per process)."""
    pools = _pool_cache.get("pools")
    if (
        pools is not None
        and (need_id is None or need_id in pools["by_id"])
        and (need_uuid is None or need_uuid in pools["by_uuid"])
    ):
        return pools
    mounts: dict[int, list[tuple[str, str]]] = {}
    for pool_id, host_uuid, mount_path in PoolMount.objects.order_by("host__uuid").values_list(
        "pool_id", "host__uuid", "mount_path"
    ):
        mounts.setdefault(pool_id, []).append((str(host_uuid), mount_path))
    by_id = {p.pk: PoolInfo(p, mounts.get(p.pk, [])) for p in Pool.objects.select_related("zone")}
    pools = {"by_id": by_id, "by_uuid": {info.uuid: pk for pk, info in by_id.items()}}
    _pool_cache.set("pools", pools)
    return pools


def pools_for(rows: list[dict]) -> dict:
    """The pool map's {pk: PoolInfo}, reloaded if one of the rows' pools is not in it yet."""
    pools = pool_map()["by_id"]
    for row in rows:
        if row["pool_id"] not in pools:
            return pool_map(need_id=row["pool_id"])["by_id"]
    return pools


def namespace_uuids(*, tenant: Tenant, rows: list[dict]) -> dict[int, str]:
    """{namespace id: UUID string} for the rows: the tenant's namespace (loaded with the tenant) and,
    for a row in any other (the services never make one), one query."""
    known = {}
    try:
        known[tenant.namespace.pk] = str(tenant.namespace.uuid)
    except Namespace.DoesNotExist:
        pass
    missing = {row["namespace_id"] for row in rows} - known.keys()
    if missing:
        others = Namespace.objects.filter(pk__in=missing).values_list("pk", "uuid")
        known.update((pk, str(uuid)) for pk, uuid in others)
    return known


# A row of the read path: VOLUME_ROW_FIELDS' values with uuid as a string, plus
#   parent, parent_snapshot: UUID strings or None,
#   attachments: [{contract keys of an attachment}] oldest first, or None,
#   children: [live clone UUID strings] oldest first, or None.


def _finish_orm_rows(rows: list[dict]) -> list[dict]:
    """Attachments and live clones of `.values()` rows: one `IN` query each."""
    if not rows:
        return rows
    ids = [r["id"] for r in rows]
    attachments: dict[int, list[dict]] = {}
    for a in (
        VolumeAttachment.objects.filter(volume_id__in=ids)
        .order_by("created", "id")
        .values_list("volume_id", "vm_uuid", "device", "host_uuid", "vm_name", "vm_type")
    ):
        attachments.setdefault(a[0], []).append(
            {
                "VirtualMachine": str(a[1]),
                "VirtualMachineDevice": a[2],
                "VirtualMachineHostUUID": a[3],
                "VirtualMachineName": a[4],
                "VirtualMachineType": a[5],
            }
        )
    clones: dict[int, list[str]] = {}
    for source_id, uuid in (
        Volume.objects.filter(source_volume_id__in=ids, state__in=LIVE_STATES)
        .order_by("created", "id")
        .values_list("source_volume_id", "uuid")
    ):
        clones.setdefault(source_id, []).append(str(uuid))
    for row in rows:
        row["uuid"] = str(row["uuid"])
        row["parent"] = str(row["source_volume__uuid"]) if row["source_volume_id"] else None
        row["parent_snapshot"] = str(row["parent_snapshot__uuid"]) if row["parent_snapshot_id"] else None
        row["attachments"] = attachments.get(row["id"])
        row["children"] = clones.get(row["id"])
    return rows


# PostgreSQL: the whole answer in one statement. The page's ids are picked over the partial index of
# live volumes (index-only, so a deep page walks index entries, not rows); attachments and live clones
# are aggregated per row by correlated sub-selects on their foreign-key indexes; the count is an
# uncorrelated sub-select (one index-only scan). Elsewhere (SQLite) the same rows come from the ORM
# in one query per kind.
_LIVE = ", ".join(str(int(s)) for s in LIVE_STATES)
_ROW_SQL = f"""
SELECT v.id, v.uuid::text, v.name, v.volume_type, v.pool_id, v.namespace_id, v.capacity, v.used,
       v.snap_length, v.snap_cap, v.created, v.modified, v.state, sv.uuid::text, ps.uuid::text,
       (SELECT json_agg(json_build_object(
                 'VirtualMachine', a.vm_uuid::text, 'VirtualMachineDevice', a.device,
                 'VirtualMachineHostUUID', a.host_uuid, 'VirtualMachineName', a.vm_name,
                 'VirtualMachineType', a.vm_type) ORDER BY a.created, a.id)
          FROM volumes_volumeattachment a WHERE a.volume_id = v.id),
       (SELECT array_agg(c.uuid::text ORDER BY c.created, c.id)
          FROM volumes_volume c WHERE c.source_volume_id = v.id AND c.state IN ({_LIVE})){{count}}
  FROM volumes_volume v
  LEFT JOIN volumes_volume sv ON sv.id = v.source_volume_id
  LEFT JOIN volumes_snapshot ps ON ps.id = v.parent_snapshot_id
"""
_ROW_KEYS = (
    *VOLUME_COLUMNS,
    "parent",
    "parent_snapshot",
    "attachments",
    "children",
)
_GET_SQL = _ROW_SQL.format(count="") + (
    f" WHERE v.uuid = %s AND v.tenant_id = %s AND v.cluster_id = %s AND v.state IN ({_LIVE})"
)


def _scope_where(tenant: Tenant, cluster: Cluster, pool_id: int | None, name: str) -> tuple[str, list]:
    where, params = f"tenant_id = %s AND cluster_id = %s AND state IN ({_LIVE})", [tenant.pk, cluster.pk]
    if pool_id is not None:
        where += " AND pool_id = %s"
        params.append(pool_id)
    if name:
        # As Django's `icontains` on PostgreSQL.
        where += " AND UPPER(name::text) LIKE UPPER(%s)"
        params.append(f"%{connection.ops.prep_for_like_query(name)}%")
    return where, params


def _pg_rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _as_row(values: tuple) -> dict:
    return dict(zip(_ROW_KEYS, values, strict=False))  # a page's rows end with the count


def volume_get_row(*, uuid, tenant: Tenant, cluster: Cluster) -> dict:
    """The live volume's row (see above), scoped like `volume_get`."""
    if connection.vendor == "postgresql":
        found = _pg_rows(_GET_SQL, [str(uuid), tenant.pk, cluster.pk])
        if not found:
            raise errors.VolumeNotFound(uuid=uuid)
        return _as_row(found[0])
    rows = Volume.objects.filter(
        uuid=uuid, tenant_id=tenant.pk, cluster_id=cluster.pk, state__in=LIVE_STATES
    ).values(*VOLUME_ROW_FIELDS)
    return _finish_orm_rows([first_or_raise(rows, errors.VolumeNotFound, uuid=uuid)])[0]


def volume_list_rows(
    *, tenant: Tenant, cluster: Cluster, filters: dict, offset: int, limit: int
) -> tuple[list[dict], int]:
    """`volume_list` as rows: one page of the tenant's live volumes in the cluster, newest first, and
    the total count; one statement on PostgreSQL (two when the page is empty)."""
    pool_id = None
    if filters.get("filter_pool_uuid"):
        pool_uuid = str(uuid_lib.UUID(str(filters["filter_pool_uuid"])))
        pool_id = pool_map(need_uuid=pool_uuid)["by_uuid"].get(pool_uuid)
        if pool_id is None:
            return [], 0
    name = filters.get("filter_name") or ""
    if connection.vendor == "postgresql":
        where, params = _scope_where(tenant, cluster, pool_id, name)
        sql = (
            _ROW_SQL.format(count=f",\n       (SELECT COUNT(*) FROM volumes_volume WHERE {where})")
            + f" WHERE v.id IN (SELECT id FROM volumes_volume WHERE {where}"
            + " ORDER BY created DESC, id DESC LIMIT %s OFFSET %s)\n ORDER BY v.created DESC, v.id DESC"
        )
        found = _pg_rows(sql, params + params + [limit, offset])
        if found:
            return [_as_row(r) for r in found], found[0][-1]
        return [], _pg_rows(f"SELECT COUNT(*) FROM volumes_volume WHERE {where}", params)[0][0]
    base = Volume.objects.filter(tenant_id=tenant.pk, cluster_id=cluster.pk, state__in=LIVE_STATES)
    if pool_id is not None:
        base = base.filter(pool_id=pool_id)
    if name:
        base = base.filter(name__icontains=name)
    page_ids = base.order_by("-created", "-id").values("id")[offset : offset + limit]
    rows = list(Volume.objects.filter(id__in=page_ids).order_by("-created", "-id").values(*VOLUME_ROW_FIELDS))
    # A page neither empty nor full tells the total itself.
    total = offset + len(rows) if rows and len(rows) < limit else base.count()
    return _finish_orm_rows(rows), total


# -- snapshots -----------------------------------------------------------------------------------


def snapshot_get(*, volume: Volume, uuid) -> Snapshot:
    """A snapshot of this (already tenant-scoped) volume; hidden layers are not snapshots any more."""
    snapshots = Snapshot.objects.filter(volume=volume, uuid=uuid).exclude(status=SnapshotStatus.HIDDEN)
    return first_or_raise(snapshots, errors.SnapshotNotFound, uuid=uuid, volume=volume.uuid)


def snapshot_rows(*, volume: Volume) -> list[Snapshot]:
    """Every snapshot row of the volume, hidden ones too, oldest first, with what reads each layer counted.

    `clone_count`: live linked clones on the layer; `backup_count`: backups reading it now.
    """
    return list(
        Snapshot.objects.filter(volume=volume)
        .annotate(
            clone_count=Count("linked_clones", filter=Q(linked_clones__state__in=LIVE_STATES), distinct=True),
            backup_count=Count(
                "backups", filter=Q(backups__status__in=BACKUP_READING_STATUSES), distinct=True
            ),
        )
        .order_by("created", "id")
    )


def snapshot_dependents(*, snapshot: Snapshot) -> tuple[list[str], list[str]]:
    """(live linked clones, reading backups) of one snapshot, as UUID strings: what `Ref` counts."""
    clones = Volume.objects.filter(parent_snapshot=snapshot, state__in=LIVE_STATES).order_by("created", "id")
    backups = (
        Snapshot.objects.filter(pk=snapshot.pk, backups__status__in=BACKUP_READING_STATUSES)
        .order_by("backups__created")
        .values_list("backups__uuid", flat=True)
    )
    return [str(u) for u in clones.values_list("uuid", flat=True)], [str(u) for u in backups]


def linked_family(*, volume: Volume) -> set[int]:
    """The volume and every live linked clone below it, at any depth: whatever reads a layer of one of
    them reads down through the volume's layers too."""
    family, frontier = {volume.pk}, {volume.pk}
    while frontier:
        below = Volume.objects.filter(parent_snapshot__volume_id__in=frontier, state__in=LIVE_STATES)
        frontier = set(below.values_list("pk", flat=True)) - family
        family |= frontier
    return family


@dataclass(frozen=True)
class LayerReader:
    """One reader of a volume's snapshot layers, and the queued or running operation reading them."""

    noun: str  # "backup", "clone" (being copied or linked), "linked clone" (being flattened)
    uuid: uuid_lib.UUID
    snapshot_name: str | None  # the snapshot a backup reads
    operation: Operation | None  # None when no operation runs for it (a row left by hand)


# The operations that read a volume's snapshot layers while they run (the refusals name them).
READER_OPERATION_KINDS = [
    OperationKind.BACKUP_CREATE,
    OperationKind.CLONE_FULL,
    OperationKind.CLONE_LINKED,
    OperationKind.FLATTEN,
]


def volume_snapshot_readers(*, volume: Volume) -> list[LayerReader]:
    """What reads any of the volume's snapshot layers right now: running backups, clones being copied and
    linked clones being flattened, of this volume or of linked clones below it (they read its layers),
    each with the operation doing the reading."""
    family = linked_family(volume=volume)
    backups = list(
        Snapshot.objects.filter(volume_id__in=family, backups__status__in=BACKUP_READING_STATUSES)
        .order_by("backups__created")
        .values_list("backups__uuid", "name")
    )
    cloning = list(
        Volume.objects.filter(
            Q(source_volume_id__in=family) | Q(parent_snapshot__volume_id__in=family),
            state=EventState.CLONING,
        )
        .order_by("created", "id")
        .values_list("uuid", flat=True)
    )
    flattening = list(
        Volume.objects.filter(pk__in=family - {volume.pk}, state=EventState.FLATTENING)
        .order_by("created", "id")
        .values_list("uuid", flat=True)
    )
    targets = [b for b, _ in backups] + cloning + flattening
    operations = {
        operation.target_uuid: operation
        for operation in Operation.objects.filter(
            target_uuid__in=targets, kind__in=READER_OPERATION_KINDS, state__in=ACTIVE_OPERATION_STATES
        ).order_by("created", "id")
    }
    return (
        [LayerReader("backup", b, name, operations.get(b)) for b, name in backups]
        + [LayerReader("clone", c, None, operations.get(c)) for c in cloning]
        + [LayerReader("linked clone", c, None, operations.get(c)) for c in flattening]
    )


def operation_get(*, uuid, tenant: Tenant, cluster: Cluster) -> Operation:
    """An operation on one of the tenant's volumes in the cluster (a backup's: its volume's); another
    tenant's answers OperationNotFound exactly like a missing one."""
    operations = Operation.objects.select_related("volume").filter(
        uuid=uuid, volume__tenant=tenant, volume__cluster=cluster
    )
    return first_or_raise(operations, errors.OperationNotFound, uuid=uuid)
