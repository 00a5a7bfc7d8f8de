"""The operator console: every model of the volumes app browsable, the per-volume page, the
operations list, pools with usage bars and add/edit, and the repair screens (reconcile, reset
state, force delete, refresh usage, retry).

Each repair screen shows a dry-run preview first and applies only on an explicit POST; each is one
call into `volumes.services.repair`. Only superusers and holders of `volumes.run_repairs` may run
them. Changelists fetch related rows with `list_select_related` and counts with subqueries, so
they render in a constant number of queries.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from volumes.choices import LIVE_STATES, EventState, OperationState, SnapshotStatus
from volumes.console import can_run_repairs, human_bytes, localized_error, localized_event_message
from volumes.models import (
    ApiToken,
    AuditEvent,
    Cluster,
    Host,
    Namespace,
    Operation,
    Pool,
    PoolMount,
    Snapshot,
    Tenant,
    Volume,
    VolumeAttachment,
    Zone,
)
from volumes.services import pools as pool_services
from volumes.services import repair
from volumes.templatetags.console_tags import bar, progress_bar

admin.site.site_header = _("sharestore console")
admin.site.site_title = _("sharestore console")
admin.site.index_title = _("Storage operations")
# The service has no public site of its own (the API answers JSON): no "View site" link.
admin.site.site_url = None


def neutral_language():
    """Run a service in the site language: `transition` writes state labels into the audit trail,
    and those must not depend on the language of the operator who clicked."""
    return translation.override(settings.LANGUAGE_CODE)


def console_actor(request) -> str:
    """Who a console action is recorded as in the audit trail."""
    return f"console:{request.user.get_username()}"


def titled(base: type[admin.FieldListFilter], title) -> type[admin.FieldListFilter]:
    """A list filter with a translatable title (model fields without verbose names give English ones)."""

    class Titled(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

    Titled.__name__ = f"Titled{base.__name__}"
    return Titled


def related(title):
    return titled(admin.RelatedFieldListFilter, title)


def choices(title):
    return titled(admin.ChoicesFieldListFilter, title)


def service_error_text(exc: errors.ServiceError) -> str:
    return f"scode {exc.scode}: {localized_error(exc.scode, exc.render_message())}"


def count_of(model, field: str, **filters) -> Subquery:
    """A correlated COUNT subquery: one query for the page whatever its row count, no join fan-out."""
    return Coalesce(
        Subquery(
            model.objects.filter(**{field: OuterRef("pk")}, **filters)
            .order_by()
            .values(field)
            .annotate(n=Count("pk"))
            .values("n")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def sum_of(model, field: str, column: str, **filters) -> Subquery:
    return Coalesce(
        Subquery(
            model.objects.filter(**{field: OuterRef("pk")}, **filters)
            .order_by()
            .values(field)
            .annotate(total=Sum(column))
            .values("total")[:1]
        ),
        Value(0),
    )


STATE_COLOURS = {
    EventState.AVAILABLE: "ok",
    EventState.ERROR: "bad",
    EventState.DELETED: "off",
    EventState.DELETING: "off",
    OperationState.SUCCEEDED: "ok",
    OperationState.FAILED: "bad",
    OperationState.CANCELLED: "off",
    SnapshotStatus.HIDDEN: "off",
}


def badge(label, value, *, kind: str = "") -> str:
    colour = STATE_COLOURS.get(value, "busy") if not kind else kind
    return format_html('<span class="ss-badge ss-badge-{}">{}</span>', colour, label)


class ConsoleAdmin(admin.ModelAdmin):
    """Base of the console's admins: view-only (only the storage layer writes these rows)."""

    list_per_page = 50
    show_full_result_count = True

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_run_repairs_permission(self, request):
        return can_run_repairs(request.user)

    def get_readonly_fields(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return super().get_readonly_fields(request, obj)
        if self.fieldsets:
            return flatten_fieldsets(self.fieldsets)
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"] + list(self.readonly_fields)

    def guard_repairs(self, request) -> None:
        if not can_run_repairs(request.user):
            raise PermissionDenied

    def repair_context(self, request, title, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "app_label": self.model._meta.app_label,
            **extra,
        }


# -- topology and tenancy --------------------------------------------------------------------------


@admin.register(Zone)
class ZoneAdmin(ConsoleAdmin):
    """Availability zones."""

    list_display = ("name", "uuid", "cluster_count", "pool_count")
    search_fields = ("name", "uuid")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_clusters=count_of(Cluster, "zone"), n_pools=count_of(Pool, "zone")
        )

    @admin.display(description=_("clusters"), ordering="n_clusters")
    def cluster_count(self, obj):
        return obj.n_clusters

    @admin.display(description=_("pools"), ordering="n_pools")
    def pool_count(self, obj):
        return obj.n_pools


