"""Choices of the core app: what an operation does and where it is in its life."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class OperationKind(models.TextChoices):
    """What a long-running operation does."""

    VOLUME_CREATE = "volume.create", _("create volume")
    VOLUME_IMPORT = "volume.import", _("import volume")
    VOLUME_DELETE = "volume.delete", _("delete volume")
    SNAPSHOT_CREATE = "snapshot.create", _("create snapshot")
    SNAPSHOT_DELETE = "snapshot.delete", _("delete snapshot")
    SNAPSHOT_ROLLBACK = "snapshot.rollback", _("roll back to snapshot")
    CLONE_LINKED = "clone.linked", _("linked clone")
    CLONE_FULL = "clone.full", _("full clone")
    FLATTEN = "volume.flatten", _("flatten volume")
    BACKUP_CREATE = "backup.create", _("create backup")
    BACKUP_DELETE = "backup.delete", _("delete backup")
    BACKUP_RESTORE = "backup.restore", _("restore backup")
    BACKUP_VERIFY = "backup.verify", _("verify backup")


class OperationState(models.TextChoices):
    """Lifecycle of an operation: queued -> running -> succeeded | failed (| cancelled)."""

    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


ACTIVE_OPERATION_STATES = [OperationState.QUEUED, OperationState.RUNNING]
