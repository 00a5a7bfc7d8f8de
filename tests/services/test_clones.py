"""Clone and flatten services on real images: every clone, linked or full, and every flattened clone
compares equal to its source snapshot (`qemu-img compare`); later writes on either side do not leak;
progress is monotonic and reaches 100 only with a usable volume; readers refuse rewrites; crashes and
failures at every storage step leave no volume that looks usable without being so."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid as uuid_lib

import pytest

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services import operations
from sharestore.core.tasks import operation_task
from tests.helpers import identical, qemu_img
from tests.services.snapshot_support import (
    REGION,
    REGIONS,
    VOLUME_BYTES,
    Crash,
    content_mismatches,
    redeliver,
    run_tasks,
    storage_fault,
    write_regions,
)
from volumes import selectors
from volumes.api.snapshot_representations import SnapshotForest
from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import marker
from volumes.drivers.base import PoolSpace
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.models import Host, Namespace, Pool, PoolMount, Snapshot, Tenant, Volume, VolumeAttachment
from volumes.services import clones
from volumes.services.snapshots import snapshot_create, snapshot_delete, snapshot_rollback
from volumes.services.volumes import pool_driver, volume_create, volume_delete

ACTOR = "test"
MiB = 1 << 20


# -- helpers -------------------------------------------------------------------------------------


def new_volume(topology, name="src", *, capacity=VOLUME_BYTES, pool=None, tenant=None) -> Volume:
    with run_tasks():
        volume = volume_create(
            actor=ACTOR,
            tenant=tenant or topology["tenant"],
            cluster=topology["cluster"],
            pool=pool or topology["pools"][0],
            name=name,
            volume_type="block",
            capacity=capacity,
            snap_capacity=1 << 40,
        )
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE
    return volume


def path_of(volume: Volume, name: str | None = None) -> str:
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    return pool_driver(volume.pool).path(name or volume.image_name)


def layer_path(snapshot: Snapshot) -> str:
    return path_of(snapshot.volume, snapshot.layer_name)


def write(volume: Volume, **regions) -> None:
    write_regions(path_of(volume), {int(k[1:]): v for k, v in regions.items()})


def snap(volume: Volume, name: str) -> Snapshot:
    with run_tasks():
        snapshot = snapshot_create(actor=ACTOR, volume=volume, name=name)
    snapshot.refresh_from_db()
    volume.refresh_from_db()
    assert snapshot.status == SnapshotStatus.AVAILABLE
    return snapshot


def clone(source, snapshot, name="clone", *, linked, pool=None, tenant=None, execute=True) -> Volume:
    source.refresh_from_db()
    with run_tasks() if execute else _no_tasks():
        volume = clones.clone_create(
            actor=ACTOR,
            source=source,
            snapshot=snapshot,
            tenant=tenant or source.tenant,
            pool=pool or source.pool,
            name=name,
            linked=linked,
        )
    volume.refresh_from_db()
    return volume


def _no_tasks():
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=False)


def flatten(volume: Volume, *, execute=True) -> Operation:
    volume.refresh_from_db()
    with run_tasks() if execute else _no_tasks():
        operation = clones.volume_flatten(actor=ACTOR, volume=volume)
    volume.refresh_from_db()
    operation.refresh_from_db()
    return operation


def chain(path: str) -> list[str]:
    """Files of the backing chain on disk, top first (our own files: --backing-chain is fine here)."""
    import json

    out = qemu_img("info", "-U", "--backing-chain", "--output=json", path).stdout
    return [os.path.normpath(layer["filename"]) for layer in json.loads(out)]


def ref_and_attr(snapshot: Snapshot) -> tuple[int, dict | None]:
    volume = Volume.objects.get(pk=snapshot.volume_id)
    forest = SnapshotForest(volume, selectors.snapshot_rows(volume=volume))
    row = next(r for r in forest.rows if r.pk == snapshot.pk)
    item = forest.representation(row)
    return item["Ref"], item["Attr"]


def partials(volume: Volume) -> list[str]:
    directory = os.path.dirname(path_of(volume))
    return sorted(n for n in os.listdir(directory) if n.startswith(f".tmp-{volume.uuid}"))


@pytest.fixture
def source(topology):
    """A volume with s1 <- s2 <- s3, each holding its own regions, and more written into the head."""
    volume = new_volume(topology)
    write(volume, r0=1, r1=1)
    s1 = snap(volume, "s1")
    write(volume, r1=2, r2=2)
    s2 = snap(volume, "s2")
    write(volume, r3=3)
    s3 = snap(volume, "s3")
    write(volume, r0=9, r4=9)
    return {"volume": volume, "s1": s1, "s2": s2, "s3": s3}


S2 = [1, 2, 2] + [0] * (REGIONS - 3)


# -- linked clones -------------------------------------------------------------------------------


def test_a_linked_clone_is_an_overlay_on_the_snapshot_layer(source):
    src, s2 = source["volume"], source["s2"]
    linked = clone(src, s2, linked=True)
    assert linked.state == EventState.AVAILABLE
    assert (linked.source_volume_id, linked.parent_snapshot_id) == (src.pk, s2.pk)
    assert (linked.capacity, linked.snap_cap, linked.volume_type) == (
        src.capacity,
        src.snap_cap,
        src.volume_type,
    )
    assert chain(path_of(linked)) == [path_of(linked), layer_path(s2), layer_path(source["s1"])]
    assert identical(path_of(linked), layer_path(s2))
    assert ref_and_attr(s2) == (1, {"LinkCloneUsed": "LinkCloneUsed"})
    assert ref_and_attr(source["s1"]) == (0, None)
    operation = Operation.objects.get(target_uuid=linked.uuid)
    assert (operation.kind, operation.state, operation.progress) == (
        OperationKind.CLONE_LINKED,
        OperationState.SUCCEEDED,
        100.0,
    )
    # The new image holds nothing of its own: constant time, whatever the source's size.
    assert linked.used == 0

    # Later writes on either side stay there.
    write(linked, r5=5, r0=7)
    write(src, r2=8, r6=8)
    assert content_mismatches({path_of(linked): [7, 2, 2, 0, 0, 5] + [0] * (REGIONS - 6)}) == []
    assert content_mismatches({layer_path(s2): S2}) == []
    assert content_mismatches({path_of(src): [9, 2, 8, 3, 9, 0, 8] + [0] * (REGIONS - 7)}) == []


def test_a_linked_clone_of_a_linked_clone_reads_both_chains(source):
    src = source["volume"]
    first = clone(src, source["s1"], "first", linked=True)
    write(first, r7=7)
    f1 = snap(first, "f1")
    second = clone(first, f1, "second", linked=True)
    expected = [1, 1] + [0] * 5 + [7] + [0] * (REGIONS - 8)
    assert identical(path_of(second), layer_path(f1))
    assert content_mismatches({path_of(second): expected}) == []
    # The origin of the chain cannot lose the snapshot either clone reads.
    with pytest.raises(errors.SnapshotHasDependents), run_tasks():
        snapshot_delete(actor=ACTOR, volume=src, snapshot=source["s1"])


def test_a_linked_clone_into_another_pool_names_its_base_relatively(source, topology):
    src, s2 = source["volume"], source["s2"]
    other = topology["pools"][1]
    linked = clone(src, s2, linked=True, pool=other)
    assert linked.pool_id == other.pk and linked.state == EventState.AVAILABLE
    backing = qemu_img("info", "-U", "--output=json", path_of(linked)).stdout
    assert f'"backing-filename": "../../pool-{src.pool.uuid}/volume/{src.uuid}@{s2.uuid}.qcow2"' in backing
    assert identical(path_of(linked), layer_path(s2))
    # The clone's own snapshots and merges repoint the relative name from their directories.
    write(linked, r9=9)
    c1 = snap(linked, "c1")
    write(linked, r10=10)
    with run_tasks():
        snapshot_delete(actor=ACTOR, volume=linked, snapshot=c1)
    expected = S2[:9] + [9, 10] + [0] * (REGIONS - 11)
    assert content_mismatches({path_of(linked): expected}) == []
    assert chain(path_of(linked))[1] == layer_path(s2)
    # Reconcile agrees that a base layer in another pool is where the tree says it is.
    from volumes.services.repair.reconcile import reconcile_pool

    report = reconcile_pool(actor=ACTOR, target=other)
    assert [f for f in report.findings if f.kind == "chain_mismatch"] == []


def add_host(topology, name="second-host") -> Host:
    return Host.objects.create(name=name, cluster=topology["cluster"])


def test_a_linked_clone_into_a_pool_some_host_cannot_link_from_is_refused(source, topology, tmp_path):
    src, s2 = source["volume"], source["s2"]
    other = topology["pools"][1]
    host = add_host(topology)
    mount = PoolMount.objects.create(pool=other, host=host, mount_path="/mnt/bbb")

    def refused(match):
        before = (Volume.objects.count(), Operation.objects.count(), sorted(os.listdir(other.path)))
        with pytest.raises(errors.LinkedCloneAcrossPools, match=match) as raised:
            clone(src, s2, linked=True, pool=other)
        assert "is_link=false" in str(raised.value)
        assert (Volume.objects.count(), Operation.objects.count(), sorted(os.listdir(other.path))) == before

    # The second host mounts the destination but not the source pool.
    refused(f"host\\(s\\) {host.uuid} mount pool bbb but not pool disks")
    # It mounts both, but not side by side as the workers do.
    PoolMount.objects.create(pool=src.pool, host=host, mount_path="/srv/elsewhere/disks")
    refused(f"host {host.uuid} mounts pool disks at /srv/elsewhere/disks and pool bbb at /mnt/bbb")
    # Side by side under one parent, as on the workers: allowed.
    PoolMount.objects.filter(pool=src.pool, host=host).update(mount_path=f"/mnt/pool-{src.pool.uuid}")
    mount.mount_path = f"/mnt/pool-{other.uuid}"
    mount.save()
    linked = clone(src, s2, "linked", linked=True, pool=other)
    assert linked.state == EventState.AVAILABLE
    # A full clone goes anywhere.
    PoolMount.objects.filter(pool=src.pool, host=host).delete()
    full = clone(src, s2, "full", linked=False, pool=other)
    assert full.state == EventState.AVAILABLE and identical(path_of(full), layer_path(s2))


def test_a_linked_clone_deeper_than_the_chain_limit_is_refused(source, settings):
    settings.SHARESTORE_SNAPSHOT_MAX_DEPTH = 2
    before = Volume.objects.count()
    with pytest.raises(errors.CloneChainTooDeep, match="3 layers, over the limit of 2"):
        clone(source["volume"], source["s3"], linked=True)
    assert Volume.objects.count() == before
    assert clone(source["volume"], source["s2"], linked=True).state == EventState.AVAILABLE
    assert clone(source["volume"], source["s3"], "full", linked=False).state == EventState.AVAILABLE


# -- full clones ---------------------------------------------------------------------------------


def test_a_full_clone_copies_the_chain_up_to_the_snapshot(source, topology):
    src, s2 = source["volume"], source["s2"]
    other_tenant = Tenant.objects.create(name="other")
    Namespace.objects.create(tenant=other_tenant)
    full = clone(src, s2, linked=False, pool=topology["pools"][2], tenant=other_tenant)
    assert full.state == EventState.AVAILABLE
    assert (full.tenant_id, full.source_volume_id, full.parent_snapshot_id) == (other_tenant.pk, src.pk, None)
    assert chain(path_of(full)) == [path_of(full)]
    assert identical(path_of(full), layer_path(s2))
    assert full.used == 3 * REGION  # the data, not the virtual size
    assert ref_and_attr(s2) == (0, None)
    assert partials(full) == []
    # Independent: the source can lose the snapshot, and everything else.
    write(full, r1=6)
    write(src, r2=7)
    assert content_mismatches({path_of(full): [1, 6, 2] + [0] * (REGIONS - 3)}) == []
    for name in ("s1", "s2", "s3"):
        with run_tasks():
            snapshot_delete(actor=ACTOR, volume=src, snapshot=Snapshot.objects.get(volume=src, name=name))
    with run_tasks():
        volume_delete(actor=ACTOR, volume=src)
    assert content_mismatches({path_of(full): [1, 6, 2] + [0] * (REGIONS - 3)}) == []


def test_a_full_clone_of_a_linked_clone_copies_both_chains(source):
    linked = clone(source["volume"], source["s1"], "linked", linked=True)
    write(linked, r8=8)
    l1 = snap(linked, "l1")
    full = clone(linked, l1, "full", linked=False)
    assert chain(path_of(full)) == [path_of(full)]
    assert identical(path_of(full), layer_path(l1))
    assert content_mismatches({path_of(full): [1, 1] + [0] * 6 + [8] + [0] * (REGIONS - 9)}) == []


# -- flatten -------------------------------------------------------------------------------------


@pytest.mark.parametrize("own_snapshots", [0, 2])
def test_flatten_makes_a_linked_clone_independent_and_releases_the_ref(source, own_snapshots):
    src, s2 = source["volume"], source["s2"]
    linked = clone(src, s2, linked=True)
    expected = {}
    content = list(S2)
    for index in range(own_snapshots):
        content[8 + index] = 20 + index
        write(linked, **{f"r{8 + index}": 20 + index})
        taken = snap(linked, f"c{index}")
        expected[layer_path(taken)] = list(content)
    write(linked, r15=15)
    content[15] = 15
    expected[path_of(linked)] = content
    assert ref_and_attr(s2)[0] == 1

    operation = flatten(linked)
    assert (operation.kind, operation.state, operation.progress) == (
        OperationKind.FLATTEN,
        "succeeded",
        100.0,
    )
    linked.refresh_from_db()
    assert (linked.state, linked.parent_snapshot_id, linked.source_volume_id) == (
        EventState.AVAILABLE,
        None,
        src.pk,
    )
    assert ref_and_attr(s2) == (0, None)
    assert all(layer_path(s2) not in chain(p) for p in expected)
    assert content_mismatches(expected) == []
    if own_snapshots:
        assert identical(layer_path(Snapshot.objects.get(volume=linked, name="c0")), layer_path(s2)) is False
        root = Snapshot.objects.get(volume=linked, name="c0")
        assert root.size > REGION  # it holds the source's data now
        assert linked.snap_length == sum(
            Snapshot.objects.filter(volume=linked).values_list("size", flat=True)
        )
    else:
        assert linked.used >= 4 * REGION
    assert partials(linked) == []
    # The snapshot is free to go now, and the clone keeps its content.
    with run_tasks():
        snapshot_delete(actor=ACTOR, volume=src, snapshot=s2)
    assert content_mismatches(expected) == []


def test_flatten_refusals_change_nothing(source, topology):
    src = source["volume"]
    full = clone(src, source["s1"], "full", linked=False)
    with pytest.raises(errors.NotALinkedClone):
        flatten(full)
    with pytest.raises(errors.NotALinkedClone):
        flatten(src)
    linked = clone(src, source["s1"], "linked", linked=True)
    VolumeAttachment.objects.create(volume=linked, vm_uuid=uuid_lib.uuid4())
    with pytest.raises(errors.VolumeAttached, match="hypervisor holds open"):
        flatten(linked)
    VolumeAttachment.objects.filter(volume=linked).delete()
    Volume.objects.filter(pk=src.pk).update(state=EventState.MERGING)
    with pytest.raises(
        errors.CloneSourceBusy, match=f"{src.uuid}, whose layers the flatten would read, is 9"
    ):
        flatten(linked)
    Volume.objects.filter(pk=src.pk).update(state=EventState.AVAILABLE)
    Volume.objects.filter(pk=linked.pk).update(state=EventState.SNAPSHOTTING)
    with pytest.raises(errors.StateConflict):
        flatten(linked)
    Volume.objects.filter(pk=linked.pk).update(state=EventState.AVAILABLE)
    assert not Operation.objects.filter(kind=OperationKind.FLATTEN).exists()
    assert chain(path_of(linked))[1] == layer_path(source["s1"])


# -- progress ------------------------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """Every value the operation row takes while it runs, with the volume's state at that moment."""
    monkeypatch.setattr(operations, "PROGRESS_WRITE_INTERVAL", 0.0)
    seen = []
    real = operations.Reporter._write

    def write_and_record(self, **values):
        real(self, **values)
        row = Operation.objects.get(pk=self.operation.pk)
        state = Volume.objects.filter(pk=row.volume_id).values_list("state", flat=True).first()
        seen.append((row.progress, state))

    monkeypatch.setattr(operations.Reporter, "_write", write_and_record)
    return seen