@admin.register(Cluster)
class ClusterAdmin(ConsoleAdmin):
    """Virtualization clusters."""

    list_display = ("name", "uuid", "mode", "zone", "host_count", "pool_count", "volume_count")
    list_filter = (("zone", related(_("zone"))),)
    list_select_related = ("zone",)
    search_fields = ("name", "uuid")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_hosts=count_of(Host, "cluster"),
            n_pools=count_of(Pool, "cluster"),
            n_volumes=count_of(Volume, "cluster", state__in=LIVE_STATES),
        )

    @admin.display(description=_("hosts"), ordering="n_hosts")
    def host_count(self, obj):
        return obj.n_hosts

    @admin.display(description=_("pools"), ordering="n_pools")
    def pool_count(self, obj):
        return obj.n_pools

    @admin.display(description=_("live volumes"), ordering="n_volumes")
    def volume_count(self, obj):
        return obj.n_volumes


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
        return super().get_queryset(request).annotate(n_volumes=count_of(Volume, "tenant", state__in=LIVE_STATES))

    @admin.display(description=_("namespace"))
    def namespace_uuid(self, obj):
        namespace = getattr(obj, "namespace", None)
        return namespace.uuid if namespace else "-"

    @admin.display(description=_("live volumes"), ordering="n_volumes")
    def volume_count(self, obj):
        return obj.n_volumes


