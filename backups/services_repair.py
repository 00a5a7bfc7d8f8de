"""Operator repairs on backup points: reconcile `Backup.file_name` rows with the files, edit a
backup point with its directory checked, and the usage the console draws as bars.

This module registers the backup-point scope with `volumes.services.repair.reconcile`, so one
reconcile (console or `manage.py reconcile`) covers pools and backup points. The file layout of a
backup point belongs to the backups service; this only relies on `file_name` being relative to
the backup point's path and on backups' partial writes carrying the backup's UUID or a `.tmp-`
prefix.
"""

from __future__ import annotations

import os

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from backups.choices import BackupPointStatus, BackupPointType, BackupStatus
from backups.models import Backup, BackupPoint
from sharestore import errors
from sharestore.core.services.state import audit, transition
from volumes.drivers import get_driver
from volumes.services.pools import validate_byte_capacity, validate_directory
from volumes.services.repair import (
    DEFAULT_GRACE_SECONDS,
    Finding,
    FindingKind,
    FixAction,
    ImageReader,
    ProgressFn,
    ReconcileReport,
    ReconcileScope,
    busy_uuids,
    classify_orphans,
    parse_uuids,
    register_reconcile_scope,
    remove_orphans,
)
from volumes.services.volumes import validate_name

# Backups whose file is being written or removed: their files are in flux.
ACTIVE_BACKUP_STATUSES = [BackupStatus.STARTED, BackupStatus.RUNNING, BackupStatus.DELETING]


def _backup_point_targets(uuids: list[str] | None) -> list[BackupPoint]:
    queryset = BackupPoint.objects.order_by("name", "pk")
    if uuids is not None:
        uuids = parse_uuids(uuids, field_name="backup_point")
        queryset = queryset.filter(uuid__in=uuids)
        found = {str(b.uuid) for b in queryset}
        missing = [u for u in uuids if u not in found]
        if missing:
            raise errors.InvalidParameter(field="backup_point", reason=f"no backup point with UUID {', '.join(missing)}")
    return list(queryset)


def _list_files(root: str) -> list[str]:
    names = []
    for directory, _dirs, files in os.walk(root):
        for file_name in files:
            names.append(os.path.relpath(os.path.join(directory, file_name), root))
    return sorted(names)


def _remove_file(root: str):
    def remove(name: str) -> None:
        path = os.path.join(root, name)
        if os.path.commonpath([os.path.realpath(os.path.dirname(path)), os.path.realpath(root)]) != os.path.realpath(root):
            raise errors.StorageError(reason=f"{name} is outside the backup point")
        os.unlink(path)

    return remove


def reconcile_backup_point(
    *,
    actor: str,
    target: BackupPoint,
    fix: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
    progress: ProgressFn | None = None,
) -> ReconcileReport:
    """Compare a backup point's backup rows with its files; with fix, remove old orphans and mark
    completed backups whose file is missing as failed."""
    point = target
    report = ReconcileReport(scope="backup_point", uuid=str(point.uuid), name=point.name, path=point.path, fix=fix)
    if not os.path.isdir(point.path):
        report.error = f"backup point directory {point.path} does not exist"
        return report
    try:
        files = _list_files(point.path)
    except OSError as exc:
        report.error = f"cannot list {point.path}: {exc}"
        return report
    report.files_checked = len(files)
    file_set = set(files)
    backups = list(
        Backup.objects.filter(backup_point=point).exclude(status=BackupStatus.DELETED).exclude(file_name="").order_by("pk")
    )
    busy = busy_uuids() | {str(b.uuid) for b in backups if b.status in ACTIVE_BACKUP_STATUSES}
    referenced = {b.file_name: b for b in backups}
    total, done = len(files) + len(backups), 0
    for backup in backups:
        done += 1
        if progress is not None:
            progress(done, total, backup.file_name)
        if backup.file_name not in file_set and backup.status == BackupStatus.COMPLETED:
            report.findings.append(
                Finding(
                    kind=FindingKind.MISSING_FILE,
                    name=backup.file_name,
                    object_type="backup",
                    object_uuid=str(backup.uuid),
                    detail=f"file of backup {backup.name!r} is missing",
                    expected=backup.get_status_display(),
                    found="no file",
                    fix=FixAction.MARK_FAILED,
                )
            )
    orphans = []
    for name in files:
        done += 1
        if progress is not None:
            progress(done, total, name)
        if name not in referenced:
            orphans.append(name)

    # Incremental backup files may be qcow2 overlays on older files: an orphan that a referenced
    # file reads through must stay. Read only when there are orphans to judge.
    def protected_backings() -> set[str]:
        reader = ImageReader(get_driver("qcow2-dir", point.path))
        chained: set[str] = set()
        for name in referenced:
            if name in file_set:
                chained.update(reader.chain(name))
        return chained

    classify_orphans(
        report=report, orphans=orphans, root=point.path, busy=busy,
        protected_backings=protected_backings, grace_seconds=grace_seconds,
    )
    if fix:
        remove_orphans(
            report=report, driver_delete=_remove_file(point.path), root=point.path, actor=actor,
            object_type="backup_point", object_uuid=point.uuid,
        )
        by_uuid = {str(b.uuid): b for b in backups}
        for finding in report.findings:
            if finding.kind != FindingKind.MISSING_FILE or not finding.fixable:
                continue
            backup = by_uuid[finding.object_uuid]
            try:
                with transaction.atomic():
                    transition(
                        backup,
                        allowed=[BackupStatus.COMPLETED],
                        to=BackupStatus.FAILED,
                        field="status",
                        object_type="backup",
                        action="reconcile.missing_backup_file",
                        actor=actor,
                        volume_id=backup.volume_id,
                        message=f"{finding.name} is missing in backup point {point.name}",
                    )
                finding.fixed = True
            except errors.ServiceError as exc:
                finding.error = exc.render_message()
        if report.findings:
            fixed = sum(1 for f in report.findings if f.fixed)
            audit(
                actor=actor, action="reconcile.fix", object_type="backup_point", object_uuid=point.uuid,
                result="ok" if fixed == report.fixable_count else "partial",
                message=f"{len(report.findings)} finding(s), {fixed} fixed, {len(report.remaining)} remaining",
            )
    return report


