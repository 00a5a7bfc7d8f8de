"""Models of the volumes app: topology (zone, cluster, host), tenancy, pools, volumes and snapshots."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from sharestore.core import fields
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

    uuid = fields.uuid_field()
    name = fields.name_field()

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

    mode = fields.optional_char(32, _("mode"), help_text=_("The contract's cluster_mode."))
    zone = fields.protected_fk(Zone, "clusters", _("zone"))

    class Meta(NamedModel.Meta):
        verbose_name = _("cluster")
        verbose_name_plural = _("clusters")


class Host(models.Model):
    """A hypervisor host that mounts pools; AccessPath is keyed by host UUID."""

    uuid = fields.uuid_field()
    name = fields.optional_char(128, _("name"))
    cluster = fields.protected_fk(Cluster, "hosts", _("cluster"))
    queue = fields.optional_char(
        160,
        _("queue"),
        help_text=_(
            "django-q2 queue its storage worker listens on (host-<SHARESTORE_HOST>); empty: no worker."
        ),
    )
    last_seen = fields.optional_datetime(
        _("last seen"), help_text=_("Last heartbeat of a storage worker running on this host.")
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

    uuid = fields.uuid_field()
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

    cluster = fields.protected_fk(Cluster, "pools", _("cluster"))
    zone = fields.protected_fk(Zone, "pools", _("zone"))
    pool_type = fields.choice_field(choices.PoolType, _("pool type"), default=choices.PoolType.DISK)
    driver = fields.choice_field(choices.PoolDriver, _("driver"), default=choices.PoolDriver.QCOW2_DIRECTORY)
    path = fields.path_field(
        _("path"), help_text=_("Absolute directory where this service's workers reach the pool.")
    )
    capacity = fields.capacity_field(_("Bytes the pool offers before overcommit."))
    overcommit_ratio = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=1,
        help_text=_("Sum of volume capacities may reach capacity x this ratio."),
        verbose_name=_("overcommit ratio"),
    )
    status = fields.choice_field(choices.PoolStatus, _("status"), default=choices.PoolStatus.HEALTHY)
    tenants = models.ManyToManyField(
        Tenant,
        blank=True,
        related_name="pools",
        help_text=_("Tenants allowed to use the pool; empty means all."),
        verbose_name=_("tenants"),
    )
    # What the platform's pool API records about where the storage comes from (informational: the
    # directory drivers reach the pool at `path`; docs/api.md "Pools").
    ip = fields.optional_char(255, _("ip"), help_text=_("Storage server address."))
    port = fields.optional_char(16, _("port"), help_text=_("Storage server port."))
    source = fields.path_field(
        pgettext_lazy("storage server", "source"),
        optional=True,
        help_text=_("Export path or device WWN on the server."),
    )
    username = fields.optional_char(128, _("username"))
    limit_host = models.BooleanField(
        default=False,
        help_text=_("Only the hosts named when the pool was registered mount it."),
        verbose_name=_("limit host"),
    )
    created = fields.created_field()
    modified = fields.modified_field()

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

    pool = fields.cascade_fk(Pool, "mounts", _("pool"))
    host = fields.cascade_fk(Host, "mounts", _("host"))
    mount_path = fields.path_field(_("mount path"))

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

    uuid = fields.uuid_field()
    name = fields.name_field()
    # No single-column index: the composite (tenant, cluster, ...) indexes below serve every tenant lookup.
    tenant = fields.protected_fk(Tenant, "volumes", _("tenant"), db_index=False)
    namespace = fields.protected_fk(Namespace, "volumes", _("namespace"))
    cluster = fields.protected_fk(Cluster, "volumes", _("cluster"))
    pool = fields.protected_fk(Pool, "volumes", _("pool"))
    volume_type = fields.choice_field(choices.VolumeType, _("volume type"), max_length=8)
    capacity = fields.capacity_field(_("Virtual size in bytes."))
    snap_cap = models.BigIntegerField(
        help_text=_("Bytes the volume's snapshots may occupy (SnapCap)."), verbose_name=_("snap cap")
    )
    used = fields.byte_count(_("used"), editable=False, help_text=_("Allocated bytes of the active layer."))
    snap_length = fields.byte_count(
        _("snap length"), editable=False, help_text=_("Allocated bytes of all snapshot layers (SnapLength).")
    )
    image_format = fields.choice_field(
        choices.ImageFormat,
        _("image format"),
        max_length=8,
        default=choices.ImageFormat.QCOW2,
        editable=False,
    )
    state = models.IntegerField(
        choices=choices.EventState.choices,
        default=choices.EventState.CREATING,
        editable=False,
        verbose_name=_("state"),
    )
    source_volume = fields.set_null_fk(
        "self", "clones", _("source volume"), help_text=_("The volume this one was cloned from (Parent).")
    )
    parent_snapshot = fields.protected_fk(
        "Snapshot",
        "linked_clones",
        _("parent snapshot"),
        optional=True,
        help_text=_("For a linked clone: the snapshot layer it is an overlay on (ParentSnapshot)."),
    )
    current_snapshot = fields.set_null_fk(
        "Snapshot",
        "+",
        _("current snapshot"),
        help_text=_("The snapshot the active layer ('head') currently sits on."),
    )
    # Lineage kept after the links that make a clone depend on its source are gone: a full clone
    # never had `parent_snapshot`, a flatten clears it.
    clone_source_snapshot = fields.set_null_fk(
        "Snapshot",
        "cloned_into",
        _("cloned from snapshot"),
        editable=False,
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
    created = fields.created_field()
    modified = fields.modified_field(editable=False)
    deleted_at = fields.optional_datetime(_("deleted at"), editable=False)

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

    volume = fields.cascade_fk(Volume, "attachments", _("volume"))
    vm_uuid = models.UUIDField(verbose_name=_("vm uuid"))
    device = fields.optional_char(64, _("device"))
    host_uuid = fields.optional_char(64, _("host uuid"))
    vm_name = fields.optional_char(128, _("vm name"))
    vm_type = fields.optional_char(32, _("vm type"))
    created = fields.created_field()

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

    uuid = fields.uuid_field()
    volume = fields.cascade_fk(Volume, "snapshots", _("volume"))
    name = fields.name_field()
    desc = fields.desc_field()
    parent = fields.protected_fk("self", "children", _("parent"), optional=True)
    status = models.IntegerField(
        choices=choices.SnapshotStatus.choices,
        default=choices.SnapshotStatus.CREATING,
        editable=False,
        verbose_name=_("status"),
    )
    size = fields.byte_count(_("size"), editable=False, help_text=_("Allocated bytes of the layer."))
    layer_name = models.CharField(
        max_length=255,
        editable=False,
        help_text=_("Layer file relative to the pool root."),
        verbose_name=_("layer name"),
    )
    created = fields.created_field()
    modified = fields.modified_field(editable=False)

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
    modified = fields.modified_field()
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
