"""What the backup services share: the store of a backup point, defaults, validation, the point lock
and the chain-busy check, and loading an operation's backup."""

from __future__ import annotations

from django.conf import settings

from backups import choices
from backups.models import Backup, BackupPoint
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.state import OperationContext, status_transition

# Measured in bench/backup.py (docs/backups.md): see there before changing it.
DEFAULT_COMPRESS = True


# -- backups -------------------------------------------------------------------------------------
# Life of a backup (docs/backups.md): backup_add records it BackupStarted and queues the operation;
# the task moves it to BackupRunning, writes the file under a temporary name, publishes it by
# rename, hashes the snapshot's content, and the operation's succeed handler marks it
# BackupCompleted with its size and checksum, or its fail handler removes every file it may have
# left and marks it BackupFailed. Deleting moves it to BackupDeleting, merges it into its dependent
# (if an incremental backup sits on it), removes its file, and ends at BackupDeleted.

# Epoch seconds beyond this are not dates (year 9999): refused rather than stored.
MAX_EPOCH = 253402300799


def default_compress() -> bool:
    """Whether backups are zstd-compressed unless the request says (SHARESTORE_BACKUP_COMPRESS)."""
    return bool(getattr(settings, "SHARESTORE_BACKUP_COMPRESS", DEFAULT_COMPRESS))


def backup_store(point: BackupPoint) -> BackupStore:
    return BackupStore(point.path)


def validate_expired_time(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_EPOCH:
        raise errors.InvalidParameter(
            field="expired_time", reason="must be epoch seconds (0 = never expires)"
        )
    return value


def lock_point(point: BackupPoint) -> BackupPoint:
    """Lock the backup point's row: capacity and per-chain checks hold until the transaction commits."""
    locked = BackupPoint.objects.select_for_update().filter(pk=point.pk).first()
    if locked is None:
        raise errors.BackupPointNotFound(uuid=point.uuid)
    return locked


def chain_busy(
    *, point: BackupPoint, volume_uuid, exclude_backup_id: int | None = None, readers: bool
) -> list[str]:
    """What works on the volume's backups on this point now: backups being written or deleted and,
    with `readers`, restores and verifications reading them."""
    busy = []
    writing = Backup.objects.filter(
        backup_point=point, volume_uuid=volume_uuid, status__in=choices.IN_PROGRESS_STATUSES
    ).exclude(pk=exclude_backup_id)
    busy += [f"backup {b.uuid} {b.status}" for b in writing.only("uuid", "status")]
    if readers:
        reading = Operation.objects.filter(
            kind__in=[OperationKind.BACKUP_RESTORE, OperationKind.BACKUP_VERIFY],
            state__in=ACTIVE_OPERATION_STATES,
            params__backup_point=str(point.uuid),
            params__source_volume=str(volume_uuid),
        )
        busy += [f"{o.kind} {o.uuid}" for o in reading.only("uuid", "kind")]
    return busy


def require_chain_idle(
    *,
    point: BackupPoint,
    volume_uuid,
    exclude_backup_id: int | None = None,
    readers: bool = False,
    deleting_only: bool = False,
) -> None:
    """Refuse (BackupChainBusy) while `chain_busy` finds work on the chain; with `deleting_only`, only
    a backup being deleted counts (what reading a completed backup must wait for)."""
    busy = chain_busy(
        point=point, volume_uuid=volume_uuid, exclude_backup_id=exclude_backup_id, readers=readers
    )
    if deleting_only:
        busy = [b for b in busy if "Deleting" in b]
    if busy:
        raise errors.BackupChainBusy(volume=volume_uuid, point=point.name, busy=", ".join(busy))


def lock_completed_backup(backup: Backup, *, action: str, action_cn: str) -> tuple[BackupPoint, Backup]:
    """Lock the backup's point and reload the backup, which must be completed, with no backup of its
    chain being deleted: what restoring or verifying it (`action`, `action_cn`) reads."""
    point = lock_point(backup.backup_point)
    backup = Backup.objects.get(pk=backup.pk)
    if backup.status != choices.BackupStatus.COMPLETED:
        raise errors.BackupNotRestorable(
            uuid=backup.uuid, status=backup.status, action=action, action_cn=action_cn
        )
    require_chain_idle(point=point, volume_uuid=backup.volume_uuid, deleting_only=True)
    return point, backup


def backup_moves(backup: Backup, operation: Operation, *, held: list, to, action: str, **audit) -> None:
    """A backup's status moved by its operation's handler: compare-and-set from one of `held`, audited
    under the operation (`audit`: extra, message, error as `transition` takes them)."""
    status_transition(backup, OperationContext.of(operation), allowed=held, to=to, action=action, **audit)


def backup_of(operation: Operation) -> Backup:
    return Backup.objects.select_related("backup_point", "snapshot", "base", "volume__pool").get(
        uuid=operation.params["backup"]
    )