def big_source(topology) -> tuple[Volume, Snapshot]:
    """240 MiB of data over three layers of a 1 GiB volume: enough for many progress records."""
    volume = new_volume(topology, "big", capacity=1 << 30)
    for index in range(3):
        argv = ["qemu-io", "-f", "qcow2"]
        for chunk in range(8):
            argv += ["-c", f"write -P {index * 8 + chunk + 1} {(index * 8 + chunk) * 32 * MiB} {10 * MiB}"]
        subprocess.run([*argv, path_of(volume)], check=True, capture_output=True)
        last = snap(volume, f"b{index}")
    return volume, last


def assert_progress(seen, operation: Operation, busy_state: EventState) -> None:
    values = [progress for progress, _state in seen]
    assert len(set(values)) >= 5, values
    assert values == sorted(values), values
    assert all(progress < 100 for progress, state in seen if state == busy_state), seen
    operation.refresh_from_db()
    volume = Volume.objects.get(pk=operation.volume_id)
    assert (operation.progress, volume.state) == (100.0, EventState.AVAILABLE)
    assert clones.clone_progress(operation) == 100.0


def test_full_clone_progress_is_parsed_from_qemu_img_monotonic_and_100_only_when_usable(topology, recorded):
    volume, last = big_source(topology)
    full = clone(volume, last, "full", linked=False)
    operation = Operation.objects.get(target_uuid=full.uuid)
    assert_progress(recorded, operation, EventState.CLONING)
    assert identical(path_of(full), layer_path(last))
    assert operation.bytes_total > 240 * MiB


