"""django-q2 tasks of the backups app: plain functions taking primary keys. Each is idempotent: it
claims its operation by compare-and-set and does nothing if the operation is finished or held by a
live owner; the handlers resume from what the files show."""

from __future__ import annotations

import logging

from django.conf import settings

from sharestore import errors
from volumes.services.operations import operation_run

logger = logging.getLogger(__name__)

SCHEDULE_ACTOR = "schedule"
DEFAULT_VERIFY_BATCH = 10


def backup_create_task(operation_id: int) -> None:
    from backups.services.create import BACKUP_CREATE_HANDLER

    operation_run(operation_id, BACKUP_CREATE_HANDLER)


def backup_delete_task(operation_id: int) -> None:
    from backups.services.delete import BACKUP_DELETE_HANDLER

    operation_run(operation_id, BACKUP_DELETE_HANDLER)


def backup_restore_task(operation_id: int) -> None:
    from backups.services.restore import BACKUP_RESTORE_HANDLER

    operation_run(operation_id, BACKUP_RESTORE_HANDLER)


def backup_verify_task(operation_id: int) -> None:
    """Re-run of a verification the sweeper found abandoned (verifications start in `backup_verify`)."""
    from backups.services.verify import BACKUP_VERIFY_HANDLER

    operation_run(operation_id, BACKUP_VERIFY_HANDLER)


def prune_task() -> int:
    """Scheduled: delete the backups whose ExpiredTime has passed (protected ones are kept)."""
    from backups.services.prune import backups_prune

    results = backups_prune(actor=SCHEDULE_ACTOR)
    return sum(1 for r in results if r["action"] == "deleting")


def verify_task() -> int:
    """Scheduled: verify the completed backups verified longest ago (SHARESTORE_BACKUP_VERIFY_BATCH a run)."""
    from backups.selectors import backups_to_verify
    from backups.services.verify import backup_verify

    failed = 0
    for backup in backups_to_verify(
        limit=int(getattr(settings, "SHARESTORE_BACKUP_VERIFY_BATCH", DEFAULT_VERIFY_BATCH))
    ):
        try:
            verification = backup_verify(actor=SCHEDULE_ACTOR, backup=backup)
        except errors.ServiceError as exc:
            logger.info("backup %s not verified now: %s", backup.uuid, exc.render_message())
            continue
        failed += verification.result != "ok"
    return failed
