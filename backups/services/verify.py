"""Backup verification: `qemu-img check` every file of the chain and recompute every chunk digest of
the backup's content against the chunk index recorded at backup time (`backups.chunks`)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from backups import choices, chunks
from backups.models import Backup, BackupVerification
from backups.secrets import backup_encryption
from backups.services.common import (
    backup_of,
    backup_store,
    lock_completed_backup,
)
from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter, operation_create, operation_run

# -- verification --------------------------------------------------------------------------------


def backup_verify(*, actor: str, backup: Backup, wait: bool = True) -> BackupVerification:
    """`qemu-img check` every file of the backup's chain and recompute every chunk digest of its content
    against the chunk index recorded at backup time (`backups.chunks`). Runs in the caller (a command or
    a scheduled task) as an operation, so progress shows and a crash is swept; the result is stored on
    the backup and in its history. `wait=False` (the console: no hashing inside a request) enqueues the
    operation on a worker instead and returns the verification still pending."""
    with transaction.atomic():
        point, backup = lock_completed_backup(backup, action="verified", action_cn="校验")
        verification = BackupVerification.objects.create(
            backup=backup, actor=actor[:128], checksum_expected=backup.checksum
        )
        fields = dict(
            kind=OperationKind.BACKUP_VERIFY,
            target_type="backup",
            target_uuid=backup.uuid,
            volume=backup.volume,
            bytes_total=backup.volume_capacity,
            params={
                "backup": str(backup.uuid),
                "verification": verification.pk,
                "backup_point": str(point.uuid),
                "source_volume": str(backup.volume_uuid),
            },
        )
        if not wait:
            operation_create(actor=actor, **fields)
            return verification
        operation = Operation.objects.create(requested_by=actor[:128], **fields)
    operation_run(operation.pk, BACKUP_VERIFY_HANDLER)
    verification.refresh_from_db()
    return verification


def _backup_verify_run(operation: Operation, reporter: Reporter) -> None:
    backup = backup_of(operation)
    store = backup_store(backup.backup_point)
    # An encrypted backup is checked and hashed through its key: the digests are of the decrypted
    # content, like the index recorded at backup time (docs/backups.md).
    with backup_encryption(store, backup):
        _verify_files(operation, reporter, backup, store)


def _verify_files(operation: Operation, reporter: Reporter, backup: Backup, store) -> None:
    reporter.phase("checking the backup files")
    chain = store.chain(backup.file_name)
    # One report per file, and the worst exit status (what `verify_backups` prints).
    operation.params["check"] = {"exit": 0, "files": {}}
    for name in chain:
        report = store.check(store.path(name))
        operation.params["check"]["files"][name] = report
        operation.params["check"]["exit"] = max(operation.params["check"]["exit"], report["exit"])
        if report["exit"] not in (0, 3):
            raise errors.BackupVerifyFailed(
                uuid=backup.uuid, reason=f"qemu-img check of {name} exited {report['exit']}"
            )
    reporter.phase("hashing every chunk of the backup's content")
    try:
        result = chunks.verify(store, backup.file_name, backup.checksum, chain, progress=reporter.progress)
    except errors.StorageError as exc:
        # An unreadable cluster (a damaged compressed one fails to inflate) is a failed backup too.
        raise errors.BackupVerifyFailed(
            uuid=backup.uuid, reason=f"reading its content failed: {exc.render_message()}", desc=exc.desc
        ) from exc
    operation.params["checksum_found"] = result.found
    operation.params["chunks"] = result.stats.as_dict()
    if result.failure:
        raise errors.BackupVerifyFailed(uuid=backup.uuid, reason=result.failure)


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
