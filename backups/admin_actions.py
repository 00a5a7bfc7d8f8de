"""The console's backup actions: back up a volume's snapshot into a backup point, restore a backup
into a new volume, verify a backup, protect or unprotect it. Each previews on GET (the chain, the
bytes it writes or copies from recorded sizes, the room left) and runs on POST the same service the
API view or the command calls (`backups.services`), as the console user; see
`sharestore.core.console_actions`."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from backups import selectors as backup_selectors
from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from backups.services.common import default_compress
from backups.services.create import backup_add, backup_plan
from backups.services.protect import backup_protect
from backups.services.restore import backup_restore
from backups.services.verify import backup_verify
from sharestore.core.console_actions import action_view, bound_data
from volumes import selectors
from volumes.admin.actions import SnapshotChoice, pool_room, snapshot_path
from volumes.models import Pool, Tenant, Volume

BACKUP_PERMISSION = "backups.backup_volume"
RESTORE_PERMISSION = "backups.restore_backup"
VERIFY_PERMISSION = "backups.verify_backup"
PROTECT_PERMISSION = "backups.protect_backup"


def backup_chain(backup: Backup) -> list[Backup]:
    """The backup and the backups it is incremental on, full one first."""
    chain, node, seen = [], backup, set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = node.base
    return list(reversed(chain))


def point_room(point: BackupPoint) -> dict:
    used = backup_selectors.backup_point_used(point)
    return {"point": point, "used": used, "capacity": point.capacity, "free": point.capacity - used}


# -- forms ----------------------------------------------------------------------------------------------


class BackupCreateForm(forms.Form):
    """Back up a snapshot of the volume into a backup point."""

    name = forms.CharField(label=pgettext_lazy("action", "backup name"), max_length=128)
    desc = forms.CharField(label=pgettext_lazy("action", "description"), max_length=1024, required=False)
    compress = forms.BooleanField(label=_("compress (zstd)"), required=False)
    full = forms.BooleanField(
        label=pgettext_lazy("action", "full backup"),
        required=False,
        help_text=_("Not incremental on the previous backup."),
    )
    protected = forms.BooleanField(label=pgettext_lazy("action", "protected"), required=False)

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        points = BackupPoint.objects.filter(cluster=volume.cluster).filter(
            Q(tenant__isnull=True) | Q(tenant=volume.tenant)
        )
        self.fields = {
            "snapshot": SnapshotChoice(volume),
            "backup_point": forms.ModelChoiceField(
                points.order_by("name"), to_field_name="uuid", label=_("backup point")
            ),
            **self.fields,
        }


class RestoreForm(forms.Form):
    """Restore a backup into a new volume of a tenant in a pool."""

    name = forms.CharField(label=_("name of the new volume"), max_length=128)

    def __init__(self, *args, backup: Backup, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"] = forms.ModelChoiceField(
            Tenant.objects.order_by("name"), to_field_name="uuid", label=_("tenant")
        )
        self.fields["pool"] = forms.ModelChoiceField(
            Pool.objects.filter(cluster=backup.cluster).order_by("name"),
            to_field_name="uuid",
            label=pgettext_lazy("action", "target pool"),
        )


class VerifyForm(forms.Form):
    """Verify a backup (nothing to choose)."""


class ProtectForm(forms.Form):
    """Protect or unprotect a backup."""

    protected = forms.TypedChoiceField(
        label=pgettext_lazy("action", "protection"),
        choices=[("1", pgettext_lazy("action", "protect")), ("0", pgettext_lazy("action", "unprotect"))],
        coerce=lambda value: value == "1",
    )


# -- the views ------------------------------------------------------------------------------------------


class BackupActionsMixin:
    """The backup actions, mixed into BackupAdmin (`get_action_urls` joins its URLs)."""

    def get_action_urls(self):
        view = self.admin_site.admin_view
        return [
            path("create/", view(self.backup_create_view), name="backups_backup_create"),
            path("<int:object_id>/restore/", view(self.backup_restore_view), name="backups_backup_restore"),
            path("<int:object_id>/verify/", view(self.backup_verify_view), name="backups_backup_verify"),
            path("<int:object_id>/protect/", view(self.backup_protect_view), name="backups_backup_protect"),
        ]

    def _done(self, request, url: str, text: str, level=messages.SUCCESS):
        self.message_user(request, text, level)
        return HttpResponseRedirect(url)

    def _backup_done(self, request, backup: Backup, text: str, level=messages.SUCCESS):
        return self._done(request, reverse("admin:backups_backup_change", args=[backup.pk]), text, level)

    def backup_create_view(self, request):
        """Back up a snapshot of a volume (?volume=pk; ?snapshot=uuid preselects it)."""
        volume_id = request.POST.get("volume") or request.GET.get("volume", "")
        volume = get_object_or_404(
            Volume.objects.select_related("cluster", "tenant", "current_snapshot"),
            pk=int(volume_id) if volume_id.isdigit() else 0,
        )
        initial = {"compress": default_compress(), **request.GET.dict()}

        def point_of(data) -> BackupPoint:
            return backup_selectors.backup_point_get(
                uuid=data["backup_point"].uuid, cluster=volume.cluster, tenant=volume.tenant
            )

        def preview(data):
            point = point_of(data)
            base, estimate = backup_plan(
                volume=volume, snapshot=data["snapshot"], point=point, full=data["full"]
            )
            return {
                "target": data["snapshot"],
                "target_path": snapshot_path(data["snapshot"]),
                "base": base,
                "estimate": estimate,
                "encrypted": point.encrypts,
                "room": point_room(point),
            }

        def apply(data, actor):
            return backup_add(
                actor=actor,
                volume=volume,
                snapshot=data["snapshot"],
                backup_point=point_of(data),
                name=data["name"],
                desc=data["desc"],
                compress=data["compress"],
                full=data["full"],
                protected=data["protected"],
            )

        def done(backup):
            backup.refresh_from_db()
            return self._backup_done(
                request,
                backup,
                gettext("Backup %(name)s of %(volume)s: %(status)s.")
                % {"name": backup.name, "volume": volume.name, "status": backup.get_status_display()},
            )

        return action_view(
            self,
            request,
            permission=BACKUP_PERMISSION,
            form=BackupCreateForm(bound_data(request), volume=volume, initial=initial),
            title=gettext("Back up %(name)s") % {"name": volume.name},
            template="admin/backups/actions/backup_create.html",
            preview=preview,
            apply=apply,
            done=done,
            context={"volume": volume},
        )

    def _backup(self, object_id) -> Backup:
        return get_object_or_404(
            Backup.objects.select_related("backup_point", "cluster", "tenant", "volume", "base"),
            pk=object_id,
        )

    def backup_restore_view(self, request, object_id):
        """Restore a backup into a new volume."""
        backup = self._backup(object_id)
        initial = {"tenant": backup.tenant.uuid}
        if backup.volume is not None:
            initial["pool"] = backup.volume.pool.uuid
        initial.update(request.GET.dict())

        def pool_of(data) -> Pool:
            return selectors.pool_get(uuid=data["pool"].uuid, cluster=backup.cluster, tenant=data["tenant"])

        def preview(data):
            chain = backup_chain(backup)
            return {
                "chain": chain,
                "chain_bytes": sum(b.size for b in chain),
                "copy_bytes": backup.volume_capacity,
                "room": pool_room(pool_of(data)),
                "restorable": backup.status == BackupStatus.COMPLETED,
            }

        def apply(data, actor):
            return backup_restore(
                actor=actor,
                backup=backup,
                tenant=data["tenant"],
                cluster=backup.cluster,
                pool=pool_of(data),
                name=data["name"],
            )

        def done(volume):
            volume.refresh_from_db()
            return self._done(
                request,
                reverse("admin:volumes_volume_change", args=[volume.pk]),
                gettext("Restore of backup %(backup)s into %(name)s: %(state)s.")
                % {"backup": backup.name, "name": volume.name, "state": volume.get_state_display()},
            )

        return action_view(
            self,
            request,
            permission=RESTORE_PERMISSION,
            form=RestoreForm(bound_data(request), backup=backup, initial=initial),
            title=gettext("Restore backup %(name)s") % {"name": backup.name},
            template="admin/backups/actions/restore.html",
            preview=preview,
            apply=apply,
            done=done,
            context={"backup": backup},
        )

    def backup_verify_view(self, request, object_id):
        """Verify a backup: `qemu-img check` its chain and recompute its chunk digests (on a worker)."""
        backup = self._backup(object_id)

        def preview(_data):
            chain = backup_chain(backup)
            return {"chain": chain, "read_bytes": sum(b.size for b in chain), "ready": True}

        def done(_verification):
            text = gettext(
                "Verification of backup %(name)s is queued: a worker reads the backup (never the web "
                "request); its result shows here and in the operations list when it finishes."
            ) % {"name": backup.name}
            return self._backup_done(request, backup, text)

        return action_view(
            self,
            request,
            permission=VERIFY_PERMISSION,
            form=VerifyForm(bound_data(request)),
            title=gettext("Verify backup %(name)s") % {"name": backup.name},
            template="admin/backups/actions/verify.html",
            preview=preview,
            apply=lambda _data, actor: backup_verify(actor=actor, backup=backup, wait=False),
            done=done,
            context={"backup": backup},
        )

    def backup_protect_view(self, request, object_id):
        """Protect a backup (never deleted, by request or expiry) or unprotect it."""
        backup = self._backup(object_id)
        initial = {"protected": "0" if backup.protected else "1"}

        def done(result):
            text = (
                gettext("Backup %(name)s is protected.")
                if result.protected
                else gettext("Backup %(name)s is no longer protected.")
            ) % {"name": backup.name}
            return self._backup_done(request, backup, text)

        return action_view(
            self,
            request,
            permission=PROTECT_PERMISSION,
            form=ProtectForm(bound_data(request), initial=initial),
            title=gettext("Protection of backup %(name)s") % {"name": backup.name},
            template="admin/backups/actions/protect.html",
            preview=lambda data: {"protect": data["protected"], "ready": True},
            apply=lambda data, actor: backup_protect(actor=actor, backup=backup, protected=data["protected"]),
            done=done,
            context={"backup": backup},
        )
