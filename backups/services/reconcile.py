"""Reconcile of backup points: compare `Backup.file_name` rows with the files; registered as the
`backup_point` scope of `volumes.services.repair.reconcile` (from BackupsConfig.ready), so one
reconcile (console or `manage.py reconcile`) covers pools and backup points. The file layout of a
backup point belongs to the backups service; this only relies on `file_name` being relative to the
backup point's path and on partial writes carrying the backup's UUID or a `.tmp-` prefix."""

from __future__ import annotations

import os
import time

from django.utils.translation import gettext_lazy as _

from backups.choices import IN_PROGRESS_STATUSES, BackupStatus
from backups.models import Backup, BackupPoint
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.services.state import OperationContext, status_transition
from volumes.drivers.base import StoredObject
from volumes.services.repair.common import (
    audit_fix,
    busy_uuids,
    classify_orphans,
    mark_missing,
    remove_orphans,
)
from volumes.services.repair.findings import Finding, FixAction, ReconcileReport
from volumes.services.repair.reconcile import (
    ReconcileOptions,
    ReconcileScope,
    parse_uuids,
    register_reconcile_scope,
)
from volumes.services.repair.words import Words, register_texts

# The findings of backup points, in volumes' table of repair texts (volumes/services/repair/words.py).
register_texts(
    {
        "backup_file_missing": _("file of backup '%(name)s' is missing"),
        "backup_point_absent": _("backup point directory %(path)s does not exist"),
    }
)


def _backup_point_targets(uuids: list[str] | None) -> list[BackupPoint]:
    queryset = BackupPoint.objects.order_by("name", "pk")
    if uuids is not None:
        uuids = parse_uuids(uuids, field_name="backup_point")
        queryset = queryset.filter(uuid__in=uuids)
        found = {str(b.uuid) for b in queryset}
        missing = [u for u in uuids if u not in found]
        if missing:
            raise errors.InvalidParameter(
                field="backup_point", reason=f"no backup point with UUID {', '.join(missing)}"
            )
    return list(queryset)


def _list_files(root: str) -> list[str]:
    names = []
    for directory, _dirs, files in os.walk(root):
        for file_name in files:
            names.append(os.path.relpath(os.path.join(directory, file_name), root))
    return sorted(names)


def _stored(root: str, names: list[str]) -> list[StoredObject]:
    """The backup point's files as reconcile's orphan check takes them (size, age, partial or not)."""
    now = time.time()
    found = []
    for name in names:
        try:
            st = os.lstat(os.path.join(root, name))
        except FileNotFoundError:
            continue
        found.append(
            StoredObject(
                name=name,
                partial_of=name if BackupStore.is_partial(name) else None,
                size=st.st_size,
                age=max(now - st.st_mtime, 0.0),
            )
        )
    return found


def _remove_file(root: str):
    def remove(name: str) -> None:
        path = os.path.join(root, name)
        if os.path.commonpath(
            [os.path.realpath(os.path.dirname(path)), os.path.realpath(root)]
        ) != os.path.realpath(root):
            raise errors.StorageError(reason=f"{name} is outside the backup point")
        os.unlink(path)

    return remove


def _reads_through(store: BackupStore, name: str) -> list[str]:
    """The backup files `name` reads through, by the store's one chain walk; when that chain is broken
    (a missing or foreign base), at least the base it names, which a fix must not remove."""
    try:
        return store.chain(name)[1:]
    except errors.ServiceError:
        try:
            base = store.backing_of(name)
        except errors.ServiceError:
            return []
        return [base] if base is not None else []


def reconcile_backup_point(*, actor: str, target: BackupPoint, **options) -> ReconcileReport:
    """Compare a backup point's backup rows with its files; with fix, remove old orphans and mark
    completed backups whose file is missing as failed. `options`: the fields of ReconcileOptions."""
    point, opts = target, ReconcileOptions(**options)
    report = ReconcileReport(
        scope="backup_point", uuid=str(point.uuid), name=point.name, path=point.path, fix=opts.fix
    )
    if not os.path.isdir(point.path):
        report.error = Words("backup_point_absent", path=point.path)
        return report
    try:
        files = _list_files(point.path)
    except OSError as exc:
        report.error = Words("cannot_list", path=point.path, error=exc)
        return report
    report.files_checked = len(files)
    file_set = set(files)
    backups = list(
        Backup.objects.filter(backup_point=point)
        .exclude(status=BackupStatus.DELETED)
        .exclude(file_name="")
        .order_by("pk")
    )
    busy = busy_uuids() | {str(b.uuid) for b in backups if b.status in IN_PROGRESS_STATUSES}  # files in flux
    referenced = {b.file_name: b for b in backups}
    tick = opts.counter(len(files) + len(backups))
    for backup in backups:
        tick(backup.file_name)
        if backup.file_name not in file_set and backup.status == BackupStatus.COMPLETED:
            report.findings.append(
                Finding.missing(
                    backup.file_name,
                    "backup",
                    backup,
                    detail=Words("backup_file_missing", name=backup.name),
                    expected=BackupStatus(backup.status).label,
                    fix=FixAction.MARK_FAILED,
                )
            )
    orphans = []
    for name in files:
        tick(name)
        if name not in referenced:
            orphans.append(name)

    # Incremental backup files may be qcow2 overlays on older files: an orphan that a referenced
    # file reads through must stay. Read only when there are orphans to judge.
    def protected_backings() -> set[str]:
        store = BackupStore(point.path)
        chained: set[str] = set()
        for name in referenced:
            if name in file_set:
                chained.update(_reads_through(store, name))
        return chained

    classify_orphans(
        report=report,
        orphans=_stored(point.path, orphans),
        busy=busy,
        protected_backings=protected_backings,
        grace_seconds=opts.grace_seconds,
    )
    if opts.fix:
        remove_orphans(
            report=report,
            remove=_remove_file(point.path),
            still_there=lambda name: os.path.lexists(os.path.join(point.path, name)),
            actor=actor,
            object_type="backup_point",
            object_uuid=point.uuid,
        )
        by_uuid = {str(b.uuid): b for b in backups}
        mark_missing(
            report,
            lambda finding: status_transition(
                by_uuid[finding.object_uuid],
                OperationContext(actor=actor),
                allowed=[BackupStatus.COMPLETED],
                to=BackupStatus.FAILED,
                action="reconcile.missing_backup_file",
                message=f"{finding.name} is missing in backup point {point.name}",
            ),
        )
        audit_fix(report, actor=actor, object_type="backup_point", object_uuid=point.uuid)
    return report


register_reconcile_scope(
    ReconcileScope(name="backup_point", targets=_backup_point_targets, run=reconcile_backup_point)
)
