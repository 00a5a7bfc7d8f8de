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
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext, pgettext_lazy
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
    short_uuid,
)
from volumes.admin.actions import VolumeActionsMixin
from volumes.admin.columns import count_column
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


class OriginFilter(admin.SimpleListFilter):
    """Where volumes come from: linked clones, full clones (and flattened ones), restores, or nothing."""

    title = _("source")
    parameter_name = "origin"

    def lookups(self, request, model_admin):
        return [
            ("linked", pgettext_lazy("volume origin", "linked clones")),
            ("full", pgettext_lazy("volume origin", "full clones")),
            ("restored", pgettext_lazy("volume origin", "restored from a backup")),
            ("none", pgettext_lazy("volume origin", "neither (created or imported)")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "linked":
            return queryset.filter(parent_snapshot__isnull=False)
        if value == "full":
            return queryset.filter(source_volume__isnull=False, parent_snapshot__isnull=True)
        if value == "restored":
            return queryset.filter(restored_from_backup_uuid__isnull=False)
        if value == "none":
            return queryset.filter(
                source_volume__isnull=True,
                parent_snapshot__isnull=True,
                restored_from_backup_uuid__isnull=True,
            )
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    """Deleted volumes are hidden unless asked for (or a state filter names their state)."""

    title = _("deleted volumes")
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("show", _("shown too")), ("only", _("only them"))]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": _("hidden"),
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value()
        if value == "show":
            return queryset
        if value == "only":
            return queryset.filter(state=EventState.DELETED)
        if "state__exact" in request.GET:
            return queryset  # an explicit state filter decides
        return queryset.exclude(state=EventState.DELETED)


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
class VolumeAdmin(VolumeActionsMixin, ConsoleAdmin):
    """Volumes: filters, the per-volume page (tree, clones, backups, timeline) and its repairs."""

    change_form_template = "admin/volumes/volume/change_form.html"
    inlines = [AttachmentInline]
    list_display = (
        "name",
        "short_uuid",
        "tenant",
        "cluster",
        "pool",
        "type_short",
        "state_badge",
        "capacity_h",
        "used_h",
        "snap_length_h",
        "snapshot_count",
        "attachment_count",
        "source",
        "created_short",
    )
    list_filter = (
        ("cluster", related(_("cluster"))),
        ("pool", related(_("pool"))),
        ("tenant", related(_("tenant"))),
        ("volume_type", choices(_("type"))),
        ("state", choices(_("state"))),
        OriginFilter,
        DeletedFilter,
    )
    list_select_related = ("tenant", "cluster", "pool", "source_volume", "clone_source_snapshot")
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
        (
            _("Lineage"),
            {
                "fields": (
                    "source_volume",
                    "parent_snapshot",
                    "clone_source_snapshot",
                    "restored_from",
                    "clone_list",
                    "current_snapshot",
                )
            },
        ),
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
        # Each size stays on one line; the pair may break at the slash (the list fits 1440 px).
        return format_html(
            '<span class="ss-nowrap">{}</span> / <span class="ss-nowrap">{}</span>',
            human_bytes(obj.snap_length),
            human_bytes(obj.snap_cap),
        )

    snapshot_count = count_column(pgettext_lazy("count column", "snapshots"), "n_snapshots")
    attachment_count = count_column(pgettext_lazy("count column", "VMs"), "n_attachments")

    # -- fit and lineage (list columns and the page's lineage fields) --

    @admin.display(description=_("type"), ordering="volume_type")
    def type_short(self, obj):
        return obj.get_volume_type_display()

    @admin.display(description=_("UUID"), ordering="uuid")
    def short_uuid(self, obj):
        return short_uuid(obj.uuid)

    @admin.display(description=_("created"), ordering="created")
    def created_short(self, obj):
        created = timezone.localtime(obj.created)
        return format_html(
            '<span title="{}"><span class="ss-nowrap">{}</span> <span class="ss-nowrap">{}</span></span>',
            date_format(created, "DATETIME_FORMAT"),
            created.strftime("%Y-%m-%d"),
            created.strftime("%H:%M"),
        )

    @admin.display(description=_("source"))
    def source(self, obj):
        """What the volume was made from: a clone's source volume (and snapshot), a restore's backup."""
        if obj.source_volume_id:
            kind = (
                pgettext("clone kind", "linked") if obj.parent_snapshot_id else pgettext("clone kind", "full")
            )
            snapshot = obj.clone_source_snapshot
            label = f"{obj.source_volume.name}@{snapshot.name}" if snapshot else obj.source_volume.name
            return format_html(
                '<span class="ss-origin">{}</span> <a href="{}" title="{}">{}</a>',
                kind,
                reverse("admin:volumes_volume_change", args=[obj.source_volume_id]),
                obj.source_volume.uuid,
                label,
            )
        if obj.restored_from_backup_uuid:
            uuid = str(obj.restored_from_backup_uuid)
            return format_html(
                '<span class="ss-nowrap"><span class="ss-origin">{}</span> <a href="{}?q={}" title="{}">{}</a></span>',
                gettext("backup"),
                reverse("admin:backups_backup_changelist"),
                uuid,
                uuid,
                uuid[:8],
            )
        return "-"

    @admin.display(description=_("restored from backup"))
    def restored_from(self, obj):
        """A link to the backup the volume was restored from; backups are another app's rows, found
        through the volume's reverse relation (this app imports nothing of it)."""
        if obj is None or not obj.restored_from_backup_uuid:
            return "-"
        backups = Volume._meta.get_field("backups").related_model
        found = backups.objects.filter(uuid=obj.restored_from_backup_uuid).values_list("pk", "name").first()
        if found is None:
            return format_html(
                "{} ({})", obj.restored_from_backup_uuid, gettext("the backup is no longer recorded")
            )
        return format_html(
            '<a href="{}" id="ss-restored-from">{}</a> ({})',
            reverse("admin:backups_backup_change", args=[found[0]]),
            found[1],
            obj.restored_from_backup_uuid,
        )

    @admin.display(description=_("its clones"))
    def clone_list(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}?source_volume__id__exact={}&amp;deleted=show">{}</a>',
            reverse("admin:volumes_volume_changelist"),
            obj.pk,
            gettext("list the volumes cloned from this one"),
        )

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