def test_flatten_progress_is_monotonic_and_100_only_when_independent(topology, recorded):
    volume, last = big_source(topology)
    linked = clone(volume, last, "linked", linked=True)
    recorded.clear()
    operation = flatten(linked)
    assert_progress(recorded, operation, EventState.FLATTENING)
    assert identical(path_of(linked), layer_path(last))


def test_progress_of_a_queued_clone_is_0_and_a_failed_one_answers_its_error(source):
    full = clone(source["volume"], source["s1"], "queued", linked=False, execute=False)
    operation = clones.clone_operation_for(volume=full)
    assert clones.clone_progress(operation) == 0.0
    # Asked by the source's UUID: its newest clone.
    assert clones.clone_operation_for(volume=source["volume"]).pk == operation.pk
    with storage_fault(1, fault=errors.StorageError):
        operation_task(operation.pk)
    operation.refresh_from_db()
    assert operation.state == OperationState.FAILED
    with pytest.raises(errors.RecordedFailure) as raised:
        clones.clone_progress(operation)
    assert (raised.value.scode, raised.value.http_status) == (5001, 500)
    assert raised.value.render_message() == "storage operation failed: injected failure after step 1"
    assert raised.value.render_message_cn() == "存储操作失败：详情见英文消息"
    with pytest.raises(errors.OperationNotFound):
        clones.clone_operation_for(volume=new_volume_like(source["volume"]))