@admin.register(Namespace)
class NamespaceAdmin(ConsoleAdmin):
    """Tenants' namespaces."""

    list_display = ("uuid", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("uuid", "tenant__name", "tenant__uuid")


# -- pools -----------------------------------------------------------------------------------------


def _service_error_to_form(form: forms.Form, exc: errors.ServiceError) -> None:
    field = exc.params.get("field")
    message = localized_error(exc.scode, exc.render_message())
    if field in form.fields:
        form.add_error(field, message)
    else:
        form.add_error(None, message)


class PoolForm(forms.ModelForm):
    """Add or edit a pool; the directory must exist and be writable (checked by the pool service)."""

    class Meta:
        model = Pool
        fields = ["name", "cluster", "zone", "pool_type", "driver", "path", "capacity", "overcommit_ratio", "status", "tenants"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "zone" in self.fields:
            self.fields["zone"].required = False
            self.fields["zone"].help_text = gettext("Empty: the cluster's zone.")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            if self.instance.pk is None:
                pool_services.pool_create_check(
                    name=data.get("name"), cluster=data.get("cluster"), path=data.get("path"),
                    capacity=data.get("capacity"), pool_type=data.get("pool_type"), driver=data.get("driver"),
                    overcommit_ratio=data.get("overcommit_ratio"),
                )
            else:
                original = Pool.objects.get(pk=self.instance.pk)
                pool_services.pool_update_check(pool=original, **self.changes())
        except errors.ServiceError as exc:
            _service_error_to_form(self, exc)
        return data

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
class PoolAdmin(ConsoleAdmin):
    """Pools: usage bars, add and edit through the pool service, reconcile."""

    form = PoolForm
    inlines = [PoolMountInline]
    list_display = ("name", "uuid", "cluster", "zone", "pool_type", "status_badge", "committed_bar", "allocated_bar", "volume_count")
    list_filter = (
        ("cluster", related(_("cluster"))),
        ("zone", related(_("zone"))),
        ("pool_type", choices(_("type"))),
        ("status", choices(_("status"))),
    )
    list_select_related = ("cluster", "zone")
    search_fields = ("name", "uuid", "path")
    filter_horizontal = ("tenants",)
    actions = ["reconcile_action", "refresh_usage_action"]

    def has_add_permission(self, request):
        return request.user.has_perm("volumes.add_pool")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("volumes.change_pool")

    def get_readonly_fields(self, request, obj=None):
        fields = ["uuid", "usage", "created", "modified"]
        if obj is not None:
            # A pool's cluster and driver define where its images are and how they are written.
            fields += ["cluster", "driver"]
        if not self.has_change_permission(request, obj):
            fields += ["name", "zone", "pool_type", "path", "capacity", "overcommit_ratio", "status", "tenants"]
        return fields

    def get_fieldsets(self, request, obj=None):
        main = ["name", "cluster", "zone", "pool_type", "driver", "path", "capacity", "overcommit_ratio", "status", "tenants"]
        if obj is None:
            return [(None, {"fields": main})]
        return [
            (None, {"fields": ["uuid", *main]}),
            (_("Usage"), {"fields": ["usage"]}),
            (_("Times"), {"fields": ["created", "modified"]}),
        ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_volumes=count_of(Volume, "pool", state__in=LIVE_STATES),
            committed=sum_of(Volume, "pool", "capacity", state__in=LIVE_STATES),
            used_sum=sum_of(Volume, "pool", "used", state__in=LIVE_STATES),
            snaps_sum=sum_of(Volume, "pool", "snap_length", state__in=LIVE_STATES),
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        return badge(obj.get_status_display(), obj.status, kind="ok" if obj.status == "healthy" else "bad")

    @admin.display(description=_("committed / capacity x overcommit"), ordering="committed")
    def committed_bar(self, obj):
        return bar(obj.committed, obj.capacity_limit)

    @admin.display(description=_("allocated / capacity"))
    def allocated_bar(self, obj):
        return bar((obj.used_sum or 0) + (obj.snaps_sum or 0), obj.capacity)

    @admin.display(description=_("live volumes"), ordering="n_volumes")
    def volume_count(self, obj):
        url = reverse("admin:volumes_volume_changelist") + f"?pool__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.n_volumes)

    @admin.display(description=_("usage"))
    def usage(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        usage = pool_services.pool_usage(obj)
        rows = [
            (gettext("committed (sum of live volumes' capacity) / capacity x overcommit"), bar(usage.committed, usage.limit)),
            (gettext("allocated (heads and snapshot layers) / capacity"), bar(usage.allocated, usage.capacity)),
        ]
        if usage.fs_total:
            used = usage.fs_total - usage.fs_free
            rows.append((gettext("filesystem used / size"), bar(used, usage.fs_total)))
        return format_html('<table class="ss-usage">{}</table>', format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    def save_model(self, request, obj, form, change):
        if change:
            with neutral_language():
                pool_services.pool_update(actor=console_actor(request), pool=obj, **form.changes())
            return
        data = form.cleaned_data
        with neutral_language():
            pool = pool_services.pool_create(
                actor=console_actor(request), name=data["name"], cluster=data["cluster"], path=data["path"],
                capacity=data["capacity"], zone=data.get("zone"), pool_type=data["pool_type"], driver=data["driver"],
                overcommit_ratio=data["overcommit_ratio"], tenants=list(data.get("tenants") or []),
            )
        # The admin's redirect and change log need the row the service created.
        obj.pk, obj.uuid, obj.path, obj.zone = pool.pk, pool.uuid, pool.path, pool.zone
        obj._state.adding = False

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
                mount = pool_services.pool_mount_set(actor=actor, pool=pool, host=data["host"], mount_path=data["mount_path"])
                if existed:
                    formset.changed_objects.append((mount, inline_form.changed_data))
                else:
                    formset.new_objects.append(mount)

    def get_urls(self):
        return [
            path("reconcile/", self.admin_site.admin_view(self.reconcile_view), name="volumes_pool_reconcile"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Reconcile database and files (preview first)"), permissions=["run_repairs"])
    def reconcile_action(self, request, queryset):
        query = urlencode([("pool", str(p.uuid)) for p in queryset])
        return HttpResponseRedirect(f"{reverse('admin:volumes_pool_reconcile')}?{query}")

    @admin.action(description=_("Refresh usage from the files (preview first)"), permissions=["run_repairs"])
    def refresh_usage_action(self, request, queryset):
        query = urlencode([("pool", str(p.uuid)) for p in queryset])
        return HttpResponseRedirect(f"{reverse('admin:volumes_volume_refresh_usage')}?{query}")

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
                gettext("Reconcile fixed %(fixed)d finding(s); %(remaining)d remain.") % {"fixed": fixed, "remaining": remaining},
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


# -- volumes ----------------------------------------------------------------------------------------


class AttachmentInline(admin.TabularInline):
    """VMs the volume is attached to (as reported by the platform)."""

    model = VolumeAttachment
    extra = 0
    fields = ("vm_uuid", "vm_name", "vm_type", "device", "host_uuid", "created")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Volume)
class VolumeAdmin(ConsoleAdmin):
    """Volumes: filters, the per-volume page (tree, clones, backups, timeline) and its repairs."""

    change_form_template = "admin/volumes/volume/change_form.html"
    inlines = [AttachmentInline]
    list_display = (
        "name", "uuid", "tenant", "cluster", "pool", "volume_type", "state_badge", "capacity_h", "used_h",
        "snap_length_h", "snapshot_count", "attachment_count", "created",
    )
    list_filter = (
        ("cluster", related(_("cluster"))),
        ("pool", related(_("pool"))),
        ("tenant", related(_("tenant"))),
        ("volume_type", choices(_("type"))),
        ("state", choices(_("state"))),
    )
    list_select_related = ("tenant", "cluster", "pool")
    search_fields = ("name", "uuid")
    actions = ["refresh_usage_action"]
    fieldsets = (
        (None, {"fields": ("uuid", "name", "tenant", "namespace", "cluster", "pool", "volume_type", "image_format")}),
        (_("State and sizes"), {"fields": ("state", "capacity", "snap_cap", "used", "snap_length")}),
        (_("Lineage"), {"fields": ("source_volume", "parent_snapshot", "current_snapshot")}),
        (_("Times"), {"fields": ("created", "modified", "deleted_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_snapshots=count_of(Snapshot, "volume"),
            n_attachments=count_of(VolumeAttachment, "volume"),
        )

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), obj.state)

    @admin.display(description=_("capacity"), ordering="capacity")
    def capacity_h(self, obj):
        return human_bytes(obj.capacity)

    @admin.display(description=_("used"), ordering="used")
    def used_h(self, obj):
        return human_bytes(obj.used)

    @admin.display(description=_("snapshots' size"), ordering="snap_length")
    def snap_length_h(self, obj):
        return format_html("{} / {}", human_bytes(obj.snap_length), human_bytes(obj.snap_cap))

    @admin.display(description=_("snapshots"), ordering="n_snapshots")
    def snapshot_count(self, obj):
        return obj.n_snapshots

    @admin.display(description=_("VMs"), ordering="n_attachments")
    def attachment_count(self, obj):
        return obj.n_attachments

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from volumes.console import volume_page

        extra = dict(extra_context or {})
        volume = self.get_object(request, unquote(object_id))
        if volume is not None:
            extra["page"] = volume_page(volume)
            extra["volume"] = volume
            extra["can_repair"] = can_run_repairs(request.user)
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:object_id>/reset-state/", view(self.reset_state_view), name="volumes_volume_reset_state"),
            path("<int:object_id>/force-delete/", view(self.force_delete_view), name="volumes_volume_force_delete"),
            path("refresh-usage/", view(self.refresh_usage_view), name="volumes_volume_refresh_usage"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Refresh usage from the files (preview first)"), permissions=["run_repairs"])
    def refresh_usage_action(self, request, queryset):
        query = urlencode([("volume", v.pk) for v in queryset])
        return HttpResponseRedirect(f"{reverse('admin:volumes_volume_refresh_usage')}?{query}")

    def _volume_url(self, volume) -> str:
        return reverse("admin:volumes_volume_change", args=[volume.pk])

    def reset_state_view(self, request, object_id):
        """GET: what the files support; POST: apply that proposal (compare-and-set)."""
        self.guard_repairs(request)
        volume = get_object_or_404(Volume, pk=object_id)
        if request.method == "POST":
            try:
                with neutral_language():
                    repair.reset_state(
                        actor=console_actor(request),
                        volume=volume,
                        expected_from=int(request.POST["expected_from"]),
                        to_state=int(request.POST["to_state"]),
                    )
            except errors.ServiceError as exc:
                self.message_user(request, service_error_text(exc), messages.ERROR)
            except (KeyError, ValueError):
                self.message_user(request, gettext("The form was incomplete."), messages.ERROR)
            else:
                volume.refresh_from_db()
                self.message_user(
                    request,
                    gettext("Volume %(name)s is now %(state)s.") % {"name": volume.name, "state": volume.get_state_display()},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._volume_url(volume))
        proposal = repair.reset_state_preview(volume=volume)
        context = self.repair_context(
            request, gettext("Reset state of %(name)s: preview") % {"name": volume.name}, volume=volume, proposal=proposal
        )
        return TemplateResponse(request, "admin/volumes/reset_state.html", context)

    def force_delete_view(self, request, object_id):
        """GET: the files and records a force delete touches; POST: queue it."""
        self.guard_repairs(request)
        volume = get_object_or_404(Volume, pk=object_id)
        if request.method == "POST":
            try:
                with neutral_language():
                    operation = repair.force_delete(
                        actor=console_actor(request), volume=volume, expected_state=int(request.POST["expected_state"])
                    )
            except errors.ServiceError as exc:
                self.message_user(request, service_error_text(exc), messages.ERROR)
            except (KeyError, ValueError):
                self.message_user(request, gettext("The form was incomplete."), messages.ERROR)
            else:
                self.message_user(
                    request,
                    gettext("Deletion of %(name)s queued as operation %(uuid)s.") % {"name": volume.name, "uuid": operation.uuid},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._volume_url(volume))
        plan = repair.force_delete_preview(volume=volume)
        context = self.repair_context(
            request, gettext("Force delete %(name)s: preview") % {"name": volume.name}, volume=volume, plan=plan
        )
        return TemplateResponse(request, "admin/volumes/force_delete.html", context)

    def refresh_usage_view(self, request):
        """GET: sizes the files measure against the database (?volume=pk, ?pool=uuid); POST: write them."""
        self.guard_repairs(request)
        source = request.POST if request.method == "POST" else request.GET
        volume_ids = [int(v) for v in source.getlist("volume") if v.isdigit()]
        pool_uuids = source.getlist("pool")
        try:
            pools = repair.pool_targets(pool_uuids) if pool_uuids else None
        except errors.ServiceError as exc:
            self.message_user(request, service_error_text(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:volumes_pool_changelist"))
        volumes = list(Volume.objects.filter(pk__in=volume_ids)) if volume_ids else None
        applied = request.method == "POST" and source.get("apply") == "1"
        with neutral_language():
            report = repair.refresh_usage(actor=console_actor(request), pools=pools, volumes=volumes, dry_run=not applied)
        if applied:
            self.message_user(
                request,
                gettext("%(count)d size(s) written.") % {"count": len(report.changes)},
                messages.SUCCESS if not report.errors else messages.WARNING,
            )
        context = self.repair_context(
            request,
            gettext("Refresh usage: result") if applied else gettext("Refresh usage: preview (nothing changed yet)"),
            report=report,
            applied=applied,
            targets=[("volume", v) for v in volume_ids] + [("pool", p) for p in pool_uuids],
        )
        return TemplateResponse(request, "admin/volumes/refresh_usage.html", context)


@admin.register(PoolMount)
class PoolMountAdmin(ConsoleAdmin):
    """Where hosts mount pools (edited on the pool's page)."""

    list_display = ("pool", "host", "mount_path")
    list_filter = (("pool", related(_("pool"))), ("host__cluster", related(_("cluster"))))
    list_select_related = ("pool", "host")
    search_fields = ("mount_path", "pool__name", "host__name", "host__uuid")


@admin.register(VolumeAttachment)
class VolumeAttachmentAdmin(ConsoleAdmin):
    """VM attachments as reported through the API."""

    list_display = ("volume", "vm_uuid", "vm_name", "vm_type", "device", "host_uuid", "created")
    list_filter = (("volume__pool", related(_("pool"))), ("volume__tenant", related(_("tenant"))))
    list_select_related = ("volume",)
    search_fields = ("vm_uuid", "vm_name", "volume__name", "volume__uuid")


@admin.register(Snapshot)
class SnapshotAdmin(ConsoleAdmin):
    """Snapshots (layers of a volume's tree)."""

    list_display = ("name", "uuid", "volume", "parent", "status_badge", "size_h", "layer_name", "created")
    list_filter = (
        ("status", choices(_("status"))),
        ("volume__cluster", related(_("cluster"))),
        ("volume__pool", related(_("pool"))),
        ("volume__tenant", related(_("tenant"))),
    )
    list_select_related = ("volume", "parent")
    search_fields = ("name", "uuid", "volume__name", "volume__uuid")

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        return badge(obj.get_status_display(), obj.status, kind="ok" if obj.status == SnapshotStatus.AVAILABLE else "")

    @admin.display(description=_("size"), ordering="size")
    def size_h(self, obj):
        return human_bytes(obj.size)


@admin.register(Operation)
class OperationAdmin(ConsoleAdmin):
    """Long-running operations: progress, phase, bytes, error, owner; retry where safe."""

    list_display = (
        "kind", "target", "state_badge", "progress_bar", "phase", "bytes_h", "error", "owner", "requested_by",
        "attempts", "created", "finished",
    )
    list_filter = (
        ("state", choices(_("state"))),
        ("kind", choices(_("kind"))),
        ("volume__cluster", related(_("cluster"))),
        ("volume__pool", related(_("pool"))),
        ("volume__tenant", related(_("tenant"))),
    )
    list_select_related = ("volume",)
    search_fields = ("uuid", "target_uuid", "volume__name", "requested_by", "owner")
    actions = ["retry_action"]
    fieldsets = (
        (None, {"fields": ("uuid", "kind", "state", "volume", "target_type", "target_uuid", "task", "params")}),
        (_("Progress"), {"fields": ("phase", "progress", "bytes_done", "bytes_total")}),
        (_("Error"), {"fields": ("error_scode", "error", "error_detail")}),
        (_("Lease"), {"fields": ("requested_by", "owner", "lease_expires_at", "attempts", "created", "started", "finished")}),
    )

    @admin.display(description=_("target"))
    def target(self, obj):
        if obj.volume_id:
            url = reverse("admin:volumes_volume_change", args=[obj.volume_id])
            label = obj.volume.name if obj.target_type == "volume" else f"{obj.target_type} {obj.target_uuid} ({obj.volume.name})"
            return format_html('<a href="{}">{}</a>', url, label)
        return f"{obj.target_type} {obj.target_uuid}"

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), obj.state)

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj):
        return progress_bar(obj.progress)

    @admin.display(description=_("bytes"))
    def bytes_h(self, obj):
        if not obj.bytes_total:
            return human_bytes(obj.bytes_done) if obj.bytes_done else "-"
        return format_html("{} / {}", human_bytes(obj.bytes_done), human_bytes(obj.bytes_total))

    @admin.display(description=_("error"))
    def error(self, obj):
        if not obj.error_scode and not obj.error_message:
            return "-"
        return format_html(
            '<span class="ss-error" title="{}">{}: {}</span>',
            obj.error_detail[:2000],
            obj.error_scode,
            localized_error(obj.error_scode, obj.error_message),
        )

    def get_urls(self):
        return [
            path("retry/", self.admin_site.admin_view(self.retry_view), name="volumes_operation_retry"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Retry failed operations (preview first)"), permissions=["run_repairs"])
    def retry_action(self, request, queryset):
        query = urlencode([("operation", o.pk) for o in queryset])
        return HttpResponseRedirect(f"{reverse('admin:volumes_operation_retry')}?{query}")

    def retry_view(self, request):
        """GET: which of the chosen operations can be retried safely and why not; POST: retry those."""
        self.guard_repairs(request)
        source = request.POST if request.method == "POST" else request.GET
        ids = [int(v) for v in source.getlist("operation") if v.isdigit()]
        operations = list(Operation.objects.filter(pk__in=ids).select_related("volume", "volume__pool").order_by("-created"))
        if request.method == "POST" and source.get("apply") == "1":
            retried = 0
            for operation in operations:
                try:
                    with neutral_language():
                        new = repair.operation_retry(actor=console_actor(request), operation=operation)
                except errors.ServiceError as exc:
                    self.message_user(request, service_error_text(exc), messages.ERROR)
                else:
                    retried += 1
                    self.message_user(
                        request, gettext("Queued %(uuid)s again as %(new)s.") % {"uuid": operation.uuid, "new": new.uuid}
                    )
            return HttpResponseRedirect(reverse("admin:volumes_operation_changelist") + ("" if not retried else "?state__exact=queued"))
        rows = [(operation, repair.operation_retry_check(operation)) for operation in operations]
        context = self.repair_context(
            request,
            gettext("Retry operations: preview"),
            rows=rows,
            retryable=sum(1 for _, reason in rows if not reason),
            targets=[("operation", o.pk) for o in operations],
        )
        return TemplateResponse(request, "admin/volumes/retry.html", context)


@admin.register(AuditEvent)
class AuditEventAdmin(ConsoleAdmin):
    """The audit trail: who asked what, from which state to which, with what result."""

    list_display = ("created", "actor", "action", "object_type", "object_uuid", "volume", "change", "result_badge", "message_text")
    list_filter = (
        ("result", titled(admin.AllValuesFieldListFilter, _("result"))),
        ("object_type", titled(admin.AllValuesFieldListFilter, _("object type"))),
        ("volume__cluster", related(_("cluster"))),
        ("volume__pool", related(_("pool"))),
        ("volume__tenant", related(_("tenant"))),
    )
    list_select_related = ("volume",)
    search_fields = ("actor", "action", "object_uuid", "message", "volume__name", "volume__uuid")
    date_hierarchy = None

    @admin.display(description=_("state change"))
    def change(self, obj):
        if not obj.from_state and not obj.to_state:
            return "-"
        return f"{obj.from_state or '-'} → {obj.to_state or '-'}"

    @admin.display(description=_("result"), ordering="result")
    def result_badge(self, obj):
        return badge(obj.result, obj.result, kind="ok" if obj.result == "ok" else "bad")

    @admin.display(description=_("message"))
    def message_text(self, obj):
        return localized_event_message(obj.message)


@admin.register(ApiToken)
class ApiTokenAdmin(ConsoleAdmin):
    """API tokens (only their hash is stored; issue them with `manage.py create_token`)."""

    list_display = ("name", "key_prefix", "tenant", "created", "expires_at", "revoked_at", "last_used")
    list_filter = (("tenant", related(_("tenant"))),)
    list_select_related = ("tenant",)
    search_fields = ("name", "key_prefix")
    fieldsets = ((None, {"fields": ("name", "key_prefix", "tenant", "created", "expires_at", "revoked_at", "last_used")}),)
