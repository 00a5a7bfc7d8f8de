"""Writes on backup points and backups."""

from __future__ import annotations

import os
import uuid as uuid_lib

from django.db import transaction

from backups.models import BackupPoint
from sharestore import errors
from volumes.models import Cluster, Tenant
from volumes.services.volumes import validate_name


def validate_directory(path: str) -> str:
    """An absolute, existing, writable directory."""
    if not path or not os.path.isabs(path):
        raise errors.InvalidParameter(field="path", reason="must be an absolute directory path")
    if not os.path.isdir(path):
        raise errors.InvalidParameter(field="path", reason="directory does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise errors.InvalidParameter(field="path", reason="directory is not writable")
    return os.path.realpath(path)


@transaction.atomic
def backup_point_create(
    *,
    name: str,
    cluster: Cluster,
    path: str,
    capacity: int,
    btype: str = "local",
    tenant: Tenant | None = None,
    uuid=None,
) -> BackupPoint:
    """Register a directory as a backup point (or return the one with this UUID)."""
    if uuid is not None:
        existing = BackupPoint.objects.filter(uuid=uuid).first()
        if existing is not None:
            return existing
    name = validate_name(name, field="name")
    path = validate_directory(path)
    if capacity is None or capacity < 0:
        raise errors.InvalidParameter(field="capacity", reason="must be a non-negative number of bytes")
    return BackupPoint.objects.create(
        uuid=uuid or uuid_lib.uuid4(), name=name, cluster=cluster, path=path, capacity=capacity, btype=btype, tenant=tenant
    )
