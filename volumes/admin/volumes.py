"""Console screens of volumes and snapshots: the per-volume page (tree, clones, backups, timeline)
and its repairs (reset state, force delete, refresh usage)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.console import (
    ConsoleAdmin,
    badge,
    can_run_repairs,
    choices,
    console_actor,
    count_of,
    human_bytes,
    neutral_language,
    related,
    service_error_text,
)
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Snapshot, Volume, VolumeAttachment
from volumes.services import repair

VOLUME_COLOURS = {
    EventState.AVAILABLE: "ok",
    EventState.ERROR: "bad",
    EventState.DELETED: "off",
    EventState.DELETING: "off",
    SnapshotStatus.HIDDEN: "off",
}


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
        "name",
        "uuid",
        "tenant",
        "cluster",
        "pool",
        "volume_type",
        "state_badge",
        "capacity_h",
        "used_h",
        "snap_length_h",
        "snapshot_count",
        "attachment_count",
        "created",
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
        (
            None,
            {
                "fields": (
                    "uuid",
                    "name",
                    "tenant",
                    "namespace",
                    "cluster",
                    "pool",
                    "volume_type",
                    "image_format",
                )
            },
        ),
        (_("State and sizes"), {"fields": ("state", "capacity", "snap_cap", "used", "snap_length")}),
        (_("Lineage"), {"fields": ("source_volume", "parent_snapshot", "current_snapshot")}),
        (_("Times"), {"fields": ("created", "modified", "deleted_at")}),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_snapshots=count_of(Snapshot, "volume"),
                n_attachments=count_of(VolumeAttachment, "volume"),
            )
        )

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), obj.state, colours=VOLUME_COLOURS)

    @admin.display(description=_("capacity"), ordering="capacity")
    def capacity_h(self, obj):
        return human_bytes(obj.capacity)

    @admin.display(description=_("used"), ordering="used")
    def used_h(self, obj):
        return human_bytes(obj.used)

    @admin.display(description=_("snapshots' size"), ordering="snap_length")
    def snap_length_h(self, obj):
        return format_html("{} / {}", human_bytes(obj.snap_length), human_bytes(obj.snap_cap))

    @admin.display(description=pgettext_lazy("count column", "snapshots"), ordering="n_snapshots")
    def snapshot_count(self, obj):
        return obj.n_snapshots

    @admin.display(description=pgettext_lazy("count column", "VMs"), ordering="n_attachments")
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
            path(
                "<int:object_id>/reset-state/", view(self.reset_state_view), name="volumes_volume_reset_state"
            ),
            path(
                "<int:object_id>/force-delete/",
                view(self.force_delete_view),
                name="volumes_volume_force_delete",
            ),
            path("refresh-usage/", view(self.refresh_usage_view), name="volumes_volume_refresh_usage"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Refresh usage from the files (preview first)"), permissions=["run_repairs"])
    def refresh_usage_action(self, request, queryset):
        query = urlencode([("volume", v.pk) for v in queryset])
        return HttpResponseRedirect(f"{reverse('admin:volumes_volume_refresh_usage')}?{query}")

    def _volume_url(self, volume) -> str:
        return reverse("admin:volumes_volume_change", args=[volume.pk])

    def _apply_repair(self, request, apply, success, redirect_to):
        """Run a previewed repair from its POSTed form (audited in the site language): `success(result)`
        in the reader's language and a redirect, or the refusal as an error message and None, so the
        preview is shown again."""
        try:
            with neutral_language():
                result = apply()
        except errors.ServiceError as exc:
            self.message_user(request, service_error_text(exc), messages.ERROR)
        except (KeyError, ValueError):
            self.message_user(request, gettext("The form was incomplete."), messages.ERROR)
        else:
            self.message_user(request, success(result), messages.SUCCESS)
            return HttpResponseRedirect(redirect_to)
        return None

    def _volume_repair(self, request, object_id, *, apply, done, preview, title, template):
        """A repair page of one volume: GET shows `preview(volume)` (context entries); POST runs
        `apply(volume, form, actor)` and redirects with the message `done(volume, result)`."""
        self.guard_repairs(request)
        volume = get_object_or_404(Volume, pk=object_id)
        if request.method == "POST":
            answer = self._apply_repair(
                request,
                lambda: apply(volume, request.POST, console_actor(request)),
                lambda result: done(volume, result),
                self._volume_url(volume),
            )
            if answer:
                return answer
        context = self.repair_context(
            request, title % {"name": volume.name}, volume=volume, **preview(volume)
        )
        return TemplateResponse(request, template, context)

    def reset_state_view(self, request, object_id):
        """GET: what the files support; POST: apply that proposal (compare-and-set)."""

        def reset_done(volume, _proposal):
            volume.refresh_from_db()
            return gettext("Volume %(name)s is now %(state)s.") % {
                "name": volume.name,
                "state": volume.get_state_display(),
            }

        return self._volume_repair(
            request,
            object_id,
            apply=lambda volume, form, actor: repair.reset_state(
                actor=actor,
                volume=volume,
                expected_from=int(form["expected_from"]),
                to_state=int(form["to_state"]),
            ),
            done=reset_done,
            preview=lambda volume: {"proposal": repair.reset_state_preview(volume=volume)},
            title=gettext("Reset state of %(name)s: preview"),
            template="admin/volumes/reset_state.html",
        )

    def force_delete_view(self, request, object_id):
        """GET: the files and records a force delete touches; POST: queue it."""
        return self._volume_repair(
            request,
            object_id,
            apply=lambda volume, form, actor: repair.force_delete(
                actor=actor, volume=volume, expected_state=int(form["expected_state"])
            ),
            done=lambda volume, operation: (
                gettext("Deletion of %(name)s queued as operation %(uuid)s.")
                % {"name": volume.name, "uuid": operation.uuid}
            ),
            preview=lambda volume: {"plan": repair.force_delete_preview(volume=volume)},
            title=gettext("Force delete %(name)s: preview"),
            template="admin/volumes/force_delete.html",
        )

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
            report = repair.refresh_usage(
                actor=console_actor(request), pools=pools, volumes=volumes, dry_run=not applied
            )
        if applied:
            self.message_user(
                request,
                gettext("%(count)d size(s) written.") % {"count": len(report.changes)},
                messages.SUCCESS if not report.errors else messages.WARNING,
            )
        context = self.repair_context(
            request,
            gettext("Refresh usage: result")
            if applied
            else gettext("Refresh usage: preview (nothing changed yet)"),
            report=report,
            applied=applied,
            targets=[("volume", v) for v in volume_ids] + [("pool", p) for p in pool_uuids],
        )
        return TemplateResponse(request, "admin/volumes/refresh_usage.html", context)


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
        return badge(
            obj.get_status_display(),
            obj.status,
            kind="ok" if obj.status == SnapshotStatus.AVAILABLE else "",
            colours=VOLUME_COLOURS,
        )

    @admin.display(description=_("size"), ordering="size")
    def size_h(self, obj):
        return human_bytes(obj.size)
