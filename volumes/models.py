"""Models of the volumes app: topology (zone, cluster, host), tenancy, pools, volumes and snapshots."""

from __future__ import annotations

import uuid as uuid_lib

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from volumes import choices

__all__ = [
    "Zone",
    "Cluster",
    "Host",
    "Tenant",
    "Namespace",
    "Pool",
    "PoolMount",
    "Volume",
    "VolumeAttachment",
    "Snapshot",
    "TenantQuota",
]


class NamedModel(models.Model):
    """A row known by its UUID and shown by its name."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    name = models.CharField(max_length=128, verbose_name=_("name"))

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return self.name


def location_constraints() -> list[models.BaseConstraint]:
    """What every storage location (a pool, a backup point) keeps: a name unique in its cluster and a
    capacity that is not negative."""
    return [
        models.UniqueConstraint(
            fields=["cluster", "name"], name="%(app_label)s_%(class)s_unique_cluster_name"
        ),
        models.CheckConstraint(
            condition=Q(capacity__gte=0), name="%(app_label)s_%(class)s_capacity_nonnegative"
        ),
    ]


class Zone(NamedModel):
    """An availability zone."""

    class Meta(NamedModel.Meta):
        verbose_name = _("zone")
        verbose_name_plural = _("zones")


class Cluster(NamedModel):
    """A virtualization cluster; every API request names one."""

    mode = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text=_("The contract's cluster_mode."),
        verbose_name=_("mode"),
    )
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="clusters", verbose_name=_("zone"))

    class Meta(NamedModel.Meta):
        verbose_name = _("cluster")
        verbose_name_plural = _("clusters")


class Host(models.Model):
    """A hypervisor host that mounts pools; AccessPath is keyed by host UUID."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    name = models.CharField(max_length=128, blank=True, default="", verbose_name=_("name"))
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="hosts", verbose_name=_("cluster")
    )
    queue = models.CharField(
        max_length=160,
        blank=True,
        default="",
        help_text=_(
            "django-q2 queue its storage worker listens on (host-<SHARESTORE_HOST>); empty: no worker."
        ),
        verbose_name=_("queue"),
    )
    last_seen = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Last heartbeat of a storage worker running on this host."),
        verbose_name=_("last seen"),
    )

    class Meta:
        verbose_name = _("host")
        verbose_name_plural = _("hosts")
        ordering = ["name", "uuid"]

    def __str__(self):
        return self.name or str(self.uuid)


class Tenant(NamedModel):
    """A tenant of the upstream platform; owns volumes and backups."""

    class Meta(NamedModel.Meta):
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")


