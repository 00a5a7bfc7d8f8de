"""A volume busy with another operation: the error that names it, and a volume delete queued behind
a snapshot merge (docs/api.md, "Back-to-back calls").

A request that finds its volume busy raises `VolumeBusy` with the operation that holds it. A short
step (constant time on storage: an empty volume's create, a snapshot, a rollback, a linked clone) is
waited for by the view (`sharestore.core.services.waits.busy_retry`, outside the service's
transaction); a long one (a copy or a merge) is answered at once with its kind and progress.
"""

from __future__ import annotations

from django.utils import timezone

from sharestore import errors
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationKind
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services.operations import operation_create
from sharestore.core.services.state import OperationContext, audit, transition
from sharestore.core.services.waits import SHORT_KINDS
from sharestore.error_words import operation_kind_words
from volumes import selectors
from volumes.choices import EventState
from volumes.models import Volume, VolumeAttachment

# Operations that read a volume without making it busy: they never explain a busy state.
READER_KINDS = [OperationKind.BACKUP_CREATE, OperationKind.BACKUP_DELETE, OperationKind.BACKUP_VERIFY]

# What a refused request wanted to do, in words (the services' action names are identifiers).
ACTION_WORDS = {
    "snapshot.create": ("take a snapshot", "创建快照"),
    "snapshot.delete": ("delete a snapshot", "删除快照"),
    "snapshot.rollback": ("roll back", "回滚"),
    "clone": ("clone it", "克隆"),
    "flatten": ("flatten it", "扁平化"),
    "backup.add": ("back it up", "备份"),
    "delete": ("delete it", "删除"),
    "attach": ("attach it", "挂载"),
    "update usage": ("measure its usage", "更新用量"),
}
# The phrases the snapshot rules name a rewrite of layers by (snapshot_rules.refuse_if_read).
READ_ACTION_WORDS = {
    "rolling back": ("roll back", "回滚"),
    "deleting this snapshot": ("delete this snapshot", "删除此快照"),
    "flattening": ("flatten it", "扁平化"),
}


def active_operation(volume: Volume) -> Operation | None:
    """The newest queued or running operation that holds the volume in its transitional state."""
    return (
        Operation.objects.filter(volume_id=volume.pk, state__in=ACTIVE_OPERATION_STATES)
        .exclude(kind__in=READER_KINDS)
        .order_by("-created", "-id")
        .first()
    )


def busy_error(volume: Volume, *, action: str) -> errors.StateConflict:
    """The error for a request that found `volume` (as read under its lock) not available: VolumeBusy
    naming the operation that holds it, or a plain StateConflict when none does (error, deleted)."""
    state = f"{volume.state} ({volume.get_state_display()})"
    operation = active_operation(volume)
    if operation is None or volume.state == EventState.DELETING:
        return errors.StateConflict(kind="volume", uuid=volume.uuid, state=state, action=action)
    return _named(volume, operation, action=action)


def readers_error(volume: Volume, *, action: str) -> errors.ServiceError | None:
    """The refusal of a rewrite of the volume's snapshot layers while something reads them, naming each
    reader's operation, its kind and progress: VolumeBusy (short, waited for by `busy_retry`) when every
    reader is a short step (a linked clone being linked), SnapshotsBeingRead (4105) at once otherwise."""
    readers = selectors.volume_snapshot_readers(volume=volume)
    if not readers:
        return None
    operations = [reader.operation for reader in readers]
    if all(operation is not None and operation.kind in SHORT_KINDS for operation in operations):
        return _named(volume, operations[0], action=action)
    english, chinese = readers_words(readers)
    return errors.SnapshotsBeingRead(uuid=volume.uuid, action=action, readers=english, readers_cn=chinese)


def readers_words(readers: list[selectors.LayerReader]) -> tuple[str, str]:
    """Readers of the layers in words, joined, in English and Chinese (`reader_words`)."""
    words = [reader_words(reader) for reader in readers]
    return "; ".join(english for english, _ in words), "；".join(chinese for _, chinese in words)


