"""Backup points: register one, check and apply edits (its directory checked); the console and
`manage.py add_backup_point` call these."""

from __future__ import annotations

import os
import uuid as uuid_lib

from django.db import transaction
from django.utils import timezone

from backups.choices import BackupPointStatus, BackupPointType, BackupStatus
from backups.models import Backup, BackupPoint
from backups.secrets import seal, unseal, validate_password
from backups.storage import BackupStore, validate_directory
from sharestore import errors
from sharestore.core.services.state import audit
from volumes.models import Cluster, Tenant
from volumes.services.pools import (
    SettingsEdit,
    changed_values,
    reject_unknown_fields,
    validate_byte_capacity,
    validate_choice,
)
from volumes.services.volumes import validate_name


def point_location(*, root_dir, sub_dir) -> str:
    """The directory the platform names as `root_dir` and `sub_dir` (relative, inside root_dir)."""
    for field, value in (("root_dir", root_dir), ("sub_dir", sub_dir)):
        if not isinstance(value, str) or "\x00" in value:
            raise errors.InvalidParameter(field=field, reason="must be a path")
    if not os.path.isabs(root_dir):
        raise errors.InvalidParameter(field="root_dir", reason="must be an absolute directory path")
    if os.path.isabs(sub_dir) or ".." in sub_dir.split("/"):
        raise errors.InvalidParameter(field="sub_dir", reason="must be a relative path inside root_dir")
    return os.path.join(root_dir, sub_dir) if sub_dir else root_dir


@transaction.atomic
def backup_point_create(
    *,
    name: str,
    cluster: Cluster,
    path: str,
    capacity: int | None,
    btype: str = "local",
    tenant: Tenant | None = None,
    uuid=None,
    password: str | None = None,
    origin: dict | None = None,
) -> BackupPoint:
    """Register a directory as a backup point (or return the one with this UUID).

    `capacity` None: the bytes its filesystem has free now. `origin`: what the platform's API
    records (ip, root_dir, sub_dir, env). With a `password` (the platform's `pass_word`, "fill in to
    encrypt"), every backup written to it is encrypted."""
    if uuid is not None:
        existing = BackupPoint.objects.filter(uuid=uuid).first()
        if existing is not None:
            return existing
    name = validate_name(name, field="name")
    path = validate_directory(path)
    validate_choice(btype, BackupPointType.values, field="btype")
    if capacity is None:
        capacity = BackupStore(path).free_bytes()
    capacity = validate_byte_capacity(capacity)
    return BackupPoint.objects.create(
        uuid=uuid or uuid_lib.uuid4(),
        name=name,
        cluster=cluster,
        path=path,
        capacity=capacity,
        btype=btype,
        tenant=tenant,
        **(origin or {}),
        password_sealed=seal(validate_password(password)),
    )


@transaction.atomic
def backup_point_delete(*, actor: str, backup_point: BackupPoint) -> None:
    """Forget a backup point that holds no backup (its directory stays). Rows of deleted backups go
    with it; any other backup (kept, being written or being deleted) refuses."""
    point = BackupPoint.objects.select_for_update().get(pk=backup_point.pk)
    held = Backup.objects.filter(backup_point=point).exclude(status=BackupStatus.DELETED).count()
    if held:
        raise errors.BackupPointHasBackups(point=point.name, count=held)
    gone = Backup.objects.filter(backup_point=point)
    gone.update(base=None)
    gone.delete()
    uuid, name, kind = point.uuid, point.name, "backup_point"
    point.delete()
    audit(actor=actor, action=f"{kind}.delete", object_type=kind, object_uuid=uuid, message=f"name={name}")


EDITABLE_BACKUP_POINT_FIELDS = (
    "name",
    "tenant",
    "btype",
    "path",
    "capacity",
    "status",
    "ip",
    "root_dir",
    "sub_dir",
    "env",
)


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
    if "password" in changes:
        changes = dict(changes)
        _sealed_password(point, changes.pop("password"))
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
    for field in ("ip", "root_dir", "sub_dir", "env"):
        if field in changes:
            values[field] = changes[field]
    return changed_values(point, values, status=changes.get("status"), statuses=BackupPointStatus.values)


@transaction.atomic
def backup_point_update(*, actor: str, backup_point: BackupPoint, **changes) -> BackupPoint:
    """Edit a backup point (see `backup_point_update_check`); a status change goes through `transition`."""
    edit = SettingsEdit.begin(
        backup_point,
        lambda locked: backup_point_update_check(backup_point=locked, **changes),
        actor=actor,
        object_type="backup_point",
    )
    edit.write()
    if "password" in changes:
        _password_write(edit.row, changes["password"], actor=actor)
    return edit.finish(changes.get("status"))


# -- the password ----------------------------------------------------------------------------------
# A password is refused to change (or to go) while encrypted backups written with it exist: they could
# no longer be restored (qemu-img would need the old one) and re-keying them would rewrite every file.
# Setting one on a point holding plain backups is allowed: new backups are encrypted, the old ones stay
# readable as they are (docs/backups.md).


def _sealed_password(point: BackupPoint, password) -> str | None:
    """The stored form of the new password if it changes and may; None when it is the same."""
    new = validate_password(password)
    holding = (
        Backup.objects.filter(backup_point=point, encrypted=True)
        .exclude(status__in=[BackupStatus.FAILED, BackupStatus.DELETED])
        .count()
    )
    if not point.password_sealed:
        same = not new
    else:
        try:
            same = new == unseal(point.password_sealed, point=point.name)
        except errors.BackupSecretUnreadable:
            same = False  # replaceable when nothing was encrypted with it
    if same:
        return None
    if holding:
        raise errors.BackupPasswordInUse(point=point.name, count=holding)
    return seal(new)


def _password_write(point: BackupPoint, password, *, actor: str) -> None:
    had = bool(point.password_sealed)
    sealed = _sealed_password(point, password)
    if sealed is None:
        return
    BackupPoint.objects.filter(pk=point.pk).update(password_sealed=sealed, modified=timezone.now())
    # Neither the password nor its stored form goes into the audit trail.
    what = ("changed" if had else "set") if sealed else "removed"
    text = f"password {what}: later backups are {'encrypted' if sealed else 'not encrypted'}"
    kind = "backup_point"
    audit(actor=actor, action=f"{kind}.password", object_type=kind, object_uuid=point.uuid, message=text)
