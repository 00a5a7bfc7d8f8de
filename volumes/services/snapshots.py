"""Writes on the snapshot tree: create, delete (merge or hide) and rollback, and the tasks' handlers.

Services lock the volume, validate everything, then move the volume into a transitional state
(snapshotting, merging, rolling back) and queue an operation; the handlers below call the pool's
driver from a task (its tree methods resume from whatever storage shows when a task is delivered
again) and record what it answers (docs/snapshots.md).

How a snapshot's data is kept, merged or hidden is the driver's business (for the directory driver:
`volumes/drivers/qcow2/tree.py` and its planner `plan.py`); `volumes.services.snapshot_tree` describes
the tree to it and records its answer; the rules requests and tasks share live in
`volumes.services.snapshot_rules`.
"""

from __future__ import annotations

import logging
import uuid as uuid_lib
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from sharestore import errors
from sharestore.core.choices import OperationKind
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter
from sharestore.core.services.state import (
    OperationContext,
    audit_of,
    require_state,
    status_transition,
)
from volumes import selectors
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import StorageDriver, TreeWork
from volumes.models import Snapshot, Volume
from volumes.services.busy import merge_ended, readers_words
from volumes.services.quotas import quota_check
from volumes.services.snapshot_rules import (
    check_can_snapshot,
    refuse_if_attached,
    refuse_if_read,
    snapshot_layer_name,
    validate_snapshot_name,
)
from volumes.services.snapshot_tree import (
    OperationJournal,
    checkpoint_for,
    keep_change,
    load_tree,
    progress_for,
    settle_change,
    write_sizes,
)
from volumes.services.volumes import (
    DESC_MAX_LENGTH,
    pool_driver,
    start_operation,
    validate_desc,
    volume_leaves,
    volume_lock,
    volume_snap_length,
)

logger = logging.getLogger(__name__)


def _new_snapshot(volume: Volume, *, name: str, desc: str) -> Snapshot:
    snapshot_uuid = uuid_lib.uuid4()
    try:
        with transaction.atomic():
            return Snapshot.objects.create(
                uuid=snapshot_uuid,
                volume=volume,
                name=name,
                desc=desc,
                parent_id=volume.current_snapshot_id,
                status=SnapshotStatus.CREATING,
                layer_name=snapshot_layer_name(volume, snapshot_uuid),
            )
    except IntegrityError:
        raise errors.SnapshotNameExists(volume=volume.uuid, name=name) from None


def _audit_new_snapshot(snapshot: Snapshot, operation: Operation, message: str) -> None:
    """The audit row of a snapshot row recorded `creating` under the operation that freezes it."""
    audit_of(
        snapshot,
        OperationContext.of(operation),
        action="snapshot.create",
        to_state=str(SnapshotStatus.CREATING.label),
        message=message,
    )


# -- create --------------------------------------------------------------------------------------


@transaction.atomic
def snapshot_create(*, actor: str, volume: Volume, name: str, desc: str = "") -> Snapshot:
    """Record a snapshot in `creating`, move the volume to `snapshotting` and queue the freeze."""
    name = validate_snapshot_name(name)
    desc = validate_desc(desc)
    volume = volume_lock(volume, action="snapshot.create")
    refuse_if_attached(volume, doing="taking a snapshot", doing_cn="创建快照")
    check_can_snapshot(volume, name)
    quota_check(tenant=volume.tenant_id, snapshots=1)
    snapshot = _new_snapshot(volume, name=name, desc=desc)
    operation = start_operation(volume, actor=actor, kind=OperationKind.SNAPSHOT_CREATE, target=snapshot)
    _audit_new_snapshot(
        snapshot, operation, f"name={name!r} parent={snapshot.parent_id and snapshot.parent.uuid}"
    )
    return snapshot


def _handler_context(operation: Operation) -> tuple[Volume, StorageDriver]:
    volume = Volume.objects.select_related("pool").get(pk=operation.volume_id)
    return volume, pool_driver(volume.pool)


def _snapshot_create_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    snapshot = Snapshot.objects.get(uuid=operation.params["snapshot"])
    require_state(volume, [EventState.SNAPSHOTTING], action="snapshot.create")
    require_state(snapshot, [SnapshotStatus.CREATING], field="status", action="snapshot.create")
    reporter.phase("taking the snapshot")
    size, used = driver.snapshot_create(volume.image_name, snapshot.layer_name)
    operation.params["sizes"] = {str(snapshot.uuid): size}
    operation.params["used"] = used


def _creating_ends(snapshot: Snapshot, operation: Operation, *, to: SnapshotStatus, action: str, **audit):
    """A snapshot row leaves `creating` under the operation that froze its layer, or failed to."""
    ctx = OperationContext.of(operation)
    status_transition(snapshot, ctx, allowed=[SnapshotStatus.CREATING], to=to, action=action, **audit)


