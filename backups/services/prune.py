"""Backup expiry: delete every expired, unprotected backup through `backup_delete`."""

from __future__ import annotations

from collections.abc import Callable

from backups import choices
from backups.selectors import backups_expired
from backups.services.delete import backup_delete
from sharestore import errors


def backups_prune(
    *,
    actor: str,
    dry_run: bool = False,
    now: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict]:
    """Delete every expired, unprotected backup through `backup_delete` (dependents are merged, so they
    stay restorable). One whose chain is busy is skipped and picked up by the next run.
    `progress(done, total, label)` is called before each backup and once at the end."""
    results = []
    expired = list(backups_expired(now=now))
    for done, backup in enumerate(expired):
        if progress is not None:
            progress(done, len(expired), backup.name)
        entry = {"uuid": str(backup.uuid), "name": backup.name, "expired_time": backup.expired_time}
        if dry_run:
            dependents = backup.dependents.filter(status=choices.BackupStatus.COMPLETED).values_list(
                "uuid", flat=True
            )
            entry.update(action="would delete", merge_into=[str(u) for u in dependents])
        else:
            try:
                operation = backup_delete(
                    actor=actor, backup=backup, reason=f"expired at {backup.expired_time}"
                )
            except errors.ServiceError as exc:
                entry.update(action="skipped", scode=exc.scode, reason=exc.render_message())
            else:
                operation.refresh_from_db()
                entry.update(action="deleting", operation=str(operation.uuid), state=operation.state)
        results.append(entry)
    if progress is not None:
        progress(len(expired), len(expired), "")
    return results
