"""Console screen of tenant quotas: each tenant's limits beside what it holds, set through the quota
service (`volumes.services.quotas.quota_set`, as `manage.py set_quota` and `quota/set` do)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from sharestore.core.console import console_actor, count_of, human_bytes, neutral_language, sum_of
from volumes.choices import LIVE_STATES
from volumes.models import Snapshot, TenantQuota, Volume
from volumes.quota_selectors import COUNTED_BACKUP_STATUSES, COUNTED_SNAPSHOT_STATUSES, QUOTA_FIELDS
from volumes.services.quotas import quota_set


def _used_of(used, limit, *, as_bytes: bool = False) -> str:
    shown = human_bytes if as_bytes else str
    return f"{shown(used)} / {gettext('unlimited') if limit is None else shown(limit)}"


def _usage_columns() -> dict:
    """What each quota's tenant holds, for a whole page in one query: correlated subqueries for volumes
    and snapshots, one join for backups (the backups app is reached through the tenant's relation)."""
    live = {"state__in": LIVE_STATES}
    counted = {"volume__state__in": LIVE_STATES, "status__in": COUNTED_SNAPSHOT_STATUSES}
    backups = Q(tenant__backups__status__in=COUNTED_BACKUP_STATUSES)
    return {
        "n_volumes": count_of(Volume, "tenant__quota", **live),
        "n_bytes": sum_of(Volume, "tenant__quota", "capacity", **live),
        "n_snapshots": count_of(Snapshot, "volume__tenant__quota", **counted),
        "n_backups": Count("tenant__backups", filter=backups),
    }


@admin.register(TenantQuota)
class TenantQuotaAdmin(admin.ModelAdmin):
    """Tenant quotas: limits (empty: unlimited) and usage; written only through the quota service."""

    fields = ("tenant", "max_volumes", "max_bytes", "max_snapshots", "max_backups")
    list_display = ("tenant", "volumes_used", "bytes_used", "snapshots_used", "backups_used", "modified")
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "tenant__uuid")
    list_per_page = 50

    def get_readonly_fields(self, request, obj=None):
        return ("tenant",) if obj is not None else ()

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**_usage_columns())

    @admin.display(description=_("volumes used / limit"), ordering="n_volumes")
    def volumes_used(self, obj):
        return _used_of(obj.n_volumes, obj.max_volumes)

    @admin.display(description=_("capacity used / limit"), ordering="n_bytes")
    def bytes_used(self, obj):
        return _used_of(obj.n_bytes, obj.max_bytes, as_bytes=True)

    @admin.display(description=_("snapshots used / limit"), ordering="n_snapshots")
    def snapshots_used(self, obj):
        return _used_of(obj.n_snapshots, obj.max_snapshots)

    @admin.display(description=_("backups used / limit"), ordering="n_backups")
    def backups_used(self, obj):
        return _used_of(obj.n_backups, obj.max_backups)

    def save_model(self, request, obj, form, change):
        limits = {key: form.cleaned_data.get(column) for key, column in QUOTA_FIELDS.items()}
        with neutral_language():
            saved = quota_set(actor=console_actor(request), tenant=obj.tenant, **limits)
        obj.pk, obj._state.adding = saved.pk, False