def _snapshot_frozen(snapshot: Snapshot, operation: Operation) -> None:
    """A snapshot whose layer is frozen becomes available (after create, or rollback's snapshot_first)."""
    _creating_ends(snapshot, operation, to=SnapshotStatus.AVAILABLE, action="snapshot.create.finish")


def _snapshot_create_succeed(operation: Operation) -> None:
    volume = Volume.objects.get(pk=operation.volume_id)
    snapshot = Snapshot.objects.get(uuid=operation.params["snapshot"])
    write_sizes(operation)
    _snapshot_frozen(snapshot, operation)
    extra = {
        "current_snapshot": snapshot,
        "used": operation.params.get("used", 0),
        "snap_length": volume_snap_length(volume),
    }
    volume_leaves(
        volume, operation, held=EventState.SNAPSHOTTING, action="snapshot.create.finish", extra=extra
    )


def _discard_snapshot_row(
    snapshot: Snapshot, operation: Operation, error: errors.ServiceError, action: str
) -> None:
    """A snapshot that never came to be: recorded as failed in the audit trail, then removed."""
    message = f"scode {error.scode}: {error.render_message()}; the row is removed"
    _creating_ends(snapshot, operation, to=SnapshotStatus.ERROR, action=action, message=message)
    snapshot.delete()


def _snapshot_create_fail(operation: Operation, error: errors.ServiceError) -> None:
    volume, driver = _handler_context(operation)
    snapshot = Snapshot.objects.filter(
        uuid=operation.params["snapshot"], status=SnapshotStatus.CREATING
    ).first()
    if snapshot is not None:
        # Back to the state before the request.
        driver.snapshot_create_undo(volume.image_name, snapshot.layer_name)
        _discard_snapshot_row(snapshot, operation, error, "snapshot.create.fail")
    volume_leaves(volume, operation, held=EventState.SNAPSHOTTING, action="snapshot.create.fail", error=error)


SNAPSHOT_CREATE_HANDLER = OperationHandler(
    run=_snapshot_create_run, succeed=_snapshot_create_succeed, fail=_snapshot_create_fail
)


def _tree_settled(
    operation: Operation, volume: Volume, *, held: EventState, action: str, failed: bool, **audit
):
    """The volume back to available once a delete or rollback ended (`.finish`, or `.fail`), with the
    space it uses and its SnapLength as they are now (`audit`: the message or error the row keeps)."""
    volume.refresh_from_db()
    extra = {"used": operation.params.get("used", volume.used), "snap_length": volume_snap_length(volume)}
    action = f"{action}.fail" if failed else f"{action}.finish"
    volume_leaves(volume, operation, held=held, action=action, extra=extra, **audit)


# -- delete --------------------------------------------------------------------------------------

DELETABLE_STATUSES = [SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR]


def _hide(snapshot: Snapshot, ctx: OperationContext, *, allowed) -> None:
    """A deleted snapshot whose data the driver must keep is hidden instead (decided by the request, or
    found by the delete's task): no storage work, its data goes with a later delete or rollback."""
    why = f"{snapshot.name!r} hidden: its data is kept for what still reads it"
    status_transition(
        snapshot, ctx, allowed=allowed, to=SnapshotStatus.HIDDEN, action="snapshot.delete.hide", message=why
    )


@transaction.atomic
def snapshot_delete(
    *, actor: str, volume: Volume, snapshot: Snapshot, name: str | None = None
) -> Operation | None:
    """Delete a snapshot: its data goes, or it is hidden while the driver must keep its data.

    Returns the delete operation, or None when the snapshot was hidden (no storage work: the data is
    kept, still counted in SnapLength, and collected by a later delete or rollback once nothing needs
    it; for the directory driver: while two or more layers read its layer).
    """
    if name is not None and name != snapshot.name:
        raise errors.SnapshotNameMismatch(given=name, uuid=snapshot.uuid)
    volume = volume_lock(volume, action="snapshot.delete")
    # Read again under the lock: a concurrent delete may have removed or hidden it meanwhile.
    snapshot = selectors.snapshot_get(volume=volume, uuid=snapshot.uuid)
    require_state(snapshot, DELETABLE_STATUSES, field="status", action="snapshot.delete")
    refuse_if_attached(volume, doing="deleting a snapshot", doing_cn="删除快照")
    clones, backups = selectors.snapshot_dependents(snapshot=snapshot)
    if clones or backups:
        raise _has_dependents(volume, snapshot, clones, backups)
    ctx = OperationContext(actor=actor)
    if pool_driver(volume.pool).snapshot_delete_keeps(load_tree(volume), str(snapshot.uuid)):
        _hide(snapshot, ctx, allowed=DELETABLE_STATUSES)
        return None
    refuse_if_read(volume, action="deleting this snapshot")
    status_transition(
        snapshot, ctx, allowed=DELETABLE_STATUSES, to=SnapshotStatus.DELETING, action="snapshot.delete"
    )
    return start_operation(volume, actor=actor, kind=OperationKind.SNAPSHOT_DELETE, target=snapshot)