def new_volume_like(volume: Volume) -> Volume:
    volume = Volume.objects.select_related("tenant", "cluster", "pool").get(pk=volume.pk)
    with run_tasks():
        other = volume_create(
            actor=ACTOR,
            tenant=volume.tenant,
            cluster=volume.cluster,
            pool=volume.pool,
            name="plain",
            volume_type="block",
            capacity=VOLUME_BYTES,
            snap_capacity=0,
        )
    return other


# -- readers refuse what would rewrite or remove what they read ----------------------------------


def test_a_clone_being_copied_blocks_snapshot_delete_rollback_and_volume_delete(source):
    src = source["volume"]
    full = clone(src, source["s1"], "copying", linked=False, execute=False)
    assert full.state == EventState.CLONING
    copying = Operation.objects.get(target_uuid=full.uuid)
    named = f"clone {full.uuid} being copied \\(full clone, operation {copying.uuid}, 0.0% done\\)"
    with pytest.raises(errors.SnapshotsBeingRead, match=named):
        snapshot_delete(actor=ACTOR, volume=src, snapshot=source["s1"])
    with pytest.raises(errors.SnapshotsBeingRead, match=str(full.uuid)):
        snapshot_rollback(actor=ACTOR, volume=src, snapshot=source["s2"])
    with pytest.raises(errors.VolumeHasDependents, match=str(full.uuid)):
        volume_delete(actor=ACTOR, volume=src, force=True)
    src.refresh_from_db()
    assert src.state == EventState.AVAILABLE
    with run_tasks():
        operation_task(Operation.objects.get(target_uuid=full.uuid).pk)
    full.refresh_from_db()
    assert full.state == EventState.AVAILABLE
    with run_tasks():
        snapshot_rollback(actor=ACTOR, volume=src, snapshot=source["s2"])
    with run_tasks():
        snapshot_delete(actor=ACTOR, volume=src, snapshot=source["s1"])
    assert content_mismatches({path_of(full): [1, 1] + [0] * (REGIONS - 2)}) == []