# A reader without its operation in both languages (formats of the UUID and the snapshot's name).
_READER_NOUNS = {
    "backup": ("backup {uuid} of snapshot {name!r}", "快照 {name!r} 的备份 {uuid}"),
    "clone": ("clone {uuid} being copied", "正在复制的克隆 {uuid}"),
    "linked clone": ("linked clone {uuid} being flattened", "正在扁平化的链接克隆 {uuid}"),
}


def reader_words(reader: selectors.LayerReader) -> tuple[str, str]:
    """A reader of the layers in words: what it is, and its operation with kind and progress."""
    english, chinese = (
        template.format(uuid=reader.uuid, name=reader.snapshot_name)
        for template in _READER_NOUNS[reader.noun]
    )
    operation = reader.operation
    if operation is None:
        return english, chinese
    kind, kind_cn = operation_kind_words(operation.kind)
    progress = round(float(operation.progress), 1)
    return (
        f"{english} ({kind}, operation {operation.uuid}, {progress}% done)",
        f"{chinese}（{kind_cn}，操作 {operation.uuid}，已完成 {progress}%）",
    )


def _named(volume: Volume, operation: Operation, *, action: str) -> errors.VolumeBusy:
    state = f"{volume.state} ({volume.get_state_display()})"
    kind, kind_cn = operation_kind_words(operation.kind)
    action_en, action_cn = {**ACTION_WORDS, **READ_ACTION_WORDS}.get(action, (action, action))
    error = errors.VolumeBusy(
        uuid=volume.uuid,
        state=state,
        operation=operation.uuid,
        operation_kind=kind,
        operation_kind_cn=kind_cn,
        progress=round(float(operation.progress), 1),
        action=action_en,
        action_cn=action_cn,
    )
    error.operation_id, error.short = operation.pk, operation.kind in SHORT_KINDS
    return error


def refuse_if_busy(volume: Volume, *, action: str, allowed=(EventState.AVAILABLE,)) -> None:
    if volume.state not in allowed:
        raise busy_error(volume, action=action)


# -- a volume delete during a snapshot merge ------------------------------------------------------


def volume_delete_after_merge(*, actor: str, volume: Volume, force: bool) -> Operation:
    """Accept a delete of a volume whose snapshot merge runs: it is recorded (`deleted_at`) and starts
    when the merge ends, whatever its outcome (`merge_ended`). Returns the merge operation.

    Call with the volume's row locked and the delete's checks passed. The merge is not abandoned: its
    worker holds qemu-img on the layers, and removing them under it could not be fenced safely.
    """
    merge = active_operation(volume)
    if merge is None or merge.kind != OperationKind.SNAPSHOT_DELETE:
        raise busy_error(volume, action="delete")
    now = timezone.now()
    rows = Volume.objects.filter(pk=volume.pk, state=EventState.MERGING).update(deleted_at=now, modified=now)
    if rows != 1:
        raise busy_error(Volume.objects.get(pk=volume.pk), action="delete")
    VolumeAttachment.objects.filter(volume_id=volume.pk).delete()
    note = f"after the snapshot merge {merge.uuid}" + (" (force)" if force else "")
    audit(actor=actor, message=note, object_type="volume", object_uuid=volume.uuid, **_queued(volume))
    return merge


def _queued(volume: Volume) -> dict:
    """The audit event that records a delete queued behind a merge (and keeps who asked)."""
    return {"action": "volume.delete.queued", "volume_id": volume.pk}


def merge_ended(operation: Operation, volume: Volume) -> bool:
    """At the end of a merge: start the delete queued behind it, if one was. True when it did (the
    volume went to deleting instead of back to available)."""
    # Only a delete asked during this merge: one left by a merge an operator cancelled does not count.
    if volume.deleted_at is None or volume.deleted_at < operation.created:
        return False
    ctx = OperationContext.of(operation)
    transition(volume, ctx=ctx, allowed=[EventState.MERGING], to=EventState.DELETING, action="volume.delete")
    asked = (
        AuditEvent.objects.filter(**_queued(volume)).order_by("-created", "-id").values_list("actor").first()
    )
    params = {"force": True, "after": str(operation.uuid)}
    actor = asked[0] if asked else operation.requested_by
    kind, target = OperationKind.VOLUME_DELETE, volume.uuid
    operation_create(
        kind=kind, target_type="volume", target_uuid=target, actor=actor, volume=volume, params=params
    )
    return True
