"""Console screens of topology and tenancy: zones, clusters, hosts, tenants, namespaces and where
hosts mount pools (all view-only)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from sharestore.core.console import ConsoleAdmin, count_of, related
from volumes.admin.columns import count_column
from volumes.choices import LIVE_STATES
from volumes.models import Cluster, Host, Namespace, Pool, PoolMount, Tenant, Volume, Zone


@admin.register(Zone)
class ZoneAdmin(ConsoleAdmin):
    """Availability zones."""

    list_display = ("name", "uuid", "cluster_count", "pool_count")
    search_fields = ("name", "uuid")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(n_clusters=count_of(Cluster, "zone"), n_pools=count_of(Pool, "zone"))
        )

    cluster_count = count_column(pgettext_lazy("count column", "clusters"), "n_clusters")
    pool_count = count_column(pgettext_lazy("count column", "pools"), "n_pools")


@admin.register(Cluster)
class ClusterAdmin(ConsoleAdmin):
    """Virtualization clusters."""

    list_display = ("name", "uuid", "mode", "zone", "host_count", "pool_count", "volume_count")
    list_filter = (("zone", related(_("zone"))),)
    list_select_related = ("zone",)
    search_fields = ("name", "uuid")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_hosts=count_of(Host, "cluster"),
                n_pools=count_of(Pool, "cluster"),
                n_volumes=count_of(Volume, "cluster", state__in=LIVE_STATES),
            )
        )

    host_count = count_column(pgettext_lazy("count column", "hosts"), "n_hosts")
    pool_count = count_column(pgettext_lazy("count column", "pools"), "n_pools")
    volume_count = count_column(pgettext_lazy("count column", "live volumes"), "n_volumes")


@admin.register(Host)
class HostAdmin(ConsoleAdmin):
    """Hypervisor hosts."""

    list_display = ("__str__", "uuid", "cluster")
    list_filter = (("cluster", related(_("cluster"))),)
    list_select_related = ("cluster",)
    search_fields = ("name", "uuid")


@admin.register(Tenant)
class TenantAdmin(ConsoleAdmin):
    """Tenants of the upstream platform."""

    list_display = ("name", "uuid", "namespace_uuid", "volume_count")
    list_select_related = ("namespace",)
    search_fields = ("name", "uuid", "namespace__uuid")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(n_volumes=count_of(Volume, "tenant", state__in=LIVE_STATES))
        )

    @admin.display(description=_("namespace"))
    def namespace_uuid(self, obj):
        namespace = getattr(obj, "namespace", None)
        return namespace.uuid if namespace else "-"

    volume_count = count_column(pgettext_lazy("count column", "live volumes"), "n_volumes")


@admin.register(Namespace)
class NamespaceAdmin(ConsoleAdmin):
    """Tenants' namespaces."""

    list_display = ("uuid", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("uuid", "tenant__name", "tenant__uuid")


@admin.register(PoolMount)
class PoolMountAdmin(ConsoleAdmin):
    """Where hosts mount pools (edited on the pool's page)."""

    list_display = ("pool", "host", "mount_path")
    list_filter = (("pool", related(_("pool"))), ("host__cluster", related(_("cluster"))))
    list_select_related = ("pool", "host")
    search_fields = ("mount_path", "pool__name", "host__name", "host__uuid")
