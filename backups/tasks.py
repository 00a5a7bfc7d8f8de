"""Scheduled django-q2 tasks of the backups app: expire and verify backups. The backups' operations
run through the one task entry (`sharestore.core.tasks.operation_task`), registered in `apps.py`."""

from __future__ import annotations

import logging

from django.conf import settings

from sharestore import errors

logger = logging.getLogger(__name__)

SCHEDULE_ACTOR = "schedule"
DEFAULT_VERIFY_BATCH = 10


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
