"""The console's backup actions: back up a volume's snapshot into a backup point, restore a backup
into a new volume, verify a backup, protect or unprotect it. Each previews on GET (the chain, the
bytes it writes or copies from recorded sizes, the room left) and runs on POST the same service the
API view or the command calls (`backups.services`), as the console user; see
`sharestore.core.console_actions`."""

from __future__ import annotations

from django import forms
from django.db.models import Q
from django.shortcuts import get_object_or_404
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
from sharestore.core.console_actions import ActionPage, ConsoleAction, ConsoleActionsMixin
from volumes import selectors
from volumes.admin.actions import SnapshotChoice, new_volume_fields, pool_room, snapshot_path
from volumes.models import Pool, Volume

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

    def __init__(self, *args, backup: Backup, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update(new_volume_fields(backup.cluster))


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


class BackupCreateAction(ConsoleAction):
    """Back up a snapshot of a volume (?volume=pk; ?snapshot=uuid preselects it)."""

    page = ActionPage(BACKUP_PERMISSION, BackupCreateForm, "admin/backups/actions/backup_create.html")
    title = _("Back up %(name)s")
    subject_key = "volume"

    def get_subject(self, object_id):
        volume_id = self.request.POST.get("volume") or self.request.GET.get("volume", "")
        return get_object_or_404(
            Volume.objects.select_related("cluster", "tenant", "current_snapshot"),
            pk=int(volume_id) if volume_id.isdigit() else 0,
        )

    def form_options(self) -> dict:
        return {
            "volume": self.subject,
            "initial": {"compress": default_compress(), **self.request.GET.dict()},
        }

    def point_of(self, data) -> BackupPoint:
        volume = self.subject
        return backup_selectors.backup_point_get(
            uuid=data["backup_point"].uuid, cluster=volume.cluster, tenant=volume.tenant
        )

    def preview(self, data):
        snapshot, point = data["snapshot"], self.point_of(data)
        base, estimate = backup_plan(volume=self.subject, snapshot=snapshot, point=point, full=data["full"])
        return {
            "target": snapshot,
            "target_path": snapshot_path(snapshot),
            "base": base,
            "estimate": estimate,
            "encrypted": point.encrypts,
            "room": point_room(point),
        }

    def apply(self, data, actor):
        return backup_add(
            actor=actor,
            volume=self.subject,
            snapshot=data["snapshot"],
            backup_point=self.point_of(data),
            name=data["name"],
            desc=data["desc"],
            compress=data["compress"],
            full=data["full"],
            protected=data["protected"],
        )

    def done(self, backup):
        backup.refresh_from_db()
        words = {"name": backup.name, "volume": self.subject.name, "status": backup.get_status_display()}
        return self.tell(backup, gettext("Backup %(name)s of %(volume)s: %(status)s.") % words)


class BackupAction(ConsoleAction):
    """An action on the backup named by the URL."""

    subject_key = "backup"

    def get_subject(self, object_id):
        return get_object_or_404(
            Backup.objects.select_related("backup_point", "cluster", "tenant", "volume", "base"),
            pk=object_id,
        )


class RestoreAction(BackupAction):
    """Restore a backup into a new volume."""

    page = ActionPage(RESTORE_PERMISSION, RestoreForm, "admin/backups/actions/restore.html")
    title = _("Restore backup %(name)s")

    def form_options(self) -> dict:
        backup = self.subject
        initial = {"tenant": backup.tenant.uuid}
        if backup.volume is not None:
            initial["pool"] = backup.volume.pool.uuid
        return {"backup": backup, "initial": {**initial, **self.request.GET.dict()}}

    def pool_of(self, data) -> Pool:
        return selectors.pool_get(uuid=data["pool"].uuid, cluster=self.subject.cluster, tenant=data["tenant"])

    def preview(self, data):
        backup = self.subject
        chain = backup_chain(backup)
        return {
            "chain": chain,
            "chain_bytes": sum(b.size for b in chain),
            "copy_bytes": backup.volume_capacity,
            "room": pool_room(self.pool_of(data)),
            "restorable": backup.status == BackupStatus.COMPLETED,
        }

    def apply(self, data, actor):
        backup = self.subject
        return backup_restore(
            actor=actor,
            backup=backup,
            tenant=data["tenant"],
            cluster=backup.cluster,
            pool=self.pool_of(data),
            name=data["name"],
        )

    def done(self, volume):
        volume.refresh_from_db()
        words = {"backup": self.subject.name, "name": volume.name, "state": volume.get_state_display()}
        return self.tell(volume, gettext("Restore of backup %(backup)s into %(name)s: %(state)s.") % words)


class VerifyAction(BackupAction):
    """Verify a backup: `qemu-img check` its chain and recompute its chunk digests (on a worker)."""

    page = ActionPage(VERIFY_PERMISSION, VerifyForm, "admin/backups/actions/verify.html")
    title = _("Verify backup %(name)s")

    def preview(self, _data):
        chain = backup_chain(self.subject)
        return {"chain": chain, "read_bytes": sum(b.size for b in chain), "ready": True}

    def apply(self, _data, actor):
        return backup_verify(actor=actor, backup=self.subject, wait=False)

    def done(self, _verification):
        text = gettext(
            "Verification of backup %(name)s is queued: a worker reads the backup (never the web "
            "request); its result shows here and in the operations list when it finishes."
        )
        return self.tell(self.subject, text % {"name": self.subject.name})


class ProtectAction(BackupAction):
    """Protect a backup (never deleted, by request or expiry) or unprotect it."""

    page = ActionPage(PROTECT_PERMISSION, ProtectForm, "admin/backups/actions/protect.html")
    title = _("Protection of backup %(name)s")

    def form_options(self) -> dict:
        return {"initial": {"protected": "0" if self.subject.protected else "1"}}

    def preview(self, data):
        return {"protect": data["protected"], "ready": True}

    def apply(self, data, actor):
        return backup_protect(actor=actor, backup=self.subject, protected=data["protected"])

    def done(self, result):
        if result.protected:
            text = gettext("Backup %(name)s is protected.")
        else:
            text = gettext("Backup %(name)s is no longer protected.")
        return self.tell(self.subject, text % {"name": self.subject.name})


class BackupActionsMixin(ConsoleActionsMixin):
    """The backup actions, mixed into BackupAdmin."""

    action_routes = (
        ("create/", BackupCreateAction, "backups_backup_create"),
        ("<int:object_id>/restore/", RestoreAction, "backups_backup_restore"),
        ("<int:object_id>/verify/", VerifyAction, "backups_backup_verify"),
        ("<int:object_id>/protect/", ProtectAction, "backups_backup_protect"),
    )
