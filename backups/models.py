"""Models of the backups app: backup points (directories) and backups of volume snapshots."""

from __future__ import annotations

import uuid as uuid_lib

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from backups import choices
from volumes.choices import VolumeType
from volumes.models import Cluster, NamedModel, Snapshot, Tenant, Volume, location_constraints

__all__ = ["BackupPoint", "Backup", "BackupVerification"]


class BackupPoint(NamedModel):
    """A directory (local or an NFS/CephFS mount) that holds backups."""

    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="backup_points", verbose_name=_("cluster")
    )
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="backup_points",
        help_text=_("Empty: usable by every tenant."),
        verbose_name=_("tenant"),
    )
    btype = models.CharField(
        max_length=16,
        choices=choices.BackupPointType.choices,
        default=choices.BackupPointType.LOCAL,
        verbose_name=_("btype"),
    )
    path = models.CharField(
        max_length=1024,
        help_text=_("Absolute directory where workers reach the backup point."),
        verbose_name=_("path"),
    )
    capacity = models.BigIntegerField(
        help_text=_("Bytes the backup point may hold."), verbose_name=_("capacity")
    )
    status = models.CharField(
        max_length=16,
        choices=choices.BackupPointStatus.choices,
        default=choices.BackupPointStatus.HEALTHY,
        verbose_name=_("status"),
    )
    # The platform's backup-point API (`indentify`): path = root_dir/sub_dir when registered through it.
    ip = models.CharField(
        max_length=255, blank=True, default="", help_text=_("Storage server address."), verbose_name=_("ip")
    )
    root_dir = models.CharField(max_length=1024, blank=True, default="", verbose_name=_("root dir"))
    sub_dir = models.CharField(max_length=1024, blank=True, default="", verbose_name=_("sub dir"))
    env = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("The platform's `env` map, kept as sent."),
        verbose_name=_("env"),
    )
    # Sealed with Fernet under a key from the settings (backups.secrets); never shown anywhere.
    password_sealed = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text=_("Sealed password; empty: none."),
        verbose_name=_("password sealed"),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    modified = models.DateTimeField(default=timezone.now, verbose_name=_("modified"))

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

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    name = models.CharField(max_length=128, verbose_name=_("name"))
    desc = models.CharField(max_length=1024, blank=True, default="", verbose_name=_("desc"))
    backup_point = models.ForeignKey(
        BackupPoint, on_delete=models.PROTECT, related_name="backups", verbose_name=_("backup point")
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.PROTECT, related_name="backups", verbose_name=_("tenant")
    )
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, related_name="backups", verbose_name=_("cluster")
    )
    # The source may be deleted; its identity is kept so the backup still restores and lists.
    volume = models.ForeignKey(
        Volume,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backups",
        verbose_name=_("volume"),
    )
    volume_uuid = models.UUIDField(verbose_name=_("volume uuid"))
    volume_capacity = models.BigIntegerField(verbose_name=_("volume capacity"))
    volume_type = models.CharField(max_length=8, choices=VolumeType.choices, verbose_name=_("volume type"))
    volume_snap_cap = models.BigIntegerField(
        default=0,
        help_text=_("The source volume's SnapCap when the backup was taken; a restored volume gets it."),
        verbose_name=_("volume snap cap"),
    )
    snapshot = models.ForeignKey(
        Snapshot,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backups",
        verbose_name=_("snapshot"),
    )
    snapshot_uuid = models.UUIDField(verbose_name=_("snapshot uuid"))
    snapshot_name = models.CharField(max_length=128, verbose_name=_("snapshot name"))
    base = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="dependents",
        help_text=_("The backup this incremental one is stacked on; empty for a full backup."),
        verbose_name=_("base"),
    )
    status = models.CharField(
        max_length=24,
        choices=choices.BackupStatus.choices,
        default=choices.BackupStatus.STARTED,
        verbose_name=_("status"),
    )
    file_name = models.CharField(
        max_length=255, blank=True, default="", editable=False, verbose_name=_("file name")
    )
    size = models.BigIntegerField(default=0, editable=False, verbose_name=_("size"))
    checksum = models.CharField(
        max_length=64,
        blank=True,
        default="",
        editable=False,
        help_text=_(
            "SHA-256 of the backup's chunk index (per-4-MiB-chunk SHA-256 of the snapshot's guest-visible "
            "content, in <file>.fidx beside the backup file)."
        ),
        verbose_name=_("checksum"),
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
    verify_result = models.CharField(
        max_length=8,
        choices=choices.VerifyResult.choices,
        blank=True,
        default="",
        editable=False,
        verbose_name=_("verify result"),
    )
    verified_at = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("verified at"))
    expired_time = models.BigIntegerField(
        default=0, help_text=_("Epoch seconds; 0 = never expires."), verbose_name=_("expired time")
    )
    protected = models.BooleanField(
        default=False, help_text=_("Exempt from expiry and retention."), verbose_name=_("protected")
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    modified = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("modified"))

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

    backup = models.ForeignKey(
        Backup, on_delete=models.CASCADE, related_name="verifications", verbose_name=_("backup")
    )
    started = models.DateTimeField(
        default=timezone.now, editable=False, verbose_name=pgettext_lazy("timestamp", "started")
    )
    finished = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("finished"))
    result = models.CharField(
        max_length=8, choices=choices.VerifyResult.choices, blank=True, default="", verbose_name=_("result")
    )
    scode = models.IntegerField(
        default=0, help_text=_("0, or the scode of what failed."), verbose_name=_("scode")
    )
    message = models.TextField(blank=True, default="", verbose_name=_("message"))
    checksum_expected = models.CharField(
        max_length=64, blank=True, default="", verbose_name=_("checksum expected")
    )
    checksum_found = models.CharField(max_length=64, blank=True, default="", verbose_name=_("checksum found"))
    image_check = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("qemu-img check of each file of the backup's chain."),
        verbose_name=_("image check"),
    )
    actor = models.CharField(max_length=128, blank=True, default="", verbose_name=_("actor"))

    class Meta:
        verbose_name = _("backup verification")
        verbose_name_plural = _("backup verifications")
        ordering = ["-started", "-id"]
        indexes = [models.Index(fields=["backup", "-started"], name="backups_verif_backup_started")]

    def __str__(self):
        return f"{self.backup_id} {self.result or 'running'} {self.started:%Y-%m-%d %H:%M:%S}"
