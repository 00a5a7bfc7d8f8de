"""Backup points: register one, check and apply edits (its directory checked); the console and
`manage.py add_backup_point` call these."""

from __future__ import annotations

import os
import uuid as uuid_lib

from django.db import transaction

from backups.choices import BackupPointStatus, BackupPointType, BackupStatus
from backups.models import Backup, BackupPoint
from backups.storage import validate_directory
from sharestore import errors
from volumes.models import Cluster, Tenant
from volumes.services.pools import (
    change_status,
    changed_values,
    reject_unknown_fields,
    validate_byte_capacity,
    validate_choice,
    write_changes,
)
from volumes.services.volumes import validate_name


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
    capacity = validate_byte_capacity(capacity)
    return BackupPoint.objects.create(
        uuid=uuid or uuid_lib.uuid4(),
        name=name,
        cluster=cluster,
        path=path,
        capacity=capacity,
        btype=btype,
        tenant=tenant,
    )


EDITABLE_BACKUP_POINT_FIELDS = ("name", "tenant", "btype", "path", "capacity", "status")


def backup_point_create_check(*, name: str, cluster, path: str, capacity: int) -> dict:
    """Validate a new backup point's settings without writing (the admin form calls this; the
    write itself is `backups.services.points.backup_point_create`)."""
    values = {"name": validate_name(name, field="name"), "path": validate_directory(path)}
    validate_byte_capacity(capacity)
    if BackupPoint.objects.filter(cluster=cluster, name=values["name"]).exists():
        raise errors.InvalidParameter(
            field="name", reason=f"cluster {cluster} already has a backup point named {values['name']!r}"
        )
    if BackupPoint.objects.filter(path=values["path"]).exists():
        raise errors.InvalidParameter(
            field="path", reason=f"another backup point already uses {values['path']}"
        )
    return values


def backup_point_update_check(*, backup_point: BackupPoint, **changes) -> dict:
    """Validate changes without writing; return the column values that differ. A new path must
    exist, be writable and hold the files of the backup point's completed backups."""
    point = backup_point
    reject_unknown_fields(changes, EDITABLE_BACKUP_POINT_FIELDS)
    values: dict = {}
    if "name" in changes and changes["name"] != point.name:
        values["name"] = validate_name(changes["name"], field="name")
        if (
            BackupPoint.objects.filter(cluster=point.cluster, name=values["name"])
            .exclude(pk=point.pk)
            .exists()
        ):
            raise errors.InvalidParameter(
                field="name",
                reason=f"cluster {point.cluster} already has a backup point named {values['name']!r}",
            )
    if "path" in changes and changes["path"] != point.path:
        path = validate_directory(changes["path"])
        if path != point.path:
            if BackupPoint.objects.filter(path=path).exclude(pk=point.pk).exists():
                raise errors.InvalidParameter(
                    field="path", reason=f"another backup point already uses {path}"
                )
            missing = [
                name
                for name in Backup.objects.filter(backup_point=point, status=BackupStatus.COMPLETED)
                .exclude(file_name="")
                .values_list("file_name", flat=True)
                if not os.path.isfile(os.path.join(path, name))
            ]
            if missing:
                raise errors.InvalidParameter(
                    field="path",
                    reason=f"{len(missing)} backup file(s) of this backup point are not in {path}",
                )
            values["path"] = path
    if "capacity" in changes:
        values["capacity"] = validate_byte_capacity(changes["capacity"])
    if "btype" in changes:
        values["btype"] = validate_choice(changes["btype"], BackupPointType.values, field="btype")
    if "tenant" in changes:
        values["tenant"] = changes["tenant"]
    return changed_values(point, values, status=changes.get("status"), statuses=BackupPointStatus.values)


@transaction.atomic
def backup_point_update(*, actor: str, backup_point: BackupPoint, **changes) -> BackupPoint:
    """Edit a backup point (see `backup_point_update_check`); a status change goes through `transition`."""
    point = BackupPoint.objects.select_for_update().get(pk=backup_point.pk)
    values = backup_point_update_check(backup_point=point, **changes)
    if values:
        write_changes(point, values, actor=actor, object_type="backup_point")
    point.refresh_from_db()
    change_status(point, changes.get("status"), actor=actor, object_type="backup_point")
    return point