register_reconcile_scope(
    ReconcileScope(name="backup_point", targets=_backup_point_targets, run=reconcile_backup_point)
)


# -- edit and usage ------------------------------------------------------------------------------

EDITABLE_BACKUP_POINT_FIELDS = ("name", "tenant", "btype", "path", "capacity", "status")


def backup_point_create_check(*, name: str, cluster, path: str, capacity: int) -> dict:
    """Validate a new backup point's settings without writing (the admin form calls this; the
    write itself is `backups.services.backup_point_create`)."""
    values = {"name": validate_name(name, field="name"), "path": validate_directory(path)}
    validate_byte_capacity(capacity)
    if BackupPoint.objects.filter(cluster=cluster, name=values["name"]).exists():
        raise errors.InvalidParameter(field="name", reason=f"cluster {cluster} already has a backup point named {values['name']!r}")
    if BackupPoint.objects.filter(path=values["path"]).exists():
        raise errors.InvalidParameter(field="path", reason=f"another backup point already uses {values['path']}")
    return values


def backup_point_update_check(*, backup_point: BackupPoint, **changes) -> dict:
    """Validate changes without writing; return the column values that differ. A new path must
    exist, be writable and hold the files of the backup point's completed backups."""
    point = backup_point
    unknown = set(changes) - set(EDITABLE_BACKUP_POINT_FIELDS)
    if unknown:
        raise errors.InvalidParameter(field=sorted(unknown)[0], reason="cannot be changed")
    values: dict = {}
    if "name" in changes and changes["name"] != point.name:
        values["name"] = validate_name(changes["name"], field="name")
        if BackupPoint.objects.filter(cluster=point.cluster, name=values["name"]).exclude(pk=point.pk).exists():
            raise errors.InvalidParameter(
                field="name", reason=f"cluster {point.cluster} already has a backup point named {values['name']!r}"
            )
    if "path" in changes and changes["path"] != point.path:
        path = validate_directory(changes["path"])
        if path != point.path:
            if BackupPoint.objects.filter(path=path).exclude(pk=point.pk).exists():
                raise errors.InvalidParameter(field="path", reason=f"another backup point already uses {path}")
            missing = [
                name
                for name in Backup.objects.filter(backup_point=point, status=BackupStatus.COMPLETED)
                .exclude(file_name="")
                .values_list("file_name", flat=True)
                if not os.path.isfile(os.path.join(path, name))
            ]
            if missing:
                raise errors.InvalidParameter(
                    field="path", reason=f"{len(missing)} backup file(s) of this backup point are not in {path}"
                )
            values["path"] = path
    if "capacity" in changes:
        values["capacity"] = validate_byte_capacity(changes["capacity"])
    if "btype" in changes:
        if changes["btype"] not in BackupPointType.values:
            raise errors.InvalidParameter(field="btype", reason=f"must be one of {', '.join(BackupPointType.values)}")
        values["btype"] = changes["btype"]
    if "tenant" in changes:
        values["tenant"] = changes["tenant"]
    status = changes.get("status")
    if status is not None and status not in BackupPointStatus.values:
        raise errors.InvalidParameter(field="status", reason=f"must be one of {', '.join(BackupPointStatus.values)}")
    return {k: v for k, v in values.items() if getattr(point, k) != v}


@transaction.atomic
def backup_point_update(*, actor: str, backup_point: BackupPoint, **changes) -> BackupPoint:
    """Edit a backup point (see `backup_point_update_check`); a status change goes through `transition`."""
    point = BackupPoint.objects.select_for_update().get(pk=backup_point.pk)
    values = backup_point_update_check(backup_point=point, **changes)
    if values:
        BackupPoint.objects.filter(pk=point.pk).update(**values, modified=timezone.now())
        audit(actor=actor, action="backup_point.update", object_type="backup_point", object_uuid=point.uuid,
              message=", ".join(f"{k}: {getattr(point, k)} -> {v}" for k, v in values.items()))
    point.refresh_from_db()
    status = changes.get("status")
    if status is not None and status != point.status:
        transition(point, allowed=[point.status], to=status, field="status", object_type="backup_point",
                   action="backup_point.status", actor=actor)
    return point


def backup_point_used(point: BackupPoint) -> int:
    """Bytes its live backups occupy, as recorded."""
    return (
        Backup.objects.filter(backup_point=point)
        .exclude(status__in=[BackupStatus.DELETED, BackupStatus.FAILED])
        .aggregate(total=Sum("size"))["total"]
        or 0
    )
