"""Backup verification: restore to a scratch image, `qemu-img check` it and compare its content
checksum with the one recorded at backup time (moved unchanged from backups/services.py)."""

from __future__ import annotations

import os
import shutil
import tempfile

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backups import choices
from backups.models import Backup, BackupVerification
from backups.services.common import (
    backup_of,
    backup_store,
    chain_busy,
    lock_point,
)
from sharestore import errors
from volumes.choices import OperationKind
from volumes.models import Operation
from volumes.services.operations import OperationHandler, Reporter, operation_run

# -- verification --------------------------------------------------------------------------------


def verify_scratch_dir() -> str:
    """Where verification restores to (SHARESTORE_BACKUP_VERIFY_DIR, default <data dir>/verify)."""
    configured = getattr(settings, "SHARESTORE_BACKUP_VERIFY_DIR", None)
    path = str(configured or os.path.join(settings.SHARESTORE_DATA_DIR, "verify"))
    os.makedirs(path, exist_ok=True)
    return path


def backup_verify(*, actor: str, backup: Backup) -> BackupVerification:
    """Restore the backup to a temporary image, `qemu-img check` it and compare its content's SHA-256 with
    the one recorded at backup time. Runs in the caller (a command or a scheduled task) as an operation,
    so progress shows and a crash is swept; the result is stored on the backup and in its history."""
    with transaction.atomic():
        point = lock_point(backup.backup_point)
        backup = Backup.objects.get(pk=backup.pk)
        if backup.status != choices.BackupStatus.COMPLETED:
            raise errors.BackupNotRestorable(
                uuid=backup.uuid, status=backup.status, action="verified", action_cn="校验"
            )
        busy = [
            b
            for b in chain_busy(point=point, volume_uuid=backup.volume_uuid, readers=False)
            if "Deleting" in b
        ]
        if busy:
            raise errors.BackupChainBusy(volume=backup.volume_uuid, point=point.name, busy=", ".join(busy))
        verification = BackupVerification.objects.create(
            backup=backup, actor=actor[:128], checksum_expected=backup.checksum
        )
        operation = Operation.objects.create(
            kind=OperationKind.BACKUP_VERIFY,
            task="backups.tasks.backup_verify_task",
            target_type="backup",
            target_uuid=backup.uuid,
            volume=backup.volume,
            requested_by=actor[:128],
            bytes_total=backup.volume_capacity,
            params={
                "backup": str(backup.uuid),
                "verification": verification.pk,
                "backup_point": str(point.uuid),
                "source_volume": str(backup.volume_uuid),
            },
        )
    operation_run(operation.pk, BACKUP_VERIFY_HANDLER)
    verification.refresh_from_db()
    return verification


def _backup_verify_run(operation: Operation, reporter: Reporter) -> None:
    backup = backup_of(operation)
    store = backup_store(backup.backup_point)
    workdir = tempfile.mkdtemp(prefix=f"verify-{backup.uuid}-", dir=verify_scratch_dir())
    try:
        reporter.phase("checking the backup files")
        for name in store.chain(backup.file_name):
            report = store.check(store.path(name))
            if report["exit"] not in (0, 3):
                operation.params["check"] = report
                raise errors.BackupVerifyFailed(
                    uuid=backup.uuid, reason=f"qemu-img check of {name} exited {report['exit']}"
                )
        reporter.phase("restoring to a temporary image")
        target = os.path.join(workdir, "restored.qcow2")
        store.restore(backup.file_name, target, progress=lambda p: reporter.progress(p * 0.5))
        reporter.phase("checking the restored image")
        report = store.check(target)
        operation.params["check"] = report
        if report["exit"] not in (0, 3):
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid, reason=f"qemu-img check of the restored image exited {report['exit']}"
            )
        reporter.phase("hashing the restored image")
        found, _count = store.content_checksum(target)
        operation.params["checksum_found"] = found
        if not backup.checksum:
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid, reason="no checksum was recorded at backup time"
            )
        if found != backup.checksum:
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid,
                reason=f"content sha256 {found} differs from {backup.checksum} recorded at backup time",
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _record_verification(operation: Operation, error: errors.ServiceError | None) -> None:
    now = timezone.now()
    result = choices.VerifyResult.OK if error is None else choices.VerifyResult.FAILED
    BackupVerification.objects.filter(pk=operation.params["verification"]).update(
        finished=now,
        result=result,
        scode=error.scode if error else 0,
        message=(error.render_message() + (f": {error.desc[-2000:]}" if error.desc else "")) if error else "",
        checksum_found=operation.params.get("checksum_found", ""),
        image_check={k: v for k, v in (operation.params.get("check") or {}).items()},
    )
    Backup.objects.filter(uuid=operation.params["backup"]).update(verify_result=result, verified_at=now)


BACKUP_VERIFY_HANDLER = OperationHandler(
    run=_backup_verify_run,
    succeed=lambda operation: _record_verification(operation, None),
    fail=_record_verification,
)
