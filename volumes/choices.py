"""Enumerations of the volumes app. Values are part of the API contract: never renumber."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class VolumeType(models.TextChoices):
    """The contract's volume_type: block (one VM), share (several VMs at once), fs."""

    BLOCK = "block", _("block")
    SHARE = "share", _("share")
    FS = "fs", _("fs")


class EventState(models.IntegerChoices):
    """A volume's `EventState`. 0 is the only state in which the volume is usable by every action."""

    AVAILABLE = 0, _("available")
    CREATING = 1, _("creating")
    IMPORTING = 2, _("importing")
    CLONING = 3, _("cloning")
    RESTORING = 4, _("restoring")
    DELETING = 5, _("deleting")
    DELETED = 6, _("deleted")
    SNAPSHOTTING = 7, _("snapshotting")
    ROLLING_BACK = 8, _("rolling back")
    MERGING = 9, _("merging snapshot")
    FLATTENING = 10, _("flattening")
    ERROR = 11, _("error")


# States whose row is still part of the live set (listed, counted against capacity, name taken).
LIVE_STATES = [s for s in EventState if s not in (EventState.DELETING, EventState.DELETED)]


class SnapshotStatus(models.IntegerChoices):
    """A snapshot's `Status`."""

    AVAILABLE = 0, _("available")
    CREATING = 1, _("creating")
    DELETING = 2, _("deleting")
    HIDDEN = 3, _("hidden: deleted but still backing other layers")
    ERROR = 4, _("error")


class PoolType(models.TextChoices):
    """What lies under a pool (informational for directories; `rbd` pools run the RBD driver)."""

    DISK = "disk", _("local disk")
    NFS = "nfs", _("NFS mount")
    CEPHFS = "cephfs", _("CephFS mount")
    RBD = "rbd", _("Ceph RBD pool")


class PoolDriver(models.TextChoices):
    """Which storage driver runs a pool."""

    QCOW2_DIRECTORY = "qcow2-dir", _("qcow2 images in a directory")
    RBD = "rbd", _("RBD images in a Ceph pool")


class PoolStatus(models.TextChoices):
    """A pool's health as last seen."""

    HEALTHY = "healthy", _("healthy")
    UNAVAILABLE = "unavailable", _("unavailable")
    MAINTENANCE = "maintenance", _("maintenance")


class ImageFormat(models.TextChoices):
    """On-disk image formats the service accepts and records."""

    QCOW2 = "qcow2", "qcow2"
    RAW = "raw", "raw"


class BackupStatus(models.TextChoices):
    """A backup's `Status`: BackupStarted -> BackupRunning -> BackupCompleted | BackupFailed; delete:
    BackupCompleted | BackupFailed -> BackupDeleting -> BackupDeleted (docs/backups.md)."""

    STARTED = "BackupStarted", _("started")
    RUNNING = "BackupRunning", _("running")
    COMPLETED = "BackupCompleted", _("completed")
    FAILED = "BackupFailed", _("failed")
    DELETING = "BackupDeleting", _("deleting")
    DELETED = "BackupDeleted", _("deleted")


# Statuses in which a backup reads its snapshot's layer (the layer must not be merged away then).
BACKUP_READING_STATUSES = [BackupStatus.STARTED, BackupStatus.RUNNING]