class Namespace(models.Model):
    """A tenant's namespace (the contract's NamespaceUUID / NsUUID)."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    tenant = models.OneToOneField(
        Tenant, on_delete=models.PROTECT, related_name="namespace", verbose_name=_("tenant")
    )

    class Meta:
        verbose_name = _("namespace")
        verbose_name_plural = _("namespaces")

    def __str__(self):
        return str(self.uuid)


class Pool(NamedModel):
    """A storage pool: a directory (local disk or NFS/CephFS mount) holding qcow2 images."""

    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="pools", verbose_name=_("cluster")
    )
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="pools", verbose_name=_("zone"))
    pool_type = models.CharField(
        max_length=16,
        choices=choices.PoolType.choices,
        default=choices.PoolType.DISK,
        verbose_name=_("pool type"),
    )
    driver = models.CharField(
        max_length=16,
        choices=choices.PoolDriver.choices,
        default=choices.PoolDriver.QCOW2_DIRECTORY,
        verbose_name=_("driver"),
    )
    path = models.CharField(
        max_length=1024,
        help_text=_("Absolute directory where this service's workers reach the pool."),
        verbose_name=_("path"),
    )
    capacity = models.BigIntegerField(
        help_text=_("Bytes the pool offers before overcommit."), verbose_name=_("capacity")
    )
    overcommit_ratio = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=1,
        help_text=_("Sum of volume capacities may reach capacity x this ratio."),
        verbose_name=_("overcommit ratio"),
    )
    status = models.CharField(
        max_length=16,
        choices=choices.PoolStatus.choices,
        default=choices.PoolStatus.HEALTHY,
        verbose_name=_("status"),
    )
    tenants = models.ManyToManyField(
        Tenant,
        blank=True,
        related_name="pools",
        help_text=_("Tenants allowed to use the pool; empty means all."),
        verbose_name=_("tenants"),
    )
    # What the platform's pool API records about where the storage comes from (informational: the
    # directory drivers reach the pool at `path`; docs/api.md "Pools").
    ip = models.CharField(
        max_length=255, blank=True, default="", help_text=_("Storage server address."), verbose_name=_("ip")
    )
    port = models.CharField(
        max_length=16, blank=True, default="", help_text=_("Storage server port."), verbose_name=_("port")
    )
    source = models.CharField(
        max_length=1024,
        blank=True,
        default="",
        help_text=_("Export path or device WWN on the server."),
        verbose_name=pgettext_lazy("storage server", "source"),
    )
    username = models.CharField(max_length=128, blank=True, default="", verbose_name=_("username"))
    limit_host = models.BooleanField(
        default=False,
        help_text=_("Only the hosts named when the pool was registered mount it."),
        verbose_name=_("limit host"),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    modified = models.DateTimeField(default=timezone.now, verbose_name=_("modified"))

    class Meta(NamedModel.Meta):
        verbose_name = _("pool")
        verbose_name_plural = _("pools")
        constraints = [
            *location_constraints(),
            models.CheckConstraint(
                condition=Q(overcommit_ratio__gt=0), name="%(app_label)s_%(class)s_overcommit_positive"
            ),
        ]

    @property
    def capacity_limit(self) -> int:
        return int(self.capacity * self.overcommit_ratio)


class PoolMount(models.Model):
    """Where a host mounts a pool; gives the volume's AccessPath on that host."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="mounts", verbose_name=_("pool"))
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="mounts", verbose_name=_("host"))
    mount_path = models.CharField(max_length=1024, verbose_name=_("mount path"))

    class Meta:
        verbose_name = _("pool mount")
        verbose_name_plural = _("pool mounts")
        ordering = ["pool", "host"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "host"], name="%(app_label)s_%(class)s_unique_pool_host"),
        ]

    def __str__(self):
        return f"{self.pool} on {self.host}: {self.mount_path}"


class VolumeQuerySet(models.QuerySet):
    """Queries over volumes."""

    def live(self):
        return self.filter(state__in=choices.LIVE_STATES)


