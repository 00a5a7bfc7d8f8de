"""Enumerations of the backups app. Values are part of the API contract: never rename."""

from django.db import models
from django.utils.translation import gettext_lazy as _

# Defined in volumes (which must not import backups) so that volumes can name the statuses in which
# a backup reads a snapshot layer; re-exported here, the backups app's home for its enumerations.
from volumes.choices import BACKUP_READING_STATUSES, BackupStatus  # noqa: F401


class BackupPointType(models.TextChoices):
    """What lies under a backup point's directory."""

    LOCAL = "local", _("local directory")
    NFS = "nfs", _("NFS mount")
    CEPHFS = "cephfs", _("CephFS mount")


class BackupPointStatus(models.TextChoices):
    """A backup point's health as last seen (the neighbouring API's Bpstate)."""

    HEALTHY = "healthy", _("healthy")
    UNAVAILABLE = "unavailable", _("unavailable")


class VerifyResult(models.TextChoices):
    """Outcome of the last verification of a backup ("" = never verified)."""

    NONE = "", _("never verified")
    OK = "ok", _("ok")
    FAILED = "failed", _("failed")


# A backup's file is being written or rewritten: its chain must not change under it.
IN_PROGRESS_STATUSES = [BackupStatus.STARTED, BackupStatus.RUNNING, BackupStatus.DELETING]
# Statuses whose file exists (or is being written) and counts against the backup point's capacity.
SPACE_HOLDING_STATUSES = [
    BackupStatus.STARTED,
    BackupStatus.RUNNING,
    BackupStatus.COMPLETED,
    BackupStatus.DELETING,
]
