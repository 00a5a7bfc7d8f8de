"""Reads on volumes and their surroundings. Every lookup of a tenant's object is scoped by tenant
and cluster, so another tenant's object answers exactly like a missing one."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet

from sharestore import errors
from volumes.choices import BACKUP_READING_STATUSES, LIVE_STATES, EventState, SnapshotStatus
from volumes.filtersets import VolumeFilterSet
from volumes.models import Cluster, Pool, PoolMount, Snapshot, Tenant, Volume, VolumeAttachment


def cluster_get(*, uuid) -> Cluster:
    cluster = Cluster.objects.select_related("zone").filter(uuid=uuid).first()
    if cluster is None:
        raise errors.ClusterNotFound(uuid=uuid)
    return cluster


def tenant_get(*, uuid, allowed_tenant_id: int | None = None) -> Tenant:
    """The tenant, if the caller may act for it (allowed_tenant_id None: a platform caller)."""
    tenant = Tenant.objects.select_related("namespace").filter(uuid=uuid).first()
    if tenant is None or (allowed_tenant_id is not None and tenant.pk != allowed_tenant_id):
        raise errors.TenantNotFound(uuid=uuid)
    return tenant


def pool_get(*, uuid, cluster: Cluster, tenant: Tenant) -> Pool:
    """A pool of the cluster that the tenant may use (an empty tenant list means every tenant)."""
    pool = Pool.objects.select_related("zone").filter(uuid=uuid, cluster=cluster).first()
    if pool is None:
        raise errors.PoolNotFound(uuid=uuid, cluster=cluster.uuid)
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
        Prefetch("clones", queryset=Volume.objects.filter(state__in=LIVE_STATES).only("uuid", "source_volume_id").order_by("created", "id"), to_attr="live_clones"),
    )


def volume_get(*, uuid, tenant: Tenant, cluster: Cluster, include_deleting: bool = False) -> Volume:
    queryset = Volume.objects.filter(uuid=uuid, tenant=tenant, cluster=cluster)
    if not include_deleting:
        queryset = queryset.filter(state__in=LIVE_STATES)
    volume = volume_output_queryset(queryset).first()
    if volume is None:
        raise errors.VolumeNotFound(uuid=uuid)
    return volume


def volume_list(*, tenant: Tenant, cluster: Cluster, filters: dict, offset: int, limit: int) -> tuple[list[Volume], int]:
    """One page of the tenant's live volumes in the cluster, newest first, and the total count."""
    base = Volume.objects.filter(tenant=tenant, cluster=cluster, state__in=LIVE_STATES)
    queryset = VolumeFilterSet(filters, queryset=base).qs.order_by("-created", "-id")
    total = queryset.count()
    page = list(volume_output_queryset(queryset)[offset : offset + limit])
    return page, total


# -- snapshots -----------------------------------------------------------------------------------



def snapshot_get(*, volume: Volume, uuid) -> Snapshot:
    """A snapshot of this (already tenant-scoped) volume; hidden layers are not snapshots any more."""
    snapshot = Snapshot.objects.filter(volume=volume, uuid=uuid).exclude(status=SnapshotStatus.HIDDEN).first()
    if snapshot is None:
        raise errors.SnapshotNotFound(uuid=uuid, volume=volume.uuid)
    return snapshot


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


def volume_snapshot_readers(*, volume: Volume) -> list[str]:
    """What reads any of the volume's snapshot layers right now: running backups, clones being copied and
    linked clones being flattened, of this volume or of linked clones below it (they read its layers)."""
    family = linked_family(volume=volume)
    backups = (
        Snapshot.objects.filter(volume_id__in=family, backups__status__in=BACKUP_READING_STATUSES)
        .order_by("backups__created")
        .values_list("backups__uuid", "name")
    )
    cloning = Volume.objects.filter(
        Q(source_volume_id__in=family) | Q(parent_snapshot__volume_id__in=family), state=EventState.CLONING
    ).values_list("uuid", flat=True)
    flattening = (
        Volume.objects.filter(pk__in=family - {volume.pk}, state=EventState.FLATTENING)
        .order_by("created", "id")
        .values_list("uuid", flat=True)
    )
    return (
        [f"backup {b} (of snapshot {name!r})" for b, name in backups]
        + [f"clone {c} (being copied)" for c in cloning]
        + [f"linked clone {c} (being flattened)" for c in flattening]
    )
