"""The driver conformance suite: what any storage driver must do, through its public interface only.

Parametrized by `driver_factory`: today the directory driver; a second driver (Ceph RBD) adds itself to
`BACKENDS` with a factory making a driver on a fresh, empty pool and the names of its engine functions
that change storage (each counts as one storage step for the fault injection below).

Every check reads content back by pattern (`write_pattern` / `read_matches`) after each tree operation,
for the volume and every snapshot; `Model` plays the service: it keeps the tree description the
driver is given and applies the `TreeChange` it answers (gone snapshots leave, their readers move up,
kept ones become hidden).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from unittest import mock

import pytest

from volumes.drivers import SnapshotSource, SnapshotTree, StorageDriver, TreeSnapshot, TreeWork, qemu
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.drivers.rbd import RbdDriver, cli

CLUSTER = 64 << 10  # the figures below are exact to a cluster: qcow2's default, and an RBD object divides it
REGION = CLUSTER
REGIONS = 16
SIZE = REGION * REGIONS


@dataclass
class Backend:
    """How the suite makes a driver of one kind, and which engine functions change storage."""

    make: Callable[[str], StorageDriver]  # a driver on a fresh, empty pool named by the argument
    engine: object  # the module whose functions the driver reaches storage through
    steps: tuple[str, ...]  # those functions that change storage


BACKENDS = {
    "qcow2-dir": lambda tmp_path: Backend(
        make=lambda name: _directory_pool(tmp_path, name),
        engine=qemu,
        steps=("create", "convert", "rebase", "commit", "resize", "publish", "rename", "unlink"),
    ),
    # Each pool a fresh namespace of the session's test Ceph (tests/drivers/ceph.py).
    "rbd": lambda request: Backend(
        make=lambda _name: RbdDriver(request.getfixturevalue("rbd_namespace")()),
        engine=cli,
        steps=(
            "create",
            "remove",
            "rename",
            "resize",
            "set_meta",
            "snap_create",
            "snap_remove",
            "snap_protect",
            "snap_unprotect",
            "snap_rollback",
            "clone",
            "flatten",
        ),
    ),
}


def _directory_pool(tmp_path, name: str) -> StorageDriver:
    root = tmp_path / name
    root.mkdir()
    return Qcow2DirectoryDriver(str(root))


@pytest.fixture(params=sorted(BACKENDS))
def driver_factory(request, tmp_path) -> Backend:
    return BACKENDS[request.param](request if request.param == "rbd" else tmp_path)


# -- the service's part, played by the test ---------------------------------------------------------


def _quiet(*_args) -> None:
    pass


class Model:
    """One volume: the tree given to the driver, and the content every image must show."""

    def __init__(self, driver: StorageDriver, volume: str | None = None, head: list[int] | None = None):
        """A new empty volume, or (`volume`, `head`) one the test made otherwise (a clone)."""
        self.driver = driver
        self.volume = volume or f"volume/{uuid.uuid4()}"
        self.snapshots: dict[str, TreeSnapshot] = {}  # by id, oldest first
        self.head_on: str | None = None
        self.head = list(head) if head is not None else [0] * REGIONS
        self.content: dict[str, list[int]] = {}  # snapshot id -> regions
        self.journal: dict[str, str] = {}
        if volume is None:
            driver.create_volume(self.volume, SIZE)

    @property
    def tree(self) -> SnapshotTree:
        return SnapshotTree(self.volume, tuple(self.snapshots.values()), self.head_on)

    def write(self, **regions: int) -> int:
        chunks = [(int(r[1:]) * REGION, REGION, byte) for r, byte in regions.items()]
        self.driver.write_pattern(self.volume, chunks)
        for offset, _length, byte in chunks:
            self.head[offset // REGION] = byte
        return len(chunks) * REGION

    def snapshot_ids(self) -> dict[str, str]:
        return {s.label: s.id for s in self.snapshots.values()}

    def name(self, label: str) -> str:
        return self.snapshots[self.snapshot_ids()[label]].name

    def create(self, label: str) -> tuple[int, int]:
        snapshot_id = str(uuid.uuid4())
        name = self.driver.snapshot_name(self.volume, snapshot_id)
        sizes = self.driver.snapshot_create(self.volume, name)
        self.record_create(label, snapshot_id, name)
        return sizes

    def record_create(self, label: str, snapshot_id: str, name: str) -> None:
        self.snapshots[snapshot_id] = TreeSnapshot(snapshot_id, name, self.head_on, label=label)
        self.content[snapshot_id] = list(self.head)
        self.head_on = snapshot_id

    def work(self) -> TreeWork:
        return TreeWork(journal=self.journal, progress=_quiet, checkpoint=lambda: None)

    def apply(self, change) -> None:
        for gone in change.gone:
            parent = self.snapshots[gone].parent
            for other in list(self.snapshots.values()):
                if other.parent == gone:
                    self.snapshots[other.id] = replace(other, parent=parent)
            if self.head_on == gone:
                self.head_on = parent
            del self.snapshots[gone]
            del self.content[gone]
        assert not change.damaged

    def delete(self, label: str):
        snapshot_id = self.snapshot_ids()[label]
        keeps = self.driver.snapshot_delete_keeps(self.tree, snapshot_id)
        change = self.driver.snapshot_delete(self.volume, snapshot_id, self.tree, self.work())
        # The pure prediction the service hides by agrees with what the delete does.
        assert change.kept == keeps
        if change.kept:
            assert change.gone == []
            self.snapshots[snapshot_id] = replace(self.snapshots[snapshot_id], hidden=True)
            return None
        assert change.gone[:1] == [snapshot_id]
        self.apply(change)
        return change

    def rollback(self, label: str):
        snapshot_id = self.snapshot_ids()[label]
        change = self.driver.snapshot_rollback(self.volume, snapshot_id, self.tree, self.work())
        self.head_on = snapshot_id
        self.head = list(self.content[snapshot_id])
        self.apply(change)
        return change

    def check(self) -> None:
        """The head and every snapshot (hidden ones too) read back exactly what they held."""
        assert_content(self.driver, self.volume, self.head)
        for snapshot_id, regions in self.content.items():
            assert_content(self.driver, self.snapshots[snapshot_id].name, regions)


def assert_content(driver: StorageDriver, name: str, regions: list[int]) -> None:
    # One read per run of equal regions keeps the check to a few engine calls per image.
    index = 0
    for byte, run in itertools.groupby(regions):
        count = len(list(run))
        assert driver.read_matches(name, index * REGION, count * REGION, byte), (name, index, count, byte)
        index += count


def within_clusters(measured: int, written: int) -> bool:
    return written <= measured <= -(-written // CLUSTER) * CLUSTER + CLUSTER


# -- content after every tree operation -------------------------------------------------------------


def test_a_new_volume_reads_zeros_and_then_what_was_written(driver_factory):
    m = Model(driver_factory.make("pool"))
    m.check()
    m.write(r0=1, r5=2, r15=3)
    m.check()
    assert within_clusters(m.driver.usage(m.volume), 3 * REGION)


def test_a_snapshot_keeps_its_content_while_the_volume_changes(driver_factory):
    m = Model(driver_factory.make("pool"))
    written = m.write(r0=1, r1=1, r2=1)
    size, used = m.create("s1")
    assert within_clusters(size, written) and used == 0
    m.write(r1=2, r3=2)
    m.check()
    assert m.driver.head_snapshot(m.volume) == m.name("s1")


def test_snapshot_usage_is_what_was_written_in_its_interval(driver_factory):
    m = Model(driver_factory.make("pool"))
    intervals = (("a", {"r0": 1, "r1": 1}), ("b", {"r2": 2, "r3": 2, "r4": 2, "r5": 2}), ("c", {"r9": 3}))
    for label, regions in intervals:
        written = m.write(**regions)
        size, used = m.create(label)
        assert within_clusters(size, written), (label, size, written)
        assert within_clusters(m.driver.usage(m.name(label)), written)
        assert used == 0
    assert m.driver.usage(m.volume) == 0
    m.write(r0=4)
    assert within_clusters(m.driver.usage(m.volume), REGION)
    m.check()


@pytest.mark.parametrize("order", [("s1", "s3", "s2", "s1"), ("s2", "s3")])
def test_rollback_to_any_snapshot(driver_factory, order):
    m = Model(driver_factory.make("pool"))
    m.write(r0=1, r1=1)
    m.create("s1")
    m.write(r1=2, r2=2)
    m.create("s2")
    m.write(r2=3, r3=3)
    m.create("s3")
    m.write(r0=4, r4=4)
    for label in order:
        m.rollback(label)
        m.check()
        assert m.driver.head_snapshot(m.volume) == m.name(label)
        assert within_clusters(m.driver.usage(m.volume), 0)
        m.write(r7=9)  # a write on the new branch changes nothing in any snapshot
        m.check()


@pytest.mark.parametrize("head_writes", [{"r3": 5}, {"r0": 5, "r1": 5, "r2": 5, "r3": 5, "r4": 5}])
def test_delete_a_middle_snapshot(driver_factory, head_writes):
    m = Model(driver_factory.make("pool"))
    m.write(r0=1, r1=1)
    m.create("s1")
    m.write(r1=2, r2=2)
    m.create("s2")
    m.write(**head_writes)
    m.create("s3")
    m.write(r6=6)
    s2 = m.snapshot_ids()["s2"]
    change = m.delete("s2")
    assert change.gone == [s2]
    assert set(m.snapshot_ids()) == {"s1", "s3"}
    m.check()
    # s3 now holds what changed since s1: its own interval and s2's.
    changed = {"r1", "r2"} | set(head_writes)
    assert within_clusters(m.driver.usage(m.name("s3")), len(changed) * REGION)
    assert within_clusters(m.driver.usage(m.name("s1")), 2 * REGION)
    assert within_clusters(change.used, REGION)


def test_delete_the_newest_and_the_oldest_snapshot(driver_factory):
    m = Model(driver_factory.make("pool"))
    m.write(r0=1)
    m.create("s1")
    m.write(r1=2)
    m.create("s2")
    m.write(r2=3)
    m.delete("s2")
    m.check()
    m.delete("s1")
    m.check()
    assert m.snapshots == {} and m.driver.head_snapshot(m.volume) is None


def test_a_snapshot_with_two_readers_is_retained_then_collected(driver_factory):
    m = Model(driver_factory.make("pool"))
    m.write(r0=1, r1=1)
    m.create("base")
    m.write(r1=2)
    m.create("left")
    m.rollback("base")  # base now has two readers: left and the head
    m.write(r2=3)
    base, left = m.snapshot_ids()["base"], m.snapshot_ids()["left"]
    kept = m.driver.snapshot_delete_keeps(m.tree, base)
    m.delete("base")
    m.check()  # hidden or not, what reads base's data reads the same
    if kept:
        assert m.snapshots[base].hidden and base in m.content
        # A later delete leaves base's data with one reader: the driver collects it then.
        assert m.delete("left").gone == [left, base]
    else:
        m.delete("left")
    assert base not in m.snapshots
    m.check()


def test_a_hidden_snapshot_goes_once_nothing_needs_it(driver_factory):
    m = Model(driver_factory.make("pool"))
    m.write(r0=1)
    m.create("a")
    m.write(r1=2)
    m.create("b")
    m.rollback("a")
    m.write(r2=3)
    a = m.snapshot_ids()["a"]
    if not m.driver.snapshot_delete_keeps(m.tree, a):
        pytest.skip("this driver never keeps a deleted snapshot's data")
    m.snapshots[a] = replace(m.snapshots[a], hidden=True)  # still two readers (b and the head)
    m.rollback("b")  # a is left with one reader (b): collected by the rollback itself
    assert a not in m.snapshots
    m.check()


# -- clones -------------------------------------------------------------------------------------------


def _clone_source(m: Model, label: str) -> SnapshotSource:
    return SnapshotSource(driver=m.driver, volume=m.volume, snapshot=m.name(label))


def _full_clone(driver: StorageDriver, source: SnapshotSource, name: str) -> None:
    partial = driver.full_clone(source, name, "t1", _quiet)
    driver.publish_partial(partial, name)


@pytest.mark.parametrize("same_pool", [True, False], ids=["same-pool", "other-pool"])
def test_linked_and_full_clones_are_independent_of_writes_on_either_side(driver_factory, same_pool):
    source_driver = driver_factory.make("pool")
    m = Model(source_driver)
    m.write(r0=1, r1=1, r2=1)
    m.create("s1")
    target = source_driver if same_pool else driver_factory.make("other")
    assert target.can_link_from(source_driver)
    source = _clone_source(m, "s1")
    linked, full = f"volume/{uuid.uuid4()}", f"volume/{uuid.uuid4()}"
    info = target.linked_clone(linked, source)
    assert info.virtual_size == SIZE and info.allocated == 0
    assert target.copy_needs(source) >= 3 * REGION
    _full_clone(target, source, full)
    assert target.discard_partials(full) == 0
    for name in (linked, full):
        assert_content(target, name, m.content[m.snapshot_ids()["s1"]])
    m.write(r0=7, r3=7)
    target.write_pattern(linked, [(REGION, REGION, 8)])
    target.write_pattern(full, [(2 * REGION, REGION, 9)])
    m.check()
    s1 = m.content[m.snapshot_ids()["s1"]]
    assert_content(target, linked, [s1[0], 8, *s1[2:]])
    assert_content(target, full, [*s1[:2], 9, *s1[3:]])
    # A linked clone of a linked clone reads both.
    clone_model = Model(target, linked, [s1[0], 8, *s1[2:]])
    clone_model.create("c1")
    second = f"volume/{uuid.uuid4()}"
    target.linked_clone(second, _clone_source(clone_model, "c1"))
    assert_content(target, second, clone_model.head)


def test_flatten_makes_a_linked_clone_independent(driver_factory):
    driver = driver_factory.make("pool")
    m = Model(driver)
    m.write(r0=1, r1=1)
    m.create("origin")
    c = Model(driver, f"volume/{uuid.uuid4()}", m.head)
    driver.linked_clone(c.volume, _clone_source(m, "origin"))
    c.write(r2=2)
    c.create("own")
    c.write(r3=3)
    needs = driver.flatten_needs(c.volume, c.tree)
    assert needs >= 2 * REGION
    result = driver.flatten(c.volume, c.tree, tag="t1", progress=_quiet, checkpoint=lambda: None)
    assert result.independent
    c.check()
    # The origin can go now: nothing outside the clone reads it.
    m.delete("origin")
    m.write(r0=5, r2=5)
    c.check()
    assert driver.flatten_recover(c.volume, c.tree).independent


# -- a failure after every storage step, then the same call again -------------------------------------


class Crash(BaseException):
    """The worker dies here: not an Exception, so no driver code catches it."""


def _count_steps(backend: Backend, setup, act) -> int:
    m = setup(backend.make("count"))
    seen = {"n": 0}
    with _faults(backend, seen, at=None):
        act(m)
    return seen["n"]


def _faults(backend: Backend, seen: dict, at: int | None):
    wrapped = {name: _wrap(backend, name, seen, at) for name in backend.steps}
    return mock.patch.multiple(backend.engine, **wrapped)


def _wrap(backend: Backend, name: str, seen: dict, at: int | None):
    real = getattr(backend.engine, name)

    def step(*args, **kwargs):
        result = real(*args, **kwargs)
        seen["n"] += 1
        if seen["n"] == at:
            raise Crash(f"{name} (step {at})")
        return result

    return step


def _delete_scenario(head_writes: dict):
    def setup(driver):
        m = Model(driver)
        m.write(r0=1, r1=1)
        m.create("s1")
        m.write(r1=2, r2=2)
        m.create("s2")
        m.write(**head_writes)
        return m

    def act(m):
        return m.delete("s2")

    return setup, act


def _rollback_setup(driver):
    m = Model(driver)
    m.write(r0=1)
    m.create("s1")
    m.write(r1=2)
    m.create("s2")
    m.rollback("s1")
    m.write(r3=3)
    m.delete("s1")  # retained by a driver that must keep it: the rollback below collects it
    m.write(r4=4)
    return m


def _create_act(m):
    snapshot_id = m.__dict__.setdefault("_next", str(uuid.uuid4()))
    name = m.driver.snapshot_name(m.volume, snapshot_id)
    sizes = m.driver.snapshot_create(m.volume, name)
    if snapshot_id not in m.snapshots:
        m.record_create("new", snapshot_id, name)
    return sizes


def _create_setup(driver):
    m = Model(driver)
    m.write(r0=1)
    m.create("s1")
    m.write(r1=2)
    return m


def _linked_setup(driver):
    m = _create_setup(driver)
    m.clone = f"volume/{uuid.uuid4()}"
    return m


def _linked_act(m):
    m.driver.linked_clone(m.clone, _clone_source(m, "s1"))
    m.clone_content = m.content[m.snapshot_ids()["s1"]]


def _full_act(m):
    m.driver.discard_partials(m.clone)
    _full_clone(m.driver, _clone_source(m, "s1"), m.clone)
    m.clone_content = m.content[m.snapshot_ids()["s1"]]


def _flatten_setup(driver):
    m = _linked_setup(driver)
    _linked_act(m)
    m.driver.write_pattern(m.clone, [(3 * REGION, REGION, 7)])
    m.clone_content = [*m.clone_content[:3], 7, *m.clone_content[4:]]
    return m


def _flatten_act(m):
    tree = SnapshotTree(volume=m.clone, snapshots=(), head_on=None)
    m.driver.flatten(m.clone, tree, tag="t1", progress=_quiet, checkpoint=lambda: None)
    m.flattened = True


SCENARIOS = {
    "create": (_create_setup, _create_act),
    "delete-by-rebase": _delete_scenario({"r0": 3, "r1": 3, "r2": 3, "r3": 3}),  # the head holds more
    "delete-by-commit": _delete_scenario({"r3": 3}),  # the head holds less than the snapshot
    "rollback-and-collect": (_rollback_setup, lambda m: m.rollback("s2")),
    "linked-clone": (_linked_setup, _linked_act),
    "full-clone": (_linked_setup, _full_act),
    "flatten": (_flatten_setup, _flatten_act),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_failure_after_any_storage_step_is_finished_by_calling_again(driver_factory, scenario):
    setup, act = SCENARIOS[scenario]
    steps = _count_steps(driver_factory, setup, act)
    assert steps > 0
    for at in range(1, steps + 1):
        m = setup(driver_factory.make(f"pool-{at}"))
        with pytest.raises(Crash), _faults(driver_factory, {"n": 0}, at):
            act(m)
        # Nothing visible changed or the work is done: either way the images read right...
        act(m)  # ...and the same call again finishes it.
        m.check()
        if hasattr(m, "clone_content"):
            assert_content(m.driver, m.clone, m.clone_content)
        if getattr(m, "flattened", False):
            assert m.driver.flatten_recover(m.clone, SnapshotTree(m.clone, (), None)).independent
