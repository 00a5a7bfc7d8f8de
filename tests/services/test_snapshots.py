"""Snapshot services on real images: every snapshot and the head read back what was written, after
creates, rollbacks, deletes, hidden layers and their later merge, and after a crash or a failure at
every storage step of each operation."""

from __future__ import annotations

import uuid as uuid_lib

import pytest

from sharestore import errors
from sharestore.core.choices import OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.tasks import operation_task
from tests.services.snapshot_support import (
    REGIONS,
    VOLUME_BYTES,
    Crash,
    assert_settled,
    assert_tree_matches_disk,
    content_mismatches,
    redeliver,
    run_tasks,
    storage_fault,
    write_regions,
)
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import SnapshotSource
from volumes.drivers.qcow2.plan import MERGE_COMMIT, MERGE_REBASE
from volumes.models import Snapshot, Volume, VolumeAttachment
from volumes.services import snapshots as snaps
from volumes.services.volumes import pool_driver, volume_create

ACTOR = "test"


def pool(topology):
    return topology["pools"][0]


def new_volume(topology, name: str = "vol", **overrides) -> Volume:
    fields = dict(
        actor=ACTOR,
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        pool=pool(topology),
        name=name,
        volume_type="block",
        capacity=VOLUME_BYTES,
        snap_capacity=1 << 30,
    )
    fields.update(overrides)
    with run_tasks():
        volume = volume_create(**fields)
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE
    return volume


class Model:
    """What every image of one volume should read: 16 regions, one pattern byte each (0: never written)."""

    def __init__(self, topology, name="vol", **overrides):
        self.volume = new_volume(topology, name, **overrides)
        self.head = [0] * REGIONS
        self.snaps: dict[str, list[int]] = {}

    @property
    def driver(self):
        return pool_driver(self.volume.pool)

    def write(self, **regions):
        content = {int(k[1:]): v for k, v in regions.items()}
        write_regions(self.driver.path(self.volume.image_name), content)
        for index, byte in content.items():
            self.head[index] = byte

    def snapshot(self, name: str) -> Snapshot:
        return Snapshot.objects.exclude(status=SnapshotStatus.HIDDEN).get(volume=self.volume, name=name)

    # The model is updated once the service accepted the request, before its task runs (when the
    # `with` block ends): a crash of the task then leaves the model describing the finished work.

    def create(self, name):
        with run_tasks():
            snaps.snapshot_create(actor=ACTOR, volume=self.volume, name=name)
            self.snaps[name] = list(self.head)

    def delete(self, name):
        with run_tasks():
            result = snaps.snapshot_delete(actor=ACTOR, volume=self.volume, snapshot=self.snapshot(name))
            del self.snaps[name]
        return result

    def rollback(self, name, first=None):
        with run_tasks():
            snaps.snapshot_rollback(
                actor=ACTOR,
                volume=self.volume,
                snapshot=self.snapshot(name),
                snapshot_first=first is not None,
                snapshot_first_name=first,
            )
            if first:
                self.snaps[first] = list(self.head)
            self.head = list(self.snaps[name])

    def expected(self, *, skip_error=False) -> dict[str, list[int]]:
        images = {self.driver.path(self.volume.image_name): self.head}
        for row in Snapshot.objects.filter(volume=self.volume).exclude(status=SnapshotStatus.HIDDEN):
            if skip_error and row.status == SnapshotStatus.ERROR:
                continue
            images[self.driver.path(row.layer_name)] = self.snaps[row.name]
        return images

    def check(self):
        assert_settled(self.volume)
        assert_tree_matches_disk(self.volume)
        visible = set(
            Snapshot.objects.filter(volume=self.volume)
            .exclude(status=SnapshotStatus.HIDDEN)
            .values_list("name", flat=True)
        )
        assert visible == set(self.snaps)
        assert content_mismatches(self.expected()) == []


def layer_count(model: Model) -> int:
    return Snapshot.objects.filter(volume=model.volume).count()


# -- the ordinary paths --------------------------------------------------------------------------