def test_copies_from_a_linked_clone_block_rewrites_of_its_origin(source):
    src = source["volume"]
    linked = clone(src, source["s2"], "linked", linked=True)
    l1 = snap(linked, "l1")
    full = clone(linked, l1, "full", linked=False, execute=False)
    with pytest.raises(errors.SnapshotsBeingRead, match=str(full.uuid)):
        snapshot_rollback(actor=ACTOR, volume=src, snapshot=source["s1"])
    with run_tasks():
        operation_task(Operation.objects.get(target_uuid=full.uuid).pk)
    other = clone(src, source["s2"], "other", linked=True)
    operation = flatten(other, execute=False)
    named = f"linked clone {other.uuid} being flattened \\(flatten volume, operation {operation.uuid}"
    with pytest.raises(errors.SnapshotsBeingRead, match=named):
        snapshot_rollback(actor=ACTOR, volume=src, snapshot=source["s1"])
    with run_tasks():
        operation_task(operation.pk)
    with run_tasks():
        snapshot_rollback(actor=ACTOR, volume=src, snapshot=source["s1"])


def test_clone_refusals_change_nothing(source, topology):
    src = source["volume"]

    def files():
        return sorted(
            os.path.join(d, f) for p in topology["pools"] for d, _, fs in os.walk(p.path) for f in fs
        )

    before = (Volume.objects.count(), Operation.objects.count(), files())

    def unchanged():
        assert (Volume.objects.count(), Operation.objects.count(), files()) == before

    for linked in (True, False):
        Volume.objects.filter(pk=src.pk).update(state=EventState.MERGING)
        with pytest.raises(errors.StateConflict, match="cannot clone"):
            clone(src, source["s1"], linked=linked)
        Volume.objects.filter(pk=src.pk).update(state=EventState.AVAILABLE)
        unchanged()
        Snapshot.objects.filter(pk=source["s1"].pk).update(status=SnapshotStatus.ERROR)
        with pytest.raises(errors.StateConflict, match="snapshot"):
            clone(src, source["s1"], linked=linked)
        Snapshot.objects.filter(pk=source["s1"].pk).update(status=SnapshotStatus.AVAILABLE)
        unchanged()
        with pytest.raises(errors.VolumeNameExists):
            clone(src, source["s1"], "src", linked=linked)
        unchanged()
        with pytest.raises(errors.InvalidName):
            clone(src, source["s1"], " ", linked=linked)
        unchanged()
        Pool.objects.filter(pk=src.pool_id).update(capacity=src.capacity)
        with pytest.raises(errors.PoolCapacityExceeded):
            clone(src, source["s1"], linked=linked)
        Pool.objects.filter(pk=src.pool_id).update(capacity=1 << 40)
        unchanged()
    other = new_volume_like(src)
    with pytest.raises(errors.SnapshotNotFound):
        clone(other, source["s1"], linked=False)
    with pytest.raises(errors.SnapshotNotFound):
        clone(other, source["s1"], linked=True)