class Volume(models.Model):
    """A shared-storage volume: a qcow2 image (its active layer) in a pool."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    name = models.CharField(max_length=128, verbose_name=_("name"))
    # No single-column index: the composite (tenant, cluster, ...) indexes below serve every tenant lookup.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="volumes", db_index=False, verbose_name=_("tenant")
    )
    namespace = models.ForeignKey(
        Namespace, on_delete=models.PROTECT, related_name="volumes", verbose_name=_("namespace")
    )
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="volumes", verbose_name=_("cluster")
    )
    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="volumes", verbose_name=_("pool"))
    volume_type = models.CharField(
        max_length=8, choices=choices.VolumeType.choices, verbose_name=_("volume type")
    )
    capacity = models.BigIntegerField(help_text=_("Virtual size in bytes."), verbose_name=_("capacity"))
    snap_cap = models.BigIntegerField(
        help_text=_("Bytes the volume's snapshots may occupy (SnapCap)."), verbose_name=_("snap cap")
    )
    used = models.BigIntegerField(
        default=0, editable=False, help_text=_("Allocated bytes of the active layer."), verbose_name=_("used")
    )
    snap_length = models.BigIntegerField(
        default=0,
        editable=False,
        help_text=_("Allocated bytes of all snapshot layers (SnapLength)."),
        verbose_name=_("snap length"),
    )
    image_format = models.CharField(
        max_length=8,
        choices=choices.ImageFormat.choices,
        default=choices.ImageFormat.QCOW2,
        editable=False,
        verbose_name=_("image format"),
    )
    state = models.IntegerField(
        choices=choices.EventState.choices,
        default=choices.EventState.CREATING,
        editable=False,
        verbose_name=_("state"),
    )
    source_volume = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="clones",
        help_text=_("The volume this one was cloned from (Parent)."),
        verbose_name=_("source volume"),
    )
    parent_snapshot = models.ForeignKey(
        "Snapshot",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="linked_clones",
        help_text=_("For a linked clone: the snapshot layer it is an overlay on (ParentSnapshot)."),
        verbose_name=_("parent snapshot"),
    )
    current_snapshot = models.ForeignKey(
        "Snapshot",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("The snapshot the active layer ('head') currently sits on."),
        verbose_name=_("current snapshot"),
    )
    # Lineage kept after the links that make a clone depend on its source are gone: a full clone
    # never had `parent_snapshot`, a flatten clears it.
    clone_source_snapshot = models.ForeignKey(
        "Snapshot",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cloned_into",
        editable=False,
        verbose_name=_("cloned from snapshot"),
        help_text=_("For a clone (linked or full): the snapshot of the source volume it was made from."),
    )
    # A UUID, not a foreign key: backups live in an app that depends on this one (and outlive volumes).
    restored_from_backup_uuid = models.UUIDField(
        null=True,
        blank=True,
        editable=False,
        verbose_name=_("restored from backup"),
        help_text=_("For a volume restored from a backup: that backup's UUID."),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    modified = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("modified"))
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("deleted at"))

    objects = VolumeQuerySet.as_manager()

    class Meta:
        verbose_name = _("volume")
        verbose_name_plural = _("volumes")
        ordering = ["-created", "-id"]
        # Repairs act on volumes (and on pools and backup points through them); `volumes.run_repairs`.
        permissions = [
            ("run_repairs", "Can run repair actions (reconcile, reset state, force delete)"),
            # The console's everyday actions, one permission per kind (docs/console.md "Actions").
            ("snapshot_volume", "Can take and delete snapshots of volumes"),
            ("rollback_volume", "Can roll volumes back to a snapshot"),
            ("clone_volume", "Can clone volumes (linked or full)"),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "cluster", "-created", "-id"], name="volumes_vol_tenant_cl_created"
            ),
            models.Index(fields=["tenant", "cluster", "pool", "name"], name="volumes_vol_tenant_cl_pool_nm"),
            models.Index(fields=["tenant", "cluster", "name"], name="volumes_vol_tenant_cl_name"),
            models.Index(fields=["pool", "state"], name="volumes_vol_pool_state"),
            # The live volumes of a tenant in a cluster, newest first: list's page ids and its count
            # as index-only scans (deep pages walk this index, not the table).
            models.Index(
                fields=["tenant", "cluster", "-created", "-id"],
                name="volumes_vol_live_tenant_cl",
                condition=Q(state__in=choices.LIVE_STATES),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "cluster", "name"],
                condition=Q(state__in=choices.LIVE_STATES),
                name="%(app_label)s_%(class)s_unique_live_name",
            ),
            models.CheckConstraint(
                condition=Q(capacity__gt=0), name="%(app_label)s_%(class)s_capacity_positive"
            ),
            models.CheckConstraint(
                condition=Q(snap_cap__gte=0), name="%(app_label)s_%(class)s_snap_cap_nonnegative"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.uuid})"

    @property
    def image_name(self) -> str:
        """The active layer's name relative to the pool root; AccessPath = <mount>/<image_name>."""
        return f"volume/{self.uuid}"


