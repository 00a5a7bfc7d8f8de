"""The console's backup screens: backup points with usage bars, add/edit through the services and
reconcile; backups browsable (view-only: only the backup service writes them)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from backups import models as backup_models
from backups.admin_actions import BackupActionsMixin
from backups.choices import BackupPointStatus, BackupStatus
from backups.models import Backup, BackupPoint
from backups.selectors import backup_point_used
from backups.services.points import (
    EDITABLE_BACKUP_POINT_FIELDS,
    backup_point_create,
    backup_point_create_check,
    backup_point_update,
    backup_point_update_check,
)
from sharestore.core.console import (
    ConsoleAdmin,
    badge,
    choices,
    count_of,
    health_badge,
    human_bytes,
    localized_error,
    location_filters,
    related,
    repair_redirect,
    rows_link,
    sum_of,
)
from sharestore.core.sizes import SizeField
from sharestore.core.templatetags.console_tags import bar
from volumes.admin.columns import form_only_column
from volumes.admin.locations import LocationAdmin, LocationForm


class BackupPointForm(LocationForm):
    """Add or edit a backup point; the directory must exist and be writable."""

    # Write-only: never rendered back (the stored one is sealed; docs/backups.md). Left empty on an
    # edit, the password is kept.
    password = forms.CharField(
        label=_("password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Fill in to encrypt every backup written here. Left empty on an edit: unchanged."),
    )
    remove_password = forms.BooleanField(
        label=_("remove the password"),
        required=False,
        help_text=_("Later backups are not encrypted (refused while encrypted backups exist)."),
    )
    capacity = SizeField(
        label=_("capacity"),
        required=False,
        help_text=_(
            "Bytes backups may occupy: bytes, or a number with a unit (500G, 2T, 1.5TiB). Empty when "
            "adding: what the filesystem has free now."
        ),
    )
    confirm_capacity = forms.BooleanField(
        label=_("confirm a capacity below what backups occupy"),
        required=False,
        help_text=_("Backups already occupy more: new backups are refused. Tick to save anyway."),
    )

    class Meta:
        model = BackupPoint
        fields = ["name", "cluster", "tenant", "btype", "path", "capacity", "status"]

    def check_create(self, data) -> None:
        backup_point_create_check(
            name=data.get("name"),
            cluster=data.get("cluster"),
            path=data.get("path"),
            capacity=data.get("capacity"),
        )

    def check_update(self, original: BackupPoint, data) -> None:
        backup_point_update_check(backup_point=original, **self.changes())
        self._check_used(original, data.get("capacity"))

    def _check_used(self, point: BackupPoint, capacity) -> None:
        """A capacity below what the backups already occupy: refused unless confirmed."""
        used = backup_point_used(point)
        if capacity is not None and capacity < used:
            refusal = gettext(
                "The capacity (%(capacity)s) is below what the backups already occupy "
                "(%(used)s): tick the confirmation to save it anyway."
            )
            self.hold_below(refusal, capacity=capacity, used=used)

    def changes(self) -> dict:
        changes = {k: v for k, v in self.cleaned_data.items() if k in EDITABLE_BACKUP_POINT_FIELDS}
        if self.cleaned_data.get("remove_password"):
            changes["password"] = ""
        elif self.cleaned_data.get("password"):
            changes["password"] = self.cleaned_data["password"]
        return changes


@admin.register(BackupPoint)
class BackupPointAdmin(LocationAdmin):
    """Backup points: usage bars, add and edit with the directory checked, reconcile."""

    form = BackupPointForm
    editable_fields = (*BackupPointForm.Meta.fields, "password", "remove_password", "confirm_capacity")
    fixed_fields = ("cluster",)
    list_display = (
        "name",
        "uuid",
        "cluster",
        "tenant",
        "btype",
        "status_badge",
        "usage_bar",
        "backup_count",
        "encrypts",
        "path",
    )
    list_filter = location_filters("tenant", _("tenant"), "btype")
    list_select_related = ("cluster", "tenant")
    actions = ["reconcile_action"]
    below_held_warning = _(
        "Backup point %(name)s: its capacity (%(capacity)s) is below what its backups "
        "occupy (%(used)s); new backups are refused until that changes."
    )

    def get_queryset(self, request):
        live = {
            "status__in": [
                s for s in BackupStatus.values if s not in (BackupStatus.DELETED, BackupStatus.FAILED)
            ]
        }
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_backups=count_of(Backup, "backup_point", **live),
                used_bytes=sum_of(Backup, "backup_point", "size", **live),
            )
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj):
        if obj.status == BackupPointStatus.HEALTHY and (obj.used_bytes or 0) > obj.capacity:
            return badge(gettext("over capacity"), "over", kind="bad")
        return health_badge(obj)

    confirm_capacity = form_only_column(_("confirm a capacity below what backups occupy"))

    @admin.display(description=_("encrypts"), boolean=True)
    def encrypts(self, obj):
        return obj.encrypts

    @admin.display(description=_("password"))
    def password(self, obj):
        # Shown to viewers without the change permission: whether there is one, never what it is.
        return gettext("set: backups are encrypted") if obj and obj.encrypts else gettext("none")

    remove_password = form_only_column(_("remove the password"))

    @admin.display(description=_("used / capacity"), ordering="used_bytes")
    def usage_bar(self, obj):
        return bar(obj.used_bytes, obj.capacity)

    @admin.display(description=pgettext_lazy("count column", "backups"), ordering="n_backups")
    def backup_count(self, obj):
        return rows_link("admin:backups_backup_changelist", "backup_point", obj, obj.n_backups)

    def usage_rows(self, obj) -> list:
        import shutil

        rows = [(gettext("backups (recorded sizes) / capacity"), bar(backup_point_used(obj), obj.capacity))]
        try:
            disk = shutil.disk_usage(obj.path)
            rows.append((gettext("filesystem used / size"), bar(disk.total - disk.free, disk.total)))
            rows.append((gettext("filesystem free (what the disk really has)"), human_bytes(disk.free)))
        except OSError:
            pass
        return rows

    def update(self, actor, obj, changes):
        backup_point_update(actor=actor, backup_point=obj, **changes)

    def create(self, request, obj, data):
        point = backup_point_create(
            name=data["name"],
            cluster=data["cluster"],
            path=data["path"],
            capacity=data["capacity"],
            btype=data["btype"],
            tenant=data.get("tenant"),
            password=data.get("password") or None,
        )
        obj.pk, obj.uuid, obj.path = point.pk, point.uuid, point.path

    def save_related(self, request, form, formsets, change):
        # Everything was written by the service.
        return None

    @admin.action(description=_("Reconcile database and files (preview first)"), permissions=["run_repairs"])
    def reconcile_action(self, request, queryset):
        return repair_redirect("admin:volumes_pool_reconcile", "backup_point", queryset)


@admin.register(Backup)
class BackupAdmin(BackupActionsMixin, ConsoleAdmin):
    """Backups of volume snapshots (full or incremental); back up, restore, verify, protect."""

    list_display = (
        "name",
        "uuid",
        "backup_point",
        "tenant",
        "cluster",
        "volume_link",
        "snapshot_name",
        "status",
        "size_h",
        "kind",
        "verification",
        "protected",
        "created",
    )
    list_filter = (
        ("status", choices(_("status"))),
        ("backup_point", related(_("backup point"))),
        ("cluster", related(_("cluster"))),
        ("tenant", related(_("tenant"))),
        "protected",
    )
    list_select_related = ("backup_point", "tenant", "cluster", "volume")
    search_fields = ("name", "uuid", "volume_uuid", "snapshot_uuid", "snapshot_name")

    @admin.display(description=_("volume"), ordering="volume_uuid")
    def volume_link(self, obj):
        if obj.volume_id:
            return format_html(
                '<a href="{}">{}</a>',
                reverse("admin:volumes_volume_change", args=[obj.volume_id]),
                obj.volume.name,
            )
        return str(obj.volume_uuid)

    @admin.display(description=_("size"), ordering="size")
    def size_h(self, obj):
        return human_bytes(obj.size)

    @admin.display(description=_("kind"))
    def kind(self, obj):
        return gettext("incremental") if obj.base_id else gettext("full")

    @admin.display(description=_("last verification"))
    def verification(self, obj):
        # Verification results are recorded by the backup service once it verifies (verify_backups).
        if not obj.verify_result:
            return "-"
        return badge(
            obj.get_verify_result_display(),
            obj.verify_result,
            kind="ok" if obj.verify_result == "ok" else "bad",
        )


# Verification runs (`qemu-img check`, every chunk digest recomputed) are recorded by the backup service.
@admin.register(backup_models.BackupVerification)
class BackupVerificationAdmin(ConsoleAdmin):
    """Verification runs of backups: result, scode, checksums (view-only)."""

    list_display = ("backup", "started", "finished", "result", "scode", "message_text", "actor")
    list_filter = (
        "result",
        ("backup__backup_point", related(_("backup point"))),
        ("backup__tenant", related(_("tenant"))),
    )
    list_select_related = ("backup",)
    search_fields = ("backup__name", "backup__uuid", "message")

    @admin.display(description=_("message"))
    def message_text(self, obj):
        return localized_error(obj.scode, obj.message) if obj.scode else obj.message