def _has_dependents(volume: Volume, snapshot: Snapshot, clones, backups) -> errors.SnapshotHasDependents:
    """4103 naming the linked clones, and the running backups with their operations and progress."""
    parts = [("linked clone(s) " + ", ".join(clones), "链接克隆 " + ", ".join(clones))] if clones else []
    readers = [r for r in selectors.volume_snapshot_readers(volume=volume) if str(r.uuid) in backups]
    if readers:
        english, chinese = readers_words(readers)
        parts.append((f"running {english}", f"运行中的{chinese}"))
    return errors.SnapshotHasDependents(
        uuid=snapshot.uuid,
        name=snapshot.name,
        dependents="; ".join(english for english, _ in parts),
        dependents_cn="；".join(chinese for _, chinese in parts),
    )


def _snapshot_delete_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    require_state(volume, [EventState.MERGING], action="snapshot.delete")
    reporter.phase("deleting the snapshot's data")
    change = driver.snapshot_delete(
        volume.image_name,
        operation.params["snapshot"],
        load_tree(volume),
        TreeWork(
            journal=OperationJournal(operation),
            progress=progress_for(reporter),
            checkpoint=checkpoint_for(reporter),
        ),
    )
    keep_change(operation, volume, change)


def _snapshot_delete_finish(operation: Operation, error: errors.ServiceError | None) -> None:
    volume, driver = _handler_context(operation)
    if error is not None:
        # What storage shows decides; steps that copy nothing are finished first.
        change = driver.tree_recover(
            volume.image_name,
            load_tree(volume),
            journal=OperationJournal(operation),
            deleting=operation.params["snapshot"],
        )
        keep_change(operation, volume, change)
    write_sizes(operation)
    settle_change(operation, volume, operation.params.get("change", {}))
    snapshot = Snapshot.objects.filter(
        uuid=operation.params["snapshot"], status=SnapshotStatus.DELETING
    ).first()
    if snapshot is not None and error is None and operation.params.get("change", {}).get("kept"):
        # The driver must keep its data after all: what the request would have done.
        _hide(snapshot, OperationContext.of(operation), allowed=[SnapshotStatus.DELETING])
    elif snapshot is not None:
        # Its data did not go. The driver says whether it still holds the snapshot's own content
        # (the directory driver's commit may have written into it: then it is marked error, still a
        # correct base for what reads it; delete it again).
        damaged = str(snapshot.uuid) in operation.params.get("change", {}).get("damaged", [])
        status_transition(
            snapshot,
            OperationContext.of(operation),
            allowed=[SnapshotStatus.DELETING],
            to=SnapshotStatus.ERROR if damaged else SnapshotStatus.AVAILABLE,
            action="snapshot.delete.fail",
            error=error,
        )
    volume.refresh_from_db()
    if merge_ended(operation, volume):
        return  # a volume delete waited for this merge: the volume went to deleting
    _tree_settled(
        operation,
        volume,
        held=EventState.MERGING,
        action="snapshot.delete",
        failed=error is not None,
        error=error,
    )


SNAPSHOT_DELETE_HANDLER = OperationHandler(
    run=_snapshot_delete_run,
    succeed=lambda operation: _snapshot_delete_finish(operation, None),
    fail=_snapshot_delete_finish,
)


# -- rollback ------------------------------------------------------------------------------------


def _auto_name(target: Snapshot) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    prefix = "before-rollback-to-"
    suffix = f"-{stamp}"
    room = settings.SHARESTORE_NAME_MAX_LENGTH - len(prefix) - len(suffix)
    return f"{prefix}{target.name[:room]}{suffix}"


