"""Console screens of pools: usage bars, add and edit through the pool service, reconcile."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.console import (
    badge,
    console_actor,
    count_of,
    health_badge,
    human_bytes,
    location_filters,
    neutral_language,
    repair_redirect,
    rows_link,
    service_error_message,
    service_error_text,
    short_uuid,
    sum_of,
)
from sharestore.core.sizes import SizeField
from sharestore.core.templatetags.console_tags import bar
from volumes.admin.columns import form_only_column
from volumes.admin.locations import LocationAdmin, LocationForm
from volumes.choices import LIVE_STATES, PoolDriver, PoolStatus, PoolType
from volumes.models import Pool, PoolMount, Volume
from volumes.services import pools as pool_services
from volumes.services import repair
from volumes.services.pool_types import pool_type_driver


def pool_health_badge(pool, committed) -> str:
    """A pool's health column: its status, or "over-committed" (red) when it is healthy but its live
    volumes promise more than capacity x overcommit."""
    if pool.status == PoolStatus.HEALTHY and (committed or 0) > pool.capacity_limit:
        return badge(gettext("over-committed"), "over", kind="bad")
    return health_badge(pool)


# A service error on one of rbd_location's settings, shown on the form field that holds it.
RBD_SETTING_FIELDS = {
    "ceph_pool": "ceph_pool",
    "namespace": "ceph_namespace",
    "conf": "ceph_conf",
    "user": "ceph_user",
    "keyring": "keyring",
}
RBD_FIELDS = tuple(RBD_SETTING_FIELDS.values())


class PoolForm(LocationForm):
    """Add or edit a pool; its location is checked by the pool service (a directory must exist and be
    writable; an RBD pool is connected to). Capacities take units (`500G`, `2T`); a capacity x
    overcommit below what the pool's live volumes already promise needs `confirm_capacity`."""

    capacity = SizeField(
        label=_("capacity"),
        required=False,
        help_text=_(
            "Bytes the pool offers before overcommit: bytes, or a number with a unit (500G, 2T, "
            "1.5TiB). Empty when adding: the size of the filesystem (or Ceph pool) under it."
        ),
    )
    confirm_capacity = forms.BooleanField(
        label=_("confirm a capacity below what is committed"),
        required=False,
        help_text=_(
            "Volumes already promise more than capacity x overcommit: new volumes and clones are "
            "refused until the sum falls below it. Tick to save anyway."
        ),
    )
    ceph_pool = forms.CharField(
        label=_("Ceph pool"), required=False, help_text=_("Type rbd: the Ceph pool holding the images.")
    )
    ceph_namespace = forms.CharField(
        label=_("RBD namespace"),
        required=False,
        help_text=_("Type rbd: an RBD namespace of that pool (optional)."),
    )
    ceph_conf = forms.CharField(
        label=_("Ceph configuration file"),
        required=False,
        initial="/etc/ceph/ceph.conf",
        help_text=_("Type rbd: the cluster's ceph.conf (absolute path)."),
    )
    ceph_user = forms.CharField(
        label=_("Ceph client id"), required=False, help_text=_("Type rbd: the client id (empty: admin).")
    )
    keyring = forms.CharField(
        label=_("keyring"), required=False, help_text=_("Type rbd: the client's keyring file (optional).")
    )

    class Meta:
        model = Pool
        fields = [
            "name",
            "cluster",
            "zone",
            "pool_type",
            "driver",
            "path",
            "capacity",
            "overcommit_ratio",
            "status",
            "tenants",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "zone" in self.fields:
            self.fields["zone"].required = False
            self.fields["zone"].help_text = gettext("Empty: the cluster's zone.")
        if "driver" in self.fields:
            self.fields["driver"].required = False
            self.fields["driver"].help_text = gettext("Empty: the driver of the pool's type.")
        if "path" in self.fields and self.instance.pk is None:
            self.fields["path"].required = False
            self.fields["path"].help_text = gettext(
                "A directory: absolute path where this service's workers reach the pool. Type rbd: "
                "leave empty and fill in the Ceph settings below."
            )

    def clean_overcommit_ratio(self):
        ratio = self.cleaned_data.get("overcommit_ratio")
        if ratio is not None and ratio <= 0:
            raise forms.ValidationError(
                _(
                    "The overcommit ratio must be greater than 0: 1 lets volumes promise exactly the "
                    "capacity, 1.5 half as much again."
                ),
                code="overcommit_positive",
            )
        return ratio

    def check_create(self, data) -> None:
        self._fill_kind(data)
        if self.errors:
            return
        pool_services.pool_create_check(
            name=data.get("name"),
            cluster=data.get("cluster"),
            path=data.get("path"),
            capacity=data.get("capacity"),
            pool_type=data.get("pool_type"),
            driver=data.get("driver"),
            overcommit_ratio=data.get("overcommit_ratio"),
        )

    def check_update(self, original: Pool, data) -> None:
        pool_services.pool_update_check(pool=original, **self.changes())
        self._check_committed(original, data)

    def refuse(self, exc) -> None:
        if exc.params.get("field") == "path" and self._rbd_built:
            # The location came from the Ceph settings: the refusal concerns them as a whole.
            self.add_error(None, service_error_message(exc))
        else:
            super().refuse(exc)

    _rbd_built = False

    def _fill_kind(self, data) -> None:
        """A new pool's driver from its type (when not chosen) and an RBD pool's location from its
        Ceph settings (when no path is given), as `add_pool` does."""
        pool_type = data.get("pool_type")
        if not data.get("driver"):
            data["driver"] = pool_type_driver(pool_type) or PoolDriver.QCOW2_DIRECTORY
        if pool_type != PoolType.RBD or data.get("path"):
            if not data.get("path"):
                self.add_error("path", gettext("This field is required."))
            return
        try:
            data["path"] = pool_services.rbd_location(
                ceph_pool=data.get("ceph_pool") or "",
                namespace=data.get("ceph_namespace") or "",
                conf=data.get("ceph_conf") or "",
                user=data.get("ceph_user") or "",
                keyring=data.get("keyring") or "",
            )
            self._rbd_built = True
        except errors.ServiceError as exc:
            field = RBD_SETTING_FIELDS.get(exc.params.get("field"))
            self.add_error(field, service_error_message(exc))

    def _check_committed(self, original: Pool, data) -> None:
        """Capacity x overcommit below the sum of the live volumes' capacities: refused unless confirmed."""
        capacity = data.get("capacity", original.capacity)
        ratio = data.get("overcommit_ratio") or original.overcommit_ratio
        if capacity is None:
            return
        limit = int(capacity * ratio)
        committed = pool_services.pool_usage(original, filesystem=False).committed
        if limit < committed:
            refusal = gettext(
                "Capacity x overcommit (%(limit)s) is below what the pool's live volumes already "
                "promise (%(committed)s): tick the confirmation to save it anyway."
            )
            self.hold_below(refusal, limit=limit, committed=committed)

    def changes(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k in pool_services.EDITABLE_POOL_FIELDS}


class PoolMountInline(admin.TabularInline):
    """Where each host mounts the pool (gives the API's AccessPath)."""

    model = PoolMount
    extra = 0
    fields = ("host", "mount_path")
    autocomplete_fields = ()

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("volumes.change_pool")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("volumes.change_pool")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("volumes.change_pool")


@admin.register(Pool)
class PoolAdmin(LocationAdmin):
    """Pools: usage bars, add and edit through the pool service, reconcile."""

    form = PoolForm
    editable_fields = (*PoolForm.Meta.fields, "confirm_capacity")
    # A pool's cluster and driver define where its images are and how they are written.
    fixed_fields = ("cluster", "driver")
    inlines = [PoolMountInline]
    list_display = (
        "name",
        "uuid_short",
        "cluster",
        "zone",
        "pool_type",
        "status_badge",
        "committed_bar",
        "allocated_bar",
        "volume_count",
    )
    list_filter = location_filters("zone", _("zone"), "pool_type")
    list_select_related = ("cluster", "zone")
    filter_horizontal = ("tenants",)
    actions = ["reconcile_action", "refresh_usage_action"]
    below_held_warning = _(
        "Pool %(name)s: capacity x overcommit (%(limit)s) is below what is committed "
        "(%(committed)s); new volumes and clones are refused until that changes."
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_volumes=count_of(Volume, "pool", state__in=LIVE_STATES),
                committed=sum_of(Volume, "pool", "capacity", state__in=LIVE_STATES),
                used_sum=sum_of(Volume, "pool", "used", state__in=LIVE_STATES),
                snaps_sum=sum_of(Volume, "pool", "snap_length", state__in=LIVE_STATES),
            )
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            # A new RBD pool's location is made from its Ceph settings.
            fieldsets.append((_("Ceph RBD (type rbd)"), {"fields": list(RBD_FIELDS)}))
        return fieldsets

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        return pool_health_badge(obj, obj.committed)

    @admin.display(description=_("UUID"), ordering="uuid")
    def uuid_short(self, obj):
        return short_uuid(obj.uuid)

    confirm_capacity = form_only_column(_("confirm a capacity below what is committed"))

    @admin.display(description=_("committed / capacity x overcommit"), ordering="committed")
    def committed_bar(self, obj):
        return bar(obj.committed, obj.capacity_limit)

    @admin.display(description=_("allocated / capacity"))
    def allocated_bar(self, obj):
        return bar((obj.used_sum or 0) + (obj.snaps_sum or 0), obj.capacity)

    @admin.display(description=_("live volumes"), ordering="n_volumes")
    def volume_count(self, obj):
        return rows_link("admin:volumes_volume_changelist", "pool", obj, obj.n_volumes)

    def usage_rows(self, obj) -> list:
        usage = pool_services.pool_usage(obj)
        rows = [
            (
                gettext("committed (sum of live volumes' capacity) / capacity x overcommit"),
                bar(usage.committed, usage.limit),
            ),
            (
                gettext("allocated (heads and snapshot layers) / capacity"),
                bar(usage.allocated, usage.capacity),
            ),
        ]
        if usage.committed > usage.limit:
            rows.append(
                (
                    gettext("over-committed by"),
                    format_html(
                        '<span class="ss-error">{}</span>', human_bytes(usage.committed - usage.limit)
                    ),
                )
            )
        if usage.fs_total:
            used = usage.fs_total - usage.fs_free
            rows.append((gettext("filesystem used / size"), bar(used, usage.fs_total)))
            rows.append((gettext("filesystem free (what the disk really has)"), human_bytes(usage.fs_free)))
            rows.append(
                (
                    gettext("reserved by copies in progress / filesystem free"),
                    bar(usage.reserved, usage.fs_free),
                )
            )
        return rows

    def update(self, actor, obj, changes):
        pool_services.pool_update(actor=actor, pool=obj, **changes)

    def create(self, request, obj, data):
        with neutral_language():
            pool = pool_services.pool_create(
                actor=console_actor(request),
                name=data["name"],
                cluster=data["cluster"],
                path=data["path"],
                capacity=data["capacity"],
                zone=data.get("zone"),
                pool_type=data["pool_type"],
                driver=data["driver"],
                overcommit_ratio=data["overcommit_ratio"],
                tenants=list(data.get("tenants") or []),
            )
        obj.pk, obj.uuid, obj.path, obj.zone = pool.pk, pool.uuid, pool.path, pool.zone

    def save_related(self, request, form, formsets, change):
        # Tenants were written by the service; inline mounts go through it too.
        for formset in formsets:
            self.save_formset(request, form, formset, change)

    def save_formset(self, request, form, formset, change):
        with neutral_language():
            self._save_mounts(request, form, formset)

    def _save_mounts(self, request, form, formset):
        pool = Pool.objects.get(pk=form.instance.pk)
        actor = console_actor(request)
        # The admin's change message reads these lists (a formset's save() would fill them).
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.deleted_forms:
            if inline_form.instance.pk:
                pool_services.pool_mount_remove(actor=actor, mount=inline_form.instance)
                formset.deleted_objects.append(inline_form.instance)
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            data = inline_form.cleaned_data
            if data.get("host") and data.get("mount_path"):
                existed = inline_form.instance.pk is not None
                mount = pool_services.pool_mount_set(
                    actor=actor, pool=pool, host=data["host"], mount_path=data["mount_path"]
                )
                if existed:
                    formset.changed_objects.append((mount, inline_form.changed_data))
                else:
                    formset.new_objects.append(mount)

    def get_urls(self):
        return [
            path(
                "reconcile/", self.admin_site.admin_view(self.reconcile_view), name="volumes_pool_reconcile"
            ),
            *super().get_urls(),
        ]

    @admin.action(description=_("Reconcile database and files (preview first)"), permissions=["run_repairs"])
    def reconcile_action(self, request, queryset):
        return repair_redirect("admin:volumes_pool_reconcile", "pool", queryset)

    @admin.action(description=_("Refresh usage from the files (preview first)"), permissions=["run_repairs"])
    def refresh_usage_action(self, request, queryset):
        return repair_redirect("admin:volumes_volume_refresh_usage", "pool", queryset)

    def reconcile_view(self, request):
        """GET: the dry run for the named pools / backup points (all if none). POST apply=1: fix."""
        self.guard_repairs(request)
        source = request.POST if request.method == "POST" else request.GET
        targets = {}
        if source.getlist("pool"):
            targets["pool"] = source.getlist("pool")
        if source.getlist("backup_point"):
            targets["backup_point"] = source.getlist("backup_point")
        applied = request.method == "POST" and source.get("apply") == "1"
        try:
            with neutral_language():
                reports = repair.reconcile(actor=console_actor(request), fix=applied, targets=targets or None)
        except errors.ServiceError as exc:
            self.message_user(request, service_error_text(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:volumes_pool_changelist"))
        if applied:
            fixed = sum(1 for r in reports for f in r.findings if f.fixed)
            remaining = sum(len(r.remaining) for r in reports)
            self.message_user(
                request,
                gettext("Reconcile fixed %(fixed)d finding(s); %(remaining)d remain.")
                % {"fixed": fixed, "remaining": remaining},
                messages.SUCCESS if not remaining else messages.WARNING,
            )
        context = self.repair_context(
            request,
            gettext("Reconcile: result") if applied else gettext("Reconcile: preview (nothing changed yet)"),
            reports=reports,
            applied=applied,
            targets=[(k, v) for k, values in targets.items() for v in values],
            grace_seconds=repair.DEFAULT_GRACE_SECONDS,
            fixable=sum(r.fixable_count for r in reports),
        )
        return TemplateResponse(request, "admin/volumes/reconcile.html", context)