# -- a full pool ---------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root"
)


@pytest.fixture
def small_pool(topology, tmp_path):
    """A pool on a 2 MiB tmpfs: its filesystem fills up long before its recorded capacity."""
    directory = tmp_path / "small"
    directory.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)], capture_output=True, check=False
    ).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    pool = Pool.objects.create(
        name="small",
        cluster=topology["cluster"],
        zone=topology["zone"],
        path=str(directory),
        capacity=1 << 40,
    )
    PoolMount.objects.create(pool=pool, host=topology["host"], mount_path=str(directory))
    marker.write_marker(str(directory), str(pool.uuid))
    yield pool
    subprocess.run(["umount", "-l", str(directory)], check=False)


@needs_root
def test_a_full_clone_that_does_not_fit_the_filesystem_is_refused_before_writing(source, small_pool):
    src = source["volume"]
    write(src, **{f"r{i}": 40 + i for i in range(REGIONS)})
    big = snap(src, "big")
    before = (Volume.objects.count(), os.listdir(small_pool.path))
    with pytest.raises(errors.PoolSpaceShort, match="pool small has"):
        clone(src, big, linked=False, pool=small_pool)
    assert (Volume.objects.count(), os.listdir(small_pool.path)) == before


@needs_root
def test_enospc_mid_copy_fails_the_clone_and_leaves_no_file(source, small_pool, monkeypatch):
    src = source["volume"]
    write(src, **{f"r{i}": 40 + i for i in range(REGIONS)})
    big = snap(src, "big")
    # The filesystem claims room it does not have (another writer took it between measure and copy).
    monkeypatch.setattr(Qcow2DirectoryDriver, "space", lambda self: PoolSpace(total=1 << 40, free=1 << 40))
    full = clone(src, big, linked=False, pool=small_pool)
    operation = Operation.objects.get(target_uuid=full.uuid)
    assert (full.state, operation.state, operation.error_scode) == (EventState.ERROR, "failed", 5004)
    assert [n for n in os.listdir(os.path.join(small_pool.path, "volume"))] == []
    with pytest.raises(errors.RecordedFailure) as raised:
        clones.clone_progress(operation)
    assert raised.value.scode == 5004