class VolumeAttachment(models.Model):
    """A VM the volume is attached to, as the upstream platform reported through `attach`."""

    volume = models.ForeignKey(
        Volume, on_delete=models.CASCADE, related_name="attachments", verbose_name=_("volume")
    )
    vm_uuid = models.UUIDField(verbose_name=_("vm uuid"))
    device = models.CharField(max_length=64, blank=True, default="", verbose_name=_("device"))
    host_uuid = models.CharField(max_length=64, blank=True, default="", verbose_name=_("host uuid"))
    vm_name = models.CharField(max_length=128, blank=True, default="", verbose_name=_("vm name"))
    vm_type = models.CharField(max_length=32, blank=True, default="", verbose_name=_("vm type"))
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))

    class Meta:
        verbose_name = _("volume attachment")
        verbose_name_plural = _("volume attachments")
        ordering = ["created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume", "vm_uuid"], name="%(app_label)s_%(class)s_unique_volume_vm"
            ),
        ]

    def __str__(self):
        return f"{self.volume_id} -> {self.vm_uuid}"


class Snapshot(models.Model):
    """A snapshot: a frozen, read-only external qcow2 layer in the volume's snapshot tree."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    volume = models.ForeignKey(
        Volume, on_delete=models.CASCADE, related_name="snapshots", verbose_name=_("volume")
    )
    name = models.CharField(max_length=128, verbose_name=_("name"))
    desc = models.CharField(max_length=1024, blank=True, default="", verbose_name=_("desc"))
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        verbose_name=_("parent"),
    )
    status = models.IntegerField(
        choices=choices.SnapshotStatus.choices,
        default=choices.SnapshotStatus.CREATING,
        editable=False,
        verbose_name=_("status"),
    )
    size = models.BigIntegerField(
        default=0, editable=False, help_text=_("Allocated bytes of the layer."), verbose_name=_("size")
    )
    layer_name = models.CharField(
        max_length=255,
        editable=False,
        help_text=_("Layer file relative to the pool root."),
        verbose_name=_("layer name"),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    modified = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("modified"))

    class Meta:
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")
        ordering = ["created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["volume", "name"],
                condition=~Q(status__in=[choices.SnapshotStatus.HIDDEN]),
                name="%(app_label)s_%(class)s_unique_visible_name",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.uuid})"


def _limit(field_class, verbose_name, help_text):
    """A quota limit column: empty (null) is unlimited."""
    return field_class(null=True, blank=True, verbose_name=verbose_name, help_text=help_text)


def _all_nonnegative(*fields: str) -> Q:
    condition = Q()
    for field in fields:
        condition &= Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": 0})
    return condition


_LIMITS_OK = _all_nonnegative("max_volumes", "max_bytes", "max_snapshots", "max_backups")


class TenantQuota(models.Model):
    """A tenant's limits on what it may hold; an empty limit (null) is unlimited, no row at all too."""

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="quota", verbose_name=_("tenant")
    )
    modified = models.DateTimeField(default=timezone.now, verbose_name=_("modified"))
    max_volumes = _limit(
        models.IntegerField, _("max volumes"), _("Volumes the tenant may hold (empty: unlimited).")
    )
    max_bytes = _limit(
        models.BigIntegerField,
        _("max bytes"),
        _("Sum of its volumes' capacities in bytes (empty: unlimited)."),
    )
    max_snapshots = _limit(
        models.IntegerField, _("max snapshots"), _("Snapshots the tenant may hold (empty: unlimited).")
    )
    max_backups = _limit(
        models.IntegerField, _("max backups"), _("Backups the tenant may hold (empty: unlimited).")
    )

    class Meta:
        ordering = ["tenant__name"]
        verbose_name, verbose_name_plural = _("tenant quota"), _("tenant quotas")
        constraints = [
            models.CheckConstraint(condition=_LIMITS_OK, name="%(app_label)s_%(class)s_limits_nonnegative")
        ]

    def __str__(self):
        return f"quota of {self.tenant}"
