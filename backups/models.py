"""Models of the backups app: backup points (directories) and backups of volume snapshots."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from backups import choices
from sharestore.core import fields
from volumes.choices import VolumeType
from volumes.models import Cluster, NamedModel, Snapshot, Tenant, Volume, location_constraints

__all__ = ["BackupPoint", "Backup", "BackupVerification"]


class BackupPoint(NamedModel):
    """A directory (local or an NFS/CephFS mount) that holds backups."""

    cluster = fields.protected_fk(Cluster, "backup_points", _("cluster"))
    tenant = fields.protected_fk(
        Tenant, "backup_points", _("tenant"), optional=True, help_text=_("Empty: usable by every tenant.")
    )
    btype = fields.choice_field(choices.BackupPointType, _("btype"), default=choices.BackupPointType.LOCAL)
    path = fields.path_field(
        _("path"), help_text=_("Absolute directory where workers reach the backup point.")
    )
    capacity = fields.capacity_field(_("Bytes the backup point may hold."))
    status = fields.choice_field(
        choices.BackupPointStatus, _("status"), default=choices.BackupPointStatus.HEALTHY
    )
    # The platform's backup-point API (`indentify`): path = root_dir/sub_dir when registered through it.
    ip = fields.optional_char(255, _("ip"), help_text=_("Storage server address."))
    root_dir = fields.path_field(_("root dir"), optional=True)
    sub_dir = fields.path_field(_("sub dir"), optional=True)
    env = fields.json_map(_("env"), help_text=_("The platform's `env` map, kept as sent."))
    # Sealed with Fernet under a key from the settings (backups.secrets); never shown anywhere.
    password_sealed = fields.optional_text(
        _("password sealed"), editable=False, help_text=_("Sealed password; empty: none.")
    )
    created = fields.created_field()
    modified = fields.modified_field()

    class Meta(NamedModel.Meta):
        verbose_name = _("backup point")
        verbose_name_plural = _("backup points")
        constraints = location_constraints()

    @property
    def encrypts(self) -> bool:
        """Whether backups written to this point now are encrypted (it has a password)."""
        return bool(self.password_sealed)


class Backup(models.Model):
    """A backup of one snapshot of a volume, full or incremental on the previous one."""

    uuid = fields.uuid_field()
    name = fields.name_field()
    desc = fields.desc_field()
    backup_point = fields.protected_fk(BackupPoint, "backups", _("backup point"))
    tenant = fields.protected_fk(Tenant, "backups", _("tenant"))
    cluster = fields.protected_fk(Cluster, "backups", _("cluster"))
    # The source may be deleted; its identity is kept so the backup still restores and lists.
    volume = fields.set_null_fk(Volume, "backups", _("volume"))
    volume_uuid = models.UUIDField(verbose_name=_("volume uuid"))
    volume_capacity = models.BigIntegerField(verbose_name=_("volume capacity"))
    volume_type = fields.choice_field(VolumeType, _("volume type"), max_length=8)
    volume_snap_cap = fields.byte_count(
        _("volume snap cap"),
        help_text=_("The source volume's SnapCap when the backup was taken; a restored volume gets it."),
    )
    snapshot = fields.set_null_fk(Snapshot, "backups", _("snapshot"))
    snapshot_uuid = models.UUIDField(verbose_name=_("snapshot uuid"))
    snapshot_name = models.CharField(max_length=128, verbose_name=_("snapshot name"))
    base = fields.protected_fk(
        "self",
        "dependents",
        _("base"),
        optional=True,
        help_text=_("The backup this incremental one is stacked on; empty for a full backup."),
    )
    status = fields.choice_field(
        choices.BackupStatus, _("status"), max_length=24, default=choices.BackupStatus.STARTED
    )
    file_name = fields.optional_char(255, _("file name"), editable=False)
    size = fields.byte_count(_("size"), editable=False)
    checksum = fields.optional_char(
        64,
        _("checksum"),
        editable=False,
        help_text=_(
            "SHA-256 of the backup's chunk index (per-4-MiB-chunk SHA-256 of the snapshot's guest-visible "
            "content, in <file>.fidx beside the backup file)."
        ),
    )
    compressed = models.BooleanField(
        default=False,
        editable=False,
        help_text=_("Data clusters written with zstd."),
        verbose_name=_("compressed"),
    )
    encrypted = models.BooleanField(
        default=False,
        editable=False,
        help_text=_("LUKS-encrypted (always full)."),
        verbose_name=_("encrypted"),
    )
    verify_result = fields.choice_field(
        choices.VerifyResult, _("verify result"), max_length=8, blank=True, default="", editable=False
    )
    verified_at = fields.optional_datetime(_("verified at"), editable=False)
    expired_time = models.BigIntegerField(
        default=0, help_text=_("Epoch seconds; 0 = never expires."), verbose_name=_("expired time")
    )
    protected = models.BooleanField(
        default=False, help_text=_("Exempt from expiry and retention."), verbose_name=_("protected")
    )
    created = fields.created_field()
    modified = fields.modified_field(editable=False)

    class Meta:
        verbose_name = _("backup")
        verbose_name_plural = _("backups")
        ordering = ["-created", "-id"]
        # The console's everyday actions, one permission per kind (docs/console.md "Actions").
        permissions = [
            ("backup_volume", "Can back up volumes"),
            ("restore_backup", "Can restore backups into new volumes"),
            ("verify_backup", "Can verify backups"),
            ("protect_backup", "Can protect and unprotect backups"),
        ]
        indexes = [
            models.Index(fields=["tenant", "cluster", "-created"], name="backups_bk_tenant_cl_created"),
            models.Index(
                fields=["volume_uuid", "backup_point", "-created"], name="backups_bk_volume_bp_created"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.uuid})"


class BackupVerification(models.Model):
    """One verification of a backup: its files checked and every chunk of its content hashed again."""

    backup = fields.cascade_fk(Backup, "verifications", _("backup"))
    started = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=pgettext_lazy("timestamp", "started")
    )
    finished = fields.optional_datetime(_("finished"), editable=False)
    result = fields.choice_field(choices.VerifyResult, _("result"), max_length=8, blank=True, default="")
    scode = models.IntegerField(
        default=0, help_text=_("0, or the scode of what failed."), verbose_name=_("scode")
    )
    message = fields.optional_text(_("message"))
    checksum_expected = fields.optional_char(64, _("checksum expected"))
    checksum_found = fields.optional_char(64, _("checksum found"))
    image_check = fields.json_map(
        _("image check"), help_text=_("qemu-img check of each file of the backup's chain.")
    )
    actor = fields.optional_char(128, _("actor"))

    class Meta:
        verbose_name = _("backup verification")
        verbose_name_plural = _("backup verifications")
        ordering = ["-started", "-id"]
        indexes = [models.Index(fields=["backup", "-started"], name="backups_verif_backup_started")]

    def __str__(self):
        return f"{self.backup_id} {self.result or 'running'} {self.started:%Y-%m-%d %H:%M:%S}"