@transaction.atomic
def snapshot_rollback(
    *,
    actor: str,
    volume: Volume,
    snapshot: Snapshot,
    snapshot_first: bool = False,
    snapshot_first_name: str | None = None,
) -> tuple[Operation, Snapshot | None]:
    """Replace the head by an empty overlay on `snapshot`; with `snapshot_first`, snapshot the head first.

    Returns the operation and the snapshot taken first (None without `snapshot_first`).
    """
    if snapshot_first_name:
        snapshot_first_name = validate_snapshot_name(snapshot_first_name, field="snapshot_first_name")
    volume = volume_lock(volume, action="snapshot.rollback")
    # Read again under the lock: a concurrent delete may have removed or hidden it meanwhile.
    snapshot = selectors.snapshot_get(volume=volume, uuid=snapshot.uuid)
    require_state(snapshot, [SnapshotStatus.AVAILABLE], field="status", action="snapshot.rollback")
    refuse_if_attached(volume, doing="a rollback", doing_cn="回滚")
    refuse_if_read(volume, action="rolling back")
    first = None
    if snapshot_first:
        name = snapshot_first_name or _auto_name(snapshot)
        check_can_snapshot(volume, name)
        first = _new_snapshot(
            volume, name=name, desc=f"taken before rolling back to {snapshot.name}"[:DESC_MAX_LENGTH]
        )
    operation = start_operation(
        volume,
        actor=actor,
        kind=OperationKind.SNAPSHOT_ROLLBACK,
        message=f"to snapshot {snapshot.name!r} ({snapshot.uuid})"
        + (f", first snapshot {first.name!r}" if first else ""),
        params={"snapshot": str(snapshot.uuid), "first": str(first.uuid) if first else None},
    )
    if first:
        _audit_new_snapshot(
            first, operation, f"name={first.name!r}, before rolling back to {snapshot.name!r}"
        )
    return operation, first


def _rollback_rows(operation: Operation) -> tuple[Snapshot, Snapshot | None]:
    target = Snapshot.objects.get(uuid=operation.params["snapshot"])
    first_uuid = operation.params.get("first")
    first = Snapshot.objects.filter(uuid=first_uuid).first() if first_uuid else None
    return target, first


def _snapshot_rollback_run(operation: Operation, reporter: Reporter) -> None:
    volume, driver = _handler_context(operation)
    target, first = _rollback_rows(operation)
    require_state(volume, [EventState.ROLLING_BACK], action="snapshot.rollback")
    require_state(target, [SnapshotStatus.AVAILABLE], field="status", action="snapshot.rollback")
    head = volume.image_name
    if first is not None:
        require_state(first, [SnapshotStatus.CREATING], field="status", action="snapshot.create")
        # Both present means the create finished (and maybe the rollback too): do not redo it.
        if not (driver.exists(first.layer_name) and driver.exists(head)):
            reporter.phase("snapshotting the current state")
            driver.snapshot_create(head, first.layer_name)
    reporter.phase("rolling back")
    change = driver.snapshot_rollback(
        head,
        str(target.uuid),
        load_tree(volume),
        TreeWork(
            journal=OperationJournal(operation),
            progress=progress_for(reporter),
            checkpoint=checkpoint_for(reporter),
        ),
    )
    if first is not None:
        change.sizes[str(first.uuid)] = driver.usage(first.layer_name)
    keep_change(operation, volume, change)


def _snapshot_rollback_finish(operation: Operation, error: errors.ServiceError | None) -> None:
    volume, driver = _handler_context(operation)
    target, first = _rollback_rows(operation)
    head = volume.image_name
    if error is None:
        # The run finished: the create (if asked) and the rollback are done; no need to look at storage.
        first_frozen, reset_done = first is not None, True
    else:
        first_frozen = first is not None and driver.exists(first.layer_name) and driver.exists(head)
        if first is not None and not first_frozen:
            driver.snapshot_create_undo(head, first.layer_name)
        reset_done = driver.head_snapshot(head) == target.layer_name
        operation.params["used"] = driver.usage(head)
        if first_frozen:
            sizes = operation.params.setdefault("sizes", {})
            sizes[str(first.uuid)] = driver.usage(first.layer_name)
    write_sizes(operation)
    if first is not None:
        if first_frozen:
            _snapshot_frozen(first, operation)
        else:
            _discard_snapshot_row(first, operation, error or errors.InternalError(), "snapshot.create.fail")
    if reset_done:
        Volume.objects.filter(pk=volume.pk).update(current_snapshot=target)
        if error is not None:
            volume.refresh_from_db()
            change = driver.tree_recover(head, load_tree(volume), journal=OperationJournal(operation))
            keep_change(operation, volume, change)
            write_sizes(operation)
        settle_change(operation, volume, operation.params.get("change", {}))
    elif first_frozen:
        # The create happened, the rollback did not: the head sits on the new snapshot.
        Volume.objects.filter(pk=volume.pk).update(current_snapshot=first)
    volume.refresh_from_db()
    _tree_settled(
        operation,
        volume,
        held=EventState.ROLLING_BACK,
        action="snapshot.rollback",
        failed=error is not None,
        message=(
            f"head on {volume.current_snapshot.name if volume.current_snapshot else 'no snapshot'}"
            + (f"; scode {error.scode}: {error.render_message()}" if error else "")
        ),
    )


SNAPSHOT_ROLLBACK_HANDLER = OperationHandler(
    run=_snapshot_rollback_run,
    succeed=lambda operation: _snapshot_rollback_finish(operation, None),
    fail=_snapshot_rollback_finish,
)
