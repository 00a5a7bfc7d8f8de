"""Models of the backups app: backup points (directories) and backups of volume snapshots."""

from __future__ import annotations

import uuid as uuid_lib

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from backups import choices
from volumes.models import Cluster, NamedModel, Snapshot, Tenant, Volume, location_constraints

__all__ = ["BackupPoint", "Backup", "BackupVerification"]


class BackupPoint(NamedModel):
    """A directory (local or an NFS/CephFS mount) that holds backups."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="backup_points")
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="backup_points",
        help_text=_("Empty: usable by every tenant."),
    )
    btype = models.CharField(
        max_length=16, choices=choices.BackupPointType.choices, default=choices.BackupPointType.LOCAL
    )
    path = models.CharField(
        max_length=1024, help_text=_("Absolute directory where workers reach the backup point.")
    )
    capacity = models.BigIntegerField(help_text=_("Bytes the backup point may hold."))
    status = models.CharField(
        max_length=16, choices=choices.BackupPointStatus.choices, default=choices.BackupPointStatus.HEALTHY
    )
    # The platform's backup-point API (`indentify`): path = root_dir/sub_dir when registered through it.
    ip = models.CharField(max_length=255, blank=True, default="", help_text=_("Storage server address."))
    root_dir = models.CharField(max_length=1024, blank=True, default="")
    sub_dir = models.CharField(max_length=1024, blank=True, default="")
    env = models.JSONField(default=dict, blank=True, help_text=_("The platform's `env` map, kept as sent."))
    # Sealed with Fernet under a key from the settings (backups.secrets); never shown anywhere.
    password_sealed = models.TextField(
        blank=True, default="", editable=False, help_text=_("Sealed password; empty: none.")
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    modified = models.DateTimeField(default=timezone.now)

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

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False)
    name = models.CharField(max_length=128)
    desc = models.CharField(max_length=1024, blank=True, default="")
    backup_point = models.ForeignKey(BackupPoint, on_delete=models.PROTECT, related_name="backups")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="backups")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="backups")
    # The source may be deleted; its identity is kept so the backup still restores and lists.
    volume = models.ForeignKey(
        Volume, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    volume_uuid = models.UUIDField()
    volume_capacity = models.BigIntegerField()
    volume_type = models.CharField(max_length=8)
    volume_snap_cap = models.BigIntegerField(
        default=0,
        help_text=_("The source volume's SnapCap when the backup was taken; a restored volume gets it."),
    )
    snapshot = models.ForeignKey(
        Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="backups"
    )
    snapshot_uuid = models.UUIDField()
    snapshot_name = models.CharField(max_length=128)
    base = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dependents",
        help_text=_("The backup this incremental one is stacked on; empty for a full backup."),
    )
    status = models.CharField(
        max_length=24, choices=choices.BackupStatus.choices, default=choices.BackupStatus.STARTED
    )
    file_name = models.CharField(max_length=255, blank=True, default="", editable=False)
    size = models.BigIntegerField(default=0, editable=False)
    checksum = models.CharField(
        max_length=64,
        blank=True,
        default="",
        editable=False,
        help_text=_(
            "SHA-256 of the backup's chunk index (per-4-MiB-chunk SHA-256 of the snapshot's guest-visible "
            "content, in <file>.fidx beside the backup file)."
        ),
    )
    compressed = models.BooleanField(
        default=False, editable=False, help_text=_("Data clusters written with zstd.")
    )
    encrypted = models.BooleanField(
        default=False, editable=False, help_text=_("LUKS-encrypted (always full).")
    )
    verify_result = models.CharField(
        max_length=8, choices=choices.VerifyResult.choices, blank=True, default="", editable=False
    )
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    expired_time = models.BigIntegerField(default=0, help_text=_("Epoch seconds; 0 = never expires."))
    protected = models.BooleanField(default=False, help_text=_("Exempt from expiry and retention."))
    created = models.DateTimeField(default=timezone.now, editable=False)
    modified = models.DateTimeField(default=timezone.now, editable=False)

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

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="verifications")
    started = models.DateTimeField(default=timezone.now, editable=False)
    finished = models.DateTimeField(null=True, blank=True, editable=False)
    result = models.CharField(max_length=8, choices=choices.VerifyResult.choices, blank=True, default="")
    scode = models.IntegerField(default=0, help_text=_("0, or the scode of what failed."))
    message = models.TextField(blank=True, default="")
    checksum_expected = models.CharField(max_length=64, blank=True, default="")
    checksum_found = models.CharField(max_length=64, blank=True, default="")
    image_check = models.JSONField(
        default=dict, blank=True, help_text=_("qemu-img check of each file of the backup's chain.")
    )
    actor = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        verbose_name = _("backup verification")
        verbose_name_plural = _("backup verifications")
        ordering = ["-started", "-id"]
        indexes = [models.Index(fields=["backup", "-started"], name="backups_verif_backup_started")]

    def __str__(self):
        return f"{self.backup_id} {self.result or 'running'} {self.started:%Y-%m-%d %H:%M:%S}"