def test_create_freezes_the_head_and_sizes_the_layer(topology):
    m = Model(topology)
    m.write(r0=1, r1=1)
    m.create("s1")
    m.check()
    s1 = m.snapshot("s1")
    m.volume.refresh_from_db()
    assert (s1.status, s1.size, s1.parent_id) == (SnapshotStatus.AVAILABLE, 2 * (256 << 10), None)
    assert m.volume.current_snapshot_id == s1.pk
    assert (m.volume.used, m.volume.snap_length) == (0, s1.size)
    # Beside the head (docs/storage.md "Pool layout"): freezing it is a rename inside volume/.
    assert s1.layer_name == f"volume/{m.volume.uuid}@{s1.uuid}.qcow2"
    operation = Operation.objects.get(target_uuid=s1.uuid)
    assert (operation.kind, operation.state, operation.progress) == (
        "snapshot.create",
        OperationState.SUCCEEDED,
        100.0,
    )


def test_rollback_to_any_snapshot_branches_and_keeps_every_branch(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.write(r2=3)
    m.create("c")
    m.write(r3=4)
    m.rollback("a")
    m.check()
    m.write(r4=5)
    m.create("a1")
    m.rollback("b")
    m.write(r5=6)
    m.check()
    parents = {r.name: r.parent and r.parent.name for r in Snapshot.objects.filter(volume=m.volume)}
    assert parents == {"a": None, "b": "a", "c": "b", "a1": "a"}
    assert m.volume.current_snapshot.name == "b"


def test_rollback_with_snapshot_first_can_be_undone(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("s1")
    m.write(r0=9, r1=2)
    m.rollback("s1", first="before")
    m.check()
    assert m.snapshot("before").parent.name == "s1"
    m.rollback("before")
    assert m.head[:2] == [9, 2]
    m.check()


def test_rollback_with_snapshot_first_names_it_when_no_name_is_given(topology):
    m = Model(topology)
    m.create("s1")
    with run_tasks():
        _, first = snaps.snapshot_rollback(
            actor=ACTOR, volume=m.volume, snapshot=m.snapshot("s1"), snapshot_first=True
        )
    assert first.name.startswith("before-rollback-to-s1-")
    first.refresh_from_db()
    assert first.status == SnapshotStatus.AVAILABLE


@pytest.mark.parametrize(
    "head_regions, strategy",
    [({"r3": 2}, MERGE_COMMIT), ({"r1": 2, "r2": 2, "r3": 2, "r4": 2}, MERGE_REBASE)],
    ids=["small-head-commit", "big-head-rebase"],
)
def test_delete_the_snapshot_under_the_head_merges_the_cheaper_way(topology, head_regions, strategy):
    m = Model(topology)
    m.write(r0=1, r5=1, r6=1)
    m.create("base")
    m.write(r7=7, r8=7)
    m.create("s1")
    m.write(**head_regions)
    assert m.delete("s1") is not None
    m.check()
    operation = Operation.objects.get(kind="snapshot.delete")
    assert operation.params["journal"] == {str(operation.target_uuid): strategy}
    assert m.volume.current_snapshot.name == "base"
    assert layer_count(m) == 1


def test_a_layer_that_a_backup_names_is_never_written_by_a_merge(topology):
    m = Model(topology)
    m.write(r0=1, r1=1, r2=1, r3=1)
    m.create("s1")
    m.write(r4=2)  # a small head: a commit would be cheaper
    make_backup(m.snapshot("s1"), "BackupCompleted")
    m.delete("s1")
    m.check()
    operation = Operation.objects.get(kind="snapshot.delete")
    assert operation.params["journal"] == {str(operation.target_uuid): MERGE_REBASE}


@pytest.mark.parametrize("child_regions", [{"r3": 2}, {"r1": 2, "r2": 2, "r3": 2}])
def test_delete_a_middle_snapshot_merges_into_its_child(topology, child_regions):
    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=1, r2=1)
    m.create("b")
    m.write(**child_regions)
    m.create("c")
    m.write(r9=9)
    m.delete("b")
    m.check()
    assert m.snapshot("c").parent.name == "a"


def test_delete_a_leaf_removes_its_layer(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.rollback("a")
    m.delete("b")
    m.check()
    assert layer_count(m) == 1


def test_a_layer_with_two_dependents_is_hidden_counted_and_merged_later(topology):
    m = Model(topology)
    m.write(r0=1, r1=1)
    m.create("a")
    m.write(r2=2)
    m.create("b")
    m.rollback("a")
    m.write(r3=3)
    # "a" is read by "b" and by the head: hidden, no operation, its layer kept.
    assert m.delete("a") is None
    m.check()
    hidden = Snapshot.objects.get(volume=m.volume, name="a")
    assert hidden.status == SnapshotStatus.HIDDEN
    m.volume.refresh_from_db()
    assert m.volume.snap_length == hidden.size + m.snapshot("b").size
    assert AuditEvent.objects.filter(action="snapshot.delete.hide", object_uuid=hidden.uuid).exists()
    # Its name is free again.
    m.create("a")
    m.check()
    assert m.snapshot("a").parent_id == hidden.pk
    # Deleting "b" leaves the hidden layer one dependent (the new "a"): it is merged in the same operation.
    m.delete("b")
    m.check()
    assert not Snapshot.objects.filter(pk=hidden.pk).exists()
    assert m.snapshot("a").parent_id is None
    assert layer_count(m) == 1
    assert AuditEvent.objects.filter(action="snapshot.merge", object_uuid=hidden.uuid).exists()


def test_a_rollback_away_from_a_hidden_layer_merges_it(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.write(r2=3)
    m.create("c")
    m.rollback("b")  # b: read by c and the head
    m.write(r3=4)
    m.delete("b")
    assert Snapshot.objects.get(volume=m.volume, name="b").status == SnapshotStatus.HIDDEN
    m.rollback("a")  # the head left the hidden layer: only c reads it now
    m.check()
    assert layer_count(m) == 2
    assert m.snapshot("c").parent.name == "a"


def test_hidden_layers_stack_and_go_one_by_one(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.write(r2=3)
    m.create("c")
    m.rollback("b")
    m.write(r3=4)
    m.create("d")
    m.rollback("a")
    m.write(r4=5)
    m.create("x")
    m.delete("b")  # read by c and d
    m.delete("a")  # read by b (hidden) and x
    assert [r.name for r in Snapshot.objects.filter(volume=m.volume, status=SnapshotStatus.HIDDEN)] == [
        "a",
        "b",
    ]
    m.check()
    m.delete("c")  # c removed; b is left with d only: folded into d; a still backs d and x
    m.check()
    assert [r.name for r in Snapshot.objects.filter(volume=m.volume, status=SnapshotStatus.HIDDEN)] == ["a"]
    assert m.snapshot("d").parent.name == "a"
    m.delete("d")  # d removed; a is left with x only: folded into x
    m.check()
    assert layer_count(m) == 1


def test_force_delete_of_the_volume_removes_hidden_layers_too(topology):
    from volumes.services.volumes import volume_delete

    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.create("b")
    m.rollback("a")
    m.delete("a")  # hidden
    assert len([n for n in m.driver._all_files() if str(m.volume.uuid) in n]) == 3
    with pytest.raises(errors.VolumeHasSnapshots):
        volume_delete(actor=ACTOR, volume=m.volume)
    with run_tasks():
        volume_delete(actor=ACTOR, volume=m.volume, force=True)
    m.volume.refresh_from_db()
    assert m.volume.state == EventState.DELETED
    assert [n for n in m.driver._all_files() if str(m.volume.uuid) in n] == []


def test_snap_length_update_counts_hidden_layers(topology):
    from volumes.services.repair.usage import SNAP_LENGTH, volume_usage_refresh

    m = Model(topology)
    m.write(r0=1)
    m.create("a")
    m.write(r1=1, r2=1)
    m.create("b")
    m.rollback("a")
    m.delete("a")
    volume = volume_usage_refresh(actor=ACTOR, volume=m.volume, fields=[SNAP_LENGTH])
    assert volume.snap_length == 3 * (256 << 10)


def test_snapshot_of_a_linked_clone_keeps_its_origin_chain(topology):
    """A volume whose head sits on another volume's snapshot (how issue 4 makes linked clones)."""
    src = Model(topology, "src")
    src.write(r0=1, r1=1)
    src.create("origin")
    clone = Volume.objects.create(
        uuid=uuid_lib.uuid4(),
        name="clone",
        tenant=src.volume.tenant,
        namespace=src.volume.namespace,
        cluster=src.volume.cluster,
        pool=src.volume.pool,
        volume_type="block",
        capacity=VOLUME_BYTES,
        snap_cap=1 << 30,
        state=EventState.AVAILABLE,
        source_volume=src.volume,
        parent_snapshot=src.snapshot("origin"),
    )
    driver = src.driver
    driver.linked_clone(
        clone.image_name, SnapshotSource(driver, src.volume.image_name, src.snapshot("origin").layer_name)
    )
    m = Model.__new__(Model)
    m.volume, m.head, m.snaps = clone, list(src.head), {}
    m.write(r2=2)
    m.create("c1")
    assert driver.backing_chain(clone.image_name)[2] == src.snapshot("origin").layer_name
    m.write(r3=3, r4=3, r5=3)
    m.delete("c1")  # rebase of the clone's head onto the origin layer in the other volume's directory
    assert driver.backing_chain(clone.image_name) == [clone.image_name, src.snapshot("origin").layer_name]
    assert content_mismatches({driver.path(clone.image_name): m.head}) == []
    # The origin cannot go while the clone reads it.
    with pytest.raises(errors.SnapshotHasDependents, match=str(clone.uuid)):
        src.delete("origin")


# -- refusals: nothing changes -------------------------------------------------------------------


def snapshot_files(m: Model) -> list[str]:
    return [n for n in m.driver._all_files() if n.startswith("snapshots/") or "@" in n]


def test_refusals_change_nothing(topology, settings):
    m = Model(topology, snap_capacity=1 << 20)
    m.write(r0=1)
    m.create("s1")
    before = (
        snapshot_files(m),
        Snapshot.objects.count(),
        Operation.objects.count(),
        m.driver.backing_chain(m.volume.image_name),
    )

    def unchanged():
        m.volume.refresh_from_db()
        assert m.volume.state == EventState.AVAILABLE
        after = (
            snapshot_files(m),
            Snapshot.objects.count(),
            Operation.objects.count(),
            m.driver.backing_chain(m.volume.image_name),
        )
        assert after == before

    with pytest.raises(errors.SnapshotNameExists):
        m.create("s1")
    unchanged()
    with pytest.raises(errors.InvalidName, match="reserved"):
        m.create("head")
    unchanged()
    with pytest.raises(errors.InvalidName):
        m.create("  ")
    unchanged()

    settings.SHARESTORE_SNAPSHOT_MAX_DEPTH = 1
    with pytest.raises(errors.SnapshotChainTooDeep, match="2 layers") as raised:
        m.create("deep")
    assert raised.value.params["limit"] == 1
    unchanged()
    settings.SHARESTORE_SNAPSHOT_MAX_DEPTH = 32

    Volume.objects.filter(pk=m.volume.pk).update(snap_length=1 << 20)
    m.volume.refresh_from_db()
    with pytest.raises(errors.SnapCapReached):
        m.create("full")
    Volume.objects.filter(pk=m.volume.pk).update(snap_length=m.snapshot("s1").size)
    unchanged()

    VolumeAttachment.objects.create(volume=m.volume, vm_uuid=uuid_lib.uuid4())
    for action in (lambda: m.create("s2"), lambda: m.delete("s1"), lambda: m.rollback("s1")):
        with pytest.raises(errors.VolumeAttached, match="hypervisor holds the active layer open"):
            action()
        unchanged()
    VolumeAttachment.objects.filter(volume=m.volume).delete()

    for state in (EventState.MERGING, EventState.ROLLING_BACK, EventState.SNAPSHOTTING, EventState.ERROR):
        Volume.objects.filter(pk=m.volume.pk).update(state=state)
        for action in (lambda: m.create("s2"), lambda: m.delete("s1"), lambda: m.rollback("s1")):
            with pytest.raises(errors.StateConflict, match=str(m.volume.uuid)):
                action()
        Volume.objects.filter(pk=m.volume.pk).update(state=EventState.AVAILABLE)
        unchanged()

    with pytest.raises(errors.SnapshotNameMismatch):
        snaps.snapshot_delete(actor=ACTOR, volume=m.volume, snapshot=m.snapshot("s1"), name="other")
    unchanged()


def test_snapshots_in_transit_or_in_error_refuse_what_they_cannot_do(topology):
    m = Model(topology)
    m.create("s1")
    for status in (SnapshotStatus.CREATING, SnapshotStatus.DELETING, SnapshotStatus.ERROR):
        Snapshot.objects.filter(volume=m.volume, name="s1").update(status=status)
        with pytest.raises(errors.StateConflict, match="cannot roll back to snapshot"):
            m.rollback("s1")
        if status != SnapshotStatus.ERROR:
            with pytest.raises(errors.StateConflict, match="delete"):
                m.delete("s1")
    # An error snapshot can still be deleted.
    m.delete("s1")
    m.check()


def make_backup(snapshot: Snapshot, status: str):
    from backups.models import Backup, BackupPoint

    point, _ = BackupPoint.objects.get_or_create(
        name="bp", cluster=snapshot.volume.cluster, defaults={"path": "/nonexistent", "capacity": 1 << 40}
    )
    return Backup.objects.create(
        name="bk",
        backup_point=point,
        tenant=snapshot.volume.tenant,
        cluster=snapshot.volume.cluster,
        volume=snapshot.volume,
        volume_uuid=snapshot.volume.uuid,
        volume_capacity=snapshot.volume.capacity,
        volume_type=snapshot.volume.volume_type,
        snapshot=snapshot,
        snapshot_uuid=snapshot.uuid,
        snapshot_name=snapshot.name,
        status=status,
    )


def test_dependents_refuse_delete_and_readers_refuse_rewrites(topology):
    m = Model(topology)
    m.write(r0=1)
    m.create("s1")
    m.write(r1=2)
    m.create("s2")
    backup = make_backup(m.snapshot("s1"), "BackupRunning")
    with pytest.raises(errors.SnapshotHasDependents, match=f"running backup.*{backup.uuid}"):
        m.delete("s1")
    # Rolling back or merging would rewrite layers under the running backup.
    with pytest.raises(errors.SnapshotsBeingRead, match=str(backup.uuid)):
        m.rollback("s2")
    with pytest.raises(errors.SnapshotsBeingRead, match=str(backup.uuid)):
        m.delete("s2")
    # Taking a snapshot renames only the head: allowed.
    m.create("s3")
    backup.status = "BackupCompleted"
    backup.save()
    m.delete("s1")
    m.check()
    # A finished backup keeps the snapshot's identity.
    backup.refresh_from_db()
    assert (backup.snapshot_id, backup.snapshot_name) == (None, "s1")


# -- crashes and failures at every storage step --------------------------------------------------


def scenario_create(m):
    m.write(r0=1, r1=1)
    m.create("s0")
    m.write(r2=2)
    return lambda: m.create("s1")


def scenario_delete_commit(m):
    m.write(r0=1, r1=1, r2=1, r3=1)
    m.create("s1")
    m.write(r4=2)
    return lambda: m.delete("s1")


def scenario_delete_rebase(m):
    m.write(r0=1)
    m.create("base")
    m.write(r1=1)
    m.create("s1")
    m.write(r2=2, r3=2, r4=2, r5=2)
    return lambda: m.delete("s1")


def scenario_delete_into_child_and_cascade(m):
    m.write(r0=1)
    m.create("a")
    m.write(r1=2, r2=2)
    m.create("b")
    m.write(r3=3)
    m.create("c")
    m.rollback("a")
    m.write(r4=4)
    m.delete("a")  # hidden: b and the head read it
    return lambda: m.delete("b")  # b folds into c; a stays hidden (c, head)


def scenario_delete_leaf_cascade(m):
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.rollback("a")
    m.write(r2=3, r3=3)
    m.delete("a")  # hidden
    return lambda: m.delete("b")  # b removed, then a folds into the head


def scenario_rollback(m):
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.write(r2=3)
    return lambda: m.rollback("a")


def scenario_rollback_first_and_collect(m):
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.rollback("a")
    m.write(r2=3)
    m.create("c")
    m.rollback("a")
    m.delete("a")  # hidden: b, c and the head read it
    m.write(r3=4)
    return lambda: m.rollback("b", first="keep")


SCENARIOS = {
    "create": (scenario_create, operation_task),
    "delete-commit": (scenario_delete_commit, operation_task),
    "delete-rebase": (scenario_delete_rebase, operation_task),
    "delete-into-child": (scenario_delete_into_child_and_cascade, operation_task),
    "delete-leaf-cascade": (scenario_delete_leaf_cascade, operation_task),
    "rollback": (scenario_rollback, operation_task),
    "rollback-first": (scenario_rollback_first_and_collect, operation_task),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_crash_at_any_step_is_finished_by_the_redelivered_task(topology, scenario):
    setup, task = SCENARIOS[scenario]
    at = 1
    while True:
        m = Model(topology, f"{scenario}-{at}")
        action = setup(m)
        marker = Operation.objects.order_by("-id").first().pk
        with storage_fault(at) as seen:
            try:
                action()
            except Crash:
                crashed = True
            else:
                crashed = False
        if not crashed:
            m.check()
            break
        operation = Operation.objects.filter(pk__gt=marker).get()
        assert operation.state == OperationState.RUNNING
        redeliver(operation, task)
        operation.refresh_from_db()
        assert operation.state == OperationState.SUCCEEDED, (
            at,
            operation.error_message,
            operation.error_detail,
        )
        m.check()
        at += 1
    # Every scenario has storage steps to crash after (a rollback has two: the overlay's create and
    # its publish; its size comes from the layer's header and the head's usage from its tables).
    assert at > 2 and seen["steps"] == at - 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_failure_at_any_step_leaves_a_consistent_tree(topology, scenario):
    setup, _task = SCENARIOS[scenario]
    at = 1
    while True:
        m = Model(topology, f"{scenario}-{at}")
        action = setup(m)
        before_head, before_snaps = list(m.head), dict(m.snaps)
        marker = Operation.objects.order_by("-id").first().pk
        with storage_fault(at, fault=errors.StorageError):
            action()
        operation = Operation.objects.filter(pk__gt=marker).get()
        if operation.state == OperationState.SUCCEEDED:
            m.check()
            break
        assert operation.state == OperationState.FAILED
        assert operation.error_scode == 5001
        assert_settled(m.volume)
        assert_tree_matches_disk(m.volume)
        m.volume.refresh_from_db()
        # The model assumed success; what did happen is one of the states before or after.
        names = set(
            Snapshot.objects.filter(volume=m.volume)
            .exclude(status=SnapshotStatus.HIDDEN)
            .values_list("name", flat=True)
        )
        snapshots_content = {**before_snaps, **m.snaps}
        m.snaps = {n: snapshots_content[n] for n in names}
        head_options = [before_head, m.head]
        m.head = before_head
        images = m.expected(skip_error=True)
        head_path = m.driver.path(m.volume.image_name)
        assert not content_mismatches({p: c for p, c in images.items() if p != head_path})
        assert any(not content_mismatches({head_path: option}) for option in head_options)
        at += 1