# -- crashes and failures ------------------------------------------------------------------------


def test_a_crash_mid_copy_is_finished_by_the_redelivered_task(topology, monkeypatch):
    monkeypatch.setattr(operations, "PROGRESS_WRITE_INTERVAL", 0.0)
    volume, last = big_source(topology)
    full = clone(volume, last, "full", linked=False, execute=False)
    operation = Operation.objects.get(target_uuid=full.uuid)
    real = operations.Reporter.progress

    def die_at_30(self, percent, *args, **kwargs):
        real(self, percent, *args, **kwargs)
        if percent > 30:
            raise Crash("worker killed mid-copy")

    monkeypatch.setattr(operations.Reporter, "progress", die_at_30)
    with pytest.raises(Crash):
        operation_task(operation.pk)
    monkeypatch.setattr(operations.Reporter, "progress", real)
    # What a SIGKILLed worker leaves: a partial under its own tag, nothing published.
    garbage = os.path.join(os.path.dirname(path_of(full)), f".tmp-{full.uuid}.a1-deadbeef")
    with open(garbage, "wb") as handle:
        handle.write(b"half a qcow2")
    full.refresh_from_db()
    operation.refresh_from_db()
    assert (full.state, operation.state) == (EventState.CLONING, OperationState.RUNNING)
    assert not os.path.exists(path_of(full))
    crashed_at = operation.progress
    assert 29 < crashed_at < 100
    redeliver(operation, operation_task)
    operation.refresh_from_db()
    full.refresh_from_db()
    assert (operation.state, operation.attempts, full.state) == (
        OperationState.SUCCEEDED,
        2,
        EventState.AVAILABLE,
    )
    assert partials(full) == []
    assert identical(path_of(full), layer_path(last))


def test_a_crash_mid_copy_with_no_attempts_left_fails_the_clone_and_removes_the_partial(
    topology, monkeypatch
):
    volume, last = big_source(topology)
    full = clone(volume, last, "full", linked=False, execute=False)
    operation = Operation.objects.get(target_uuid=full.uuid)
    Operation.objects.filter(pk=operation.pk).update(
        state=OperationState.RUNNING, owner="dead", attempts=operations.MAX_ATTEMPTS
    )
    garbage = os.path.join(os.path.dirname(path_of(full)), f".tmp-{full.uuid}.a3-deadbeef")
    os.makedirs(os.path.dirname(garbage), exist_ok=True)
    with open(garbage, "wb") as handle:
        handle.write(b"half a qcow2")
    redeliver(operation, operation_task)
    operation.refresh_from_db()
    full.refresh_from_db()
    assert (operation.state, full.state, full.parent_snapshot_id) == (
        OperationState.FAILED,
        EventState.ERROR,
        None,
    )
    assert partials(full) == [] and not os.path.exists(path_of(full))
    # A failed clone is deleted like any volume in error.
    with run_tasks():
        volume_delete(actor=ACTOR, volume=full)
    full.refresh_from_db()
    assert full.state == EventState.DELETED


def linked_scenario(source):
    return lambda: clone(source["volume"], source["s2"], "c", linked=True), operation_task


