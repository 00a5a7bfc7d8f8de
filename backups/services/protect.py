"""Backup protection: a protected backup is never deleted, by request or by expiry, until unprotected."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from backups import choices
from backups.models import Backup
from sharestore import errors
from sharestore.core.services.state import audit_of

# A backup being removed cannot be kept any more; every other status may be protected.
_GONE = [choices.BackupStatus.DELETING, choices.BackupStatus.DELETED]


@transaction.atomic
def backup_protect(*, actor: str, backup: Backup, protected: bool) -> Backup:
    """Set or clear `protected` (audited); asking for what is already set changes nothing."""
    backup = Backup.objects.select_for_update().get(pk=backup.pk)
    if backup.status in _GONE:
        raise errors.StateConflict(
            kind="backup", uuid=backup.uuid, state=backup.status, action="backup.update"
        )
    if backup.protected == protected:
        return backup
    Backup.objects.filter(pk=backup.pk).update(protected=protected, modified=timezone.now())
    backup.protected = protected
    audit_of(
        backup,
        actor=actor,
        action="backup.protect" if protected else "backup.unprotect",
        message=f"{backup.name!r} {'protected' if protected else 'unprotected'}",
    )
    return backup
