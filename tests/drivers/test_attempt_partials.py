"""Per-attempt temporary names (issue 11, fencing): two attempts of one operation never write into the
same temporary file, the attempt that lost its lease publishes nothing and leaves no partial, and
reconcile still recognises every temporary name as a partial write. Real qemu-img, real files."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from backups import chunks
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core import faults, fencing
from sharestore.core.models import Operation
from sharestore.core.services import operations
from tests.conftest import image_info, qemu_img
from volumes.drivers import qemu
from volumes.drivers.qcow2 import Qcow2DirectoryDriver

MIB = 1 << 20


class Attempt:
    """One claimed attempt of an operation: its fence and tag installed around what it runs."""

    def __init__(self, operation_id: int, owner: str):
        self.owner = owner
        self.operation = operations._claim(operation_id, owner)
        assert self.operation is not None and self.operation.owner == owner

    def __call__(self):
        fence = operations.operation_fence(self.operation, self.owner)
        return fencing.installed(fence, operation_id=self.operation.pk, attempt=self.operation.attempts)


def take_over(operation_id: int, owner: str) -> Attempt:
    """The sweeper judged the current owner dead: its lease is expired, and a new attempt claims it."""
    Operation.objects.filter(pk=operation_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return Attempt(operation_id, owner)


@pytest.fixture
def threads(transactional_db):
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("the fenced attempt runs in a thread: it needs a database other connections see")


@pytest.fixture
def operation(db):
    return Operation.objects.create(kind="volume.create", target_type="volume", target_uuid=uuid.uuid4())


@pytest.fixture
def pool(tmp_path) -> Qcow2DirectoryDriver:
    root = tmp_path / "pool"
    root.mkdir()
    return Qcow2DirectoryDriver(str(root))


class Paused:
    """Runs `work` in a thread that stops at the fault point `publish` (after writing its temporary
    file, before the rename) until `release()`; keeps what it raised."""

    def __init__(self, monkeypatch, work):
        self.reached, self.go, self.raised = threading.Event(), threading.Event(), None
        real_pause = faults.pause

        def pause(point):
            if point == "publish" and threading.current_thread() is self.thread:
                self.reached.set()
                assert self.go.wait(60)
            return real_pause(point)

        monkeypatch.setattr(faults, "pause", pause)
        self.thread = threading.Thread(target=self._run, args=(work,))
        self.thread.start()
        assert self.reached.wait(60), "the first attempt never reached its publish"

    def _run(self, work):
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            self.raised = exc
        finally:
            connection.close()

    def release(self):
        self.go.set()
        self.thread.join(60)


def test_two_attempts_write_apart_and_only_the_one_holding_the_lease_publishes(
    threads, operation, pool, monkeypatch
):
    first = Attempt(operation.pk, "worker-1")
    name = "volume/v1"
    old_tmp = os.path.join(pool.root, "volume", f".tmp-v1.op{operation.pk}-a1")

    def old_create():
        with first():
            pool.create_volume(name, 1 * MIB)

    paused = Paused(monkeypatch, old_create)
    # The first attempt wrote its own temporary file, and is stalled before its rename.
    assert os.listdir(os.path.join(pool.root, "volume")) == [os.path.basename(old_tmp)]
    second = take_over(operation.pk, "worker-2")
    with second():
        assert qemu.tmp_sibling(pool.path(name)) != old_tmp
        pool.create_volume(name, 2 * MIB)
    paused.release()

    assert isinstance(paused.raised, errors.OperationLeaseLost)
    # Only the winner's image is there (2 MiB, not the fenced attempt's 1 MiB), and no partial at all.
    assert os.listdir(os.path.join(pool.root, "volume")) == ["v1"]
    assert image_info(pool.path(name))["virtual-size"] == 2 * MIB
    reference = os.path.join(pool.root, "..", "reference.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", reference, str(2 * MIB))
    assert (
        qemu_img("compare", "-f", "qcow2", "-F", "qcow2", reference, pool.path(name), check=False).returncode
        == 0
    )


def test_a_fenced_backup_write_publishes_nothing_and_its_partial_is_removed(threads, operation, tmp_path):
    store = BackupStore(str(tmp_path / "point"))
    name = BackupStore.file_name(uuid.uuid4(), uuid.uuid4())
    first = Attempt(operation.pk, "worker-1")
    writing, resume = threading.Event(), threading.Event()
    seen = {}

    def slow_export(target):
        # A long silent copy: the attempt is judged dead while it runs.
        qemu.create(target, 1 * MIB)
        seen["old"] = target
        writing.set()
        assert resume.wait(60)

    raised = {}

    def old_backup():
        try:
            with first():
                store.write(name, slow_export)
        except BaseException as exc:  # noqa: BLE001
            raised["old"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=old_backup)
    thread.start()
    assert writing.wait(60)
    second = take_over(operation.pk, "worker-2")
    with second():
        store.write(name, lambda target: (seen.__setitem__("new", target), qemu.create(target, 3 * MIB)))
    # Each attempt wrote its own file; the takeover removed the fenced attempt's one before writing.
    assert seen["old"].endswith(f".op{operation.pk}-a1") and seen["new"].endswith(f".op{operation.pk}-a2")
    assert not os.path.exists(seen["old"])
    resume.set()
    thread.join(60)

    assert isinstance(raised["old"], errors.OperationLeaseLost)
    assert os.listdir(os.path.dirname(store.path(name))) == [os.path.basename(name)]
    assert image_info(store.path(name))["virtual-size"] == 3 * MIB


def test_a_fenced_chunk_index_is_not_published_and_leaves_no_partial(operation, tmp_path):
    store = BackupStore(str(tmp_path / "point"))
    name = BackupStore.file_name(uuid.uuid4(), uuid.uuid4())
    os.makedirs(os.path.dirname(store.path(name)))
    index = chunks.ChunkIndex(virtual_size=chunks.CHUNK_SIZE, digests=[chunks.ZERO_CHUNK_DIGEST])
    first = Attempt(operation.pk, "worker-1")
    second = take_over(operation.pk, "worker-2")
    with first(), pytest.raises(errors.OperationLeaseLost):
        chunks.save_index(store, name, index)
    assert os.listdir(os.path.dirname(store.path(name))) == []
    with second():
        chunks.save_index(store, name, index)
    assert chunks.load_index(store, name, index.digest()) == index
    assert os.listdir(os.path.dirname(store.path(name))) == [os.path.basename(chunks.index_name(name))]


def test_a_new_attempt_removes_what_a_dead_attempt_left(operation, pool):
    first = Attempt(operation.pk, "worker-1")
    with first():
        left = qemu.tmp_sibling(pool.path("volume/v2"))
    os.makedirs(os.path.dirname(left))
    with open(left, "wb") as handle:
        handle.write(b"half a copy")  # the worker died here
    second = take_over(operation.pk, "worker-2")
    with second():
        pool.create_volume("volume/v2", MIB)
    assert os.listdir(os.path.dirname(left)) == ["v2"]


@pytest.mark.parametrize(
    ("file_name", "target"),
    [
        ("volume/.tmp-v", "volume/v"),
        ("volume/.tmp-v.op12-a3", "volume/v"),
        ("snapshots/v/.tmp-s.qcow2.op12-a3.a3-1f2e3d4c", "snapshots/v/s.qcow2"),
        ("snapshots/v/.tmp-s.qcow2.a1-1f2e3d4c", "snapshots/v/s.qcow2"),
        ("vol/.tmp-b.qcow2.op7-a1.delta", "vol/b.qcow2"),
        ("vol/.tmp-b.qcow2.fidx.op7-a2", "vol/b.qcow2.fidx"),
        ("volume/v", None),
    ],
)
def test_every_temporary_name_is_recognised_with_the_file_it_is_for(file_name, target):
    assert qemu.partial_target(file_name) == target


def test_reconcile_reports_and_removes_the_partials_of_dead_attempts(topology):
    from volumes.models import Pool
    from volumes.services.repair.findings import FindingKind
    from volumes.services.repair.reconcile import reconcile_pool

    pool = Pool.objects.get(name="disks")
    driver = Qcow2DirectoryDriver(pool.path)
    os.makedirs(os.path.join(pool.path, "volume"), exist_ok=True)
    leftovers = []
    for left in ("volume/.tmp-gone.op3-a1", "volume/.tmp-gone.op3-a2.a2-1f2e3d4c"):
        qemu.create(os.path.join(pool.path, left), MIB)
        leftovers.append(left)
    objects = {o.name: o for o in driver.inventory()}
    assert {n: objects[n].partial_of for n in leftovers} == dict.fromkeys(leftovers, "volume/gone")

    report = reconcile_pool(actor="test", target=pool, fix=True, grace_seconds=0)
    orphans = {f.name: f for f in report.findings if f.kind == FindingKind.ORPHAN_FILE}
    assert set(orphans) == set(leftovers)
    assert all(f.fixed and f.detail == "partial write" for f in orphans.values())
    assert not [n for n in os.listdir(os.path.join(pool.path, "volume")) if n.startswith(".tmp-")]