def full_scenario(source):
    return lambda: clone(source["volume"], source["s2"], "c", linked=False), operation_task


def flatten_scenario(source):
    linked = clone(source["volume"], source["s2"], "c", linked=True)
    write(linked, r9=9)
    snap(linked, "own")
    write(linked, r10=10)
    return lambda: flatten(linked), operation_task


SCENARIOS = {"linked": linked_scenario, "full": full_scenario, "flatten": flatten_scenario}
EXPECTED = S2[:9] + [9, 10] + [0] * (REGIONS - 11)


def volume_rows() -> list[tuple]:
    return list(Volume.objects.order_by("pk").values_list("pk", "state", "parent_snapshot_id"))


def clone_check(source, operation: Operation, *, done: bool) -> None:
    """The clone reads the snapshot's content (and its own writes), files match the state, no partial left."""
    target = Volume.objects.get(pk=operation.volume_id)
    head = path_of(target)
    assert partials(target) == []
    if operation.kind == OperationKind.FLATTEN:
        assert target.state == EventState.AVAILABLE
        assert content_mismatches({head: EXPECTED}) == []
        independent = layer_path(source["s2"]) not in chain(head)
        assert independent == (target.parent_snapshot_id is None)
        assert independent or not done
        return
    if done:
        assert target.state == EventState.AVAILABLE
        assert identical(head, layer_path(source["s2"]))
    else:
        assert (target.state, target.parent_snapshot_id) == (EventState.ERROR, None)
        assert not os.path.exists(head)
        assert ref_and_attr(source["s2"]) == (0, None)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_crash_at_any_storage_step_is_finished_by_the_redelivered_task(topology, scenario):
    at = 1
    while True:
        Volume.objects.filter(name="c").update(name=f"before-{at}")
        src = {"volume": new_volume(topology, f"src-{at}")}
        write(src["volume"], r0=1, r1=1)
        src["s1"] = snap(src["volume"], "s1")
        write(src["volume"], r1=2, r2=2)
        src["s2"] = snap(src["volume"], "s2")
        action, task = SCENARIOS[scenario](src)
        marker = Operation.objects.order_by("-id").first().pk
        before = volume_rows()
        with storage_fault(at) as seen:
            try:
                action()
            except Crash:
                crashed = True
            else:
                crashed = False
        operation = Operation.objects.filter(pk__gt=marker).first()
        if operation is None:
            # The request died while measuring the copy, before recording or writing anything.
            assert crashed and volume_rows() == before
            at += 1
            continue
        if not crashed:
            clone_check(src, operation, done=True)
            break
        target = Volume.objects.get(pk=operation.volume_id)
        # Until the task is done nothing looks usable: the volume is still in its transitional state.
        assert target.state in (EventState.CLONING, EventState.FLATTENING)
        redeliver(operation, task)
        operation.refresh_from_db()
        assert operation.state == OperationState.SUCCEEDED, (
            at,
            operation.error_message,
            operation.error_detail,
        )
        clone_check(src, operation, done=True)
        at += 1
    assert at > 2 and seen["steps"] == at - 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_failure_at_any_storage_step_leaves_no_volume_that_looks_usable(topology, scenario):
    at = 1
    while True:
        Volume.objects.filter(name="c").update(name=f"before-{at}")
        src = {"volume": new_volume(topology, f"src-{at}")}
        write(src["volume"], r0=1, r1=1)
        src["s1"] = snap(src["volume"], "s1")
        write(src["volume"], r1=2, r2=2)
        src["s2"] = snap(src["volume"], "s2")
        action, _task = SCENARIOS[scenario](src)
        marker = Operation.objects.order_by("-id").first().pk
        before = volume_rows()
        with storage_fault(at, fault=errors.StorageError):
            try:
                action()
            except errors.StorageError:
                refused = True
            else:
                refused = False
        operation = Operation.objects.filter(pk__gt=marker).first()
        if operation is None:
            # The request failed while measuring the copy: refused, nothing recorded or written.
            assert refused and volume_rows() == before
            at += 1
            continue
        if operation.state == OperationState.SUCCEEDED:
            clone_check(src, operation, done=True)
            break
        assert (operation.state, operation.error_scode) == (OperationState.FAILED, 5001)
        clone_check(src, operation, done=False)
        at += 1
    assert at > 2
