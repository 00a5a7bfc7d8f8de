"""Driver conformance for exports, restores, usage and inventory: what any pool driver must pass.

Parametrized by `driver_factory` (the directory driver today). Only the interface is used on the
driver; the guest's writes and the content comparison go through a per-driver `GuestKit`, because
the interface has no data path (guests write through the hypervisor).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sharestore import errors
from volumes.drivers import StorageDriver, get_driver, process, qemu
from volumes.drivers.rbd.copies import source_of

MiB = 1 << 20
SIZE = 64 * MiB
V = "0b7f4c1e-53f5-4c3c-9a51-0c0cbd8f9a10"
HEAD = f"volume/{V}"
# qcow2 metadata of an export of a 64 MiB image: header, L1/L2 tables and refcounts, generously.
METADATA = 1 * MiB


def layer(name: str) -> str:
    return f"snapshots/{V}/{name}.qcow2"


@dataclass
class GuestKit:
    """What a test needs beyond the interface for one kind of driver: guest writes and comparison."""

    write: Callable[[StorageDriver, str, list[tuple[int, int, int]]], None]
    same_content: Callable[[StorageDriver, str, StorageDriver, str], bool]
    directory: bool = True  # a pool is a directory (the layout and corruption checks apply)


def _qcow2_write(driver, name, chunks):
    qemu.io_write(driver.path(name), chunks)


def _qcow2_same(first, first_name, second, second_name) -> bool:
    return qemu.compare(first.path(first_name), second.path(second_name))


def _rbd_write(driver, name, chunks):
    qemu.io_write(driver.qemu_source(name)[0], chunks, fmt="raw")


def _same(first, first_name, second, second_name) -> bool:
    """`qemu-img compare` of two images of any kind (`rbd:` names or qcow2 files)."""
    (a, a_fmt), (b, b_fmt) = source_of(first, first_name), source_of(second, second_name)
    return qemu.compare(a, b, fmt=a_fmt, second_fmt=b_fmt)


KITS = {
    "qcow2-dir": GuestKit(write=_qcow2_write, same_content=_qcow2_same),
    "rbd": GuestKit(write=_rbd_write, same_content=_same, directory=False),
}


@pytest.fixture(params=sorted(KITS))
def driver_factory(request, tmp_path) -> Callable[[str], StorageDriver]:
    """Makes drivers of the parametrized kind, each on a new empty pool (an RBD pool: a namespace of
    the session's test Ceph)."""

    def make(pool: str = "pool") -> StorageDriver:
        if request.param == "rbd":
            return get_driver("rbd", request.getfixturevalue("rbd_namespace")(pool))
        root = tmp_path / pool
        root.mkdir()
        return get_driver(request.param, str(root))

    make.kit = KITS[request.param]
    return make


@pytest.fixture
def exports(tmp_path):
    """A backup point's directory for one volume: exports name their base by file name in it."""
    directory = tmp_path / "exports" / V
    directory.mkdir(parents=True)
    return directory


def no_progress(*_args) -> None:
    return None


def allocated(path) -> int:
    """Bytes one export file holds on its own (its backing file not counted)."""
    return qemu.layer_allocated(str(path))


def digest(driver: StorageDriver, name: str) -> str:
    """SHA-256 of the image's whole guest-visible content, read through the driver's reader."""
    sha = hashlib.sha256()
    with driver.open_reader(name) as reader:
        ranges = [(offset, min(4 * MiB, reader.size - offset)) for offset in range(0, reader.size, 4 * MiB)]
        for _offset, data in sorted(reader.read_many(ranges), key=lambda item: item[0]):
            sha.update(data)
    return sha.hexdigest()


def history(make) -> tuple[StorageDriver, GuestKit, int]:
    """s1 holds 16 MiB; s2 and s3 change 2 MiB each (the change since s1 spans two layers)."""
    driver, kit = make(), make.kit
    driver.create_volume(HEAD, SIZE)
    kit.write(driver, HEAD, [(0, 16 * MiB, 1)])
    driver.snapshot_create(HEAD, layer("s1"))
    kit.write(driver, HEAD, [(4 * MiB, 2 * MiB, 2)])
    driver.snapshot_create(HEAD, layer("s2"))
    kit.write(driver, HEAD, [(40 * MiB, 2 * MiB, 3)])
    driver.snapshot_create(HEAD, layer("s3"))
    return driver, kit, 4 * MiB


def restored(driver: StorageDriver, export, name: str, tag: str = "t1") -> str:
    partial = driver.restore_export(str(export), name, SIZE, tag, no_progress)
    assert not driver.exists(name), "a restore is not visible before it is published"
    driver.publish_partial(partial, name)
    return name


# -- exports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("since", [layer("s1"), None], ids=["since-snapshot", "content-diff"])
def test_an_export_of_changes_holds_about_the_changed_bytes(driver_factory, exports, since):
    driver, _kit, changed = history(driver_factory)
    full, incremental = exports / "full.qcow2", exports / "incr.qcow2"
    driver.export(layer("s1"), str(full), progress=no_progress)
    driver.export(layer("s3"), str(incremental), base_export=str(full), since=since, progress=no_progress)
    assert allocated(full) >= 16 * MiB
    assert changed <= allocated(incremental) <= 1.2 * changed + METADATA
    assert os.path.getsize(incremental) <= 1.2 * changed + METADATA
    # The change set the driver reports since s1 covers the change and little else.
    extents = driver.changed_extents(layer("s3"), since=layer("s1"))
    assert extents is not None
    assert changed <= sum(e.length for e in extents) <= 1.2 * changed
    assert sorted(os.listdir(exports)) == ["full.qcow2", "incr.qcow2"], "no scratch file is left"


def test_changes_since_a_snapshot_that_is_not_an_ancestor_are_unknown(driver_factory):
    driver, _kit, _changed = history(driver_factory)
    assert driver.changed_extents(layer("s1"), since=layer("s3")) is None
    assert driver.changed_extents(layer("s3"), since=layer("gone")) is None
    # Without a base: every range that may hold data (s2 rewrote 2 MiB inside s1's 16 MiB).
    data = driver.changed_extents(layer("s3"))
    assert 18 * MiB <= sum(e.length for e in data) <= 19 * MiB


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
def test_restoring_a_full_and_an_incremental_export_gives_the_snapshot_back(
    driver_factory, exports, compress
):
    driver, kit, _changed = history(driver_factory)
    full, incremental = exports / "full.qcow2", exports / "incr.qcow2"
    driver.export(layer("s1"), str(full), compress=compress, progress=no_progress)
    driver.export(
        layer("s3"),
        str(incremental),
        base_export=str(full),
        since=layer("s1"),
        compress=compress,
        progress=no_progress,
    )
    assert qemu.backing_raw(str(incremental)) == "full.qcow2", "an export names its base by file name"
    target = driver_factory("other")
    name = restored(target, incremental, "volume/restored")
    assert kit.same_content(target, name, driver, layer("s3"))
    assert digest(target, name) == digest(driver, layer("s3"))
    assert target.info(name).virtual_size == SIZE and target.info(name).backing is None
    assert kit.same_content(target, restored(target, full, "volume/from-full"), driver, layer("s1"))


def test_a_restore_refuses_an_export_that_names_a_base_by_path(driver_factory, exports, tmp_path):
    driver, _kit, _changed = history(driver_factory)
    full, sneaky = exports / "full.qcow2", exports / "sneaky.qcow2"
    driver.export(layer("s1"), str(full), progress=no_progress)
    qemu.create(str(sneaky), SIZE, backing=str(full))  # an absolute backing name
    with pytest.raises(errors.StorageError, match="unexpected backing"):
        driver.restore_export(str(sneaky), "volume/x", SIZE, "t1", no_progress)
    assert [o.name for o in driver.inventory() if o.partial] == []


# -- usage -----------------------------------------------------------------------------------------


def test_usage_figures_match_the_bytes_written(driver_factory):
    driver, kit = driver_factory(), driver_factory.kit
    driver.create_volume(HEAD, SIZE)
    assert driver.usage(HEAD) == 0
    kit.write(driver, HEAD, [(0, 3 * MiB, 7), (32 * MiB, 1 * MiB, 8)])
    assert driver.usage(HEAD) == 4 * MiB
    driver.snapshot_create(HEAD, layer("s1"))
    assert (driver.usage(layer("s1")), driver.usage(HEAD)) == (4 * MiB, 0)
    kit.write(driver, HEAD, [(8 * MiB, 2 * MiB, 9)])
    assert driver.usage(HEAD) == 2 * MiB
    stored = {o.name: o for o in driver.inventory()}
    assert (stored[HEAD].allocated, stored[layer("s1")].allocated) == (2 * MiB, 4 * MiB)
    space = driver.space()
    assert 0 < space.free <= space.total


def test_validate_location_accepts_a_writable_pool_and_refuses_a_missing_one(driver_factory, tmp_path):
    driver = driver_factory()
    if not driver_factory.kit.directory:
        assert driver.validate_location() == driver.root
        missing = driver.root.replace("/", "/nowhere-", 1)
        with pytest.raises(errors.InvalidParameter, match="cannot list the RBD pool"):
            get_driver("rbd", missing).validate_location()
        return
    assert driver.validate_location() == os.path.realpath(driver.root)
    with pytest.raises(errors.InvalidParameter, match="does not exist"):
        get_driver("qcow2-dir", str(tmp_path / "nowhere")).validate_location()


# -- inventory -------------------------------------------------------------------------------------


def test_inventory_lists_planted_orphans_and_partials_apart_from_live_images(driver_factory, exports):
    driver, _kit, _changed = history(driver_factory)
    full = exports / "full.qcow2"
    driver.export(layer("s1"), str(full), progress=no_progress)
    orphan = "volume/5d7c77a8-3c39-4c69-9a47-3a1e0f9f2f0b"
    driver.create_volume(orphan, SIZE)
    # A restore whose worker died before publishing leaves a partial of an attempt.
    partial = driver.restore_export(str(full), "volume/never-published", SIZE, "a1-dead", no_progress)

    stored = {o.name: o for o in driver.inventory()}
    images = {name for name, o in stored.items() if not o.partial}
    assert images == {HEAD, layer("s1"), layer("s2"), layer("s3"), orphan}
    assert [(o.name, o.partial_of) for o in stored.values() if o.partial] == [
        (partial, "volume/never-published")
    ]
    assert stored[partial].age >= 0 and stored[partial].size > 0
    assert stored[HEAD].backing == layer("s3")
    assert stored[HEAD].reads == (layer("s3"), layer("s2"), layer("s1"))
    assert stored[orphan].reads == () and all(o.error is None for o in stored.values())
    # The view of a few images: those that exist, each followed by its partials.
    subset = driver.inventory([layer("s2"), "volume/never-published", "volume/absent"])
    assert [(o.name, o.partial) for o in subset] == [(layer("s2"), False), (partial, True)]

    assert driver.remove_object(partial) and driver.remove_object(orphan)
    assert not driver.remove_object(orphan), "removing again finds nothing and succeeds"
    assert {o.name for o in driver.inventory()} == {HEAD, layer("s1"), layer("s2"), layer("s3")}


def test_removing_the_last_object_of_a_volume_takes_its_place_away(driver_factory):
    driver, _kit, _changed = history(driver_factory)
    for name in (HEAD, layer("s3"), layer("s2"), layer("s1")):
        driver.remove_object(name)
    assert driver.inventory() == []
    if not driver_factory.kit.directory:
        assert not driver.exists(HEAD), "the RBD image went with its last snapshot"
        return
    assert sorted(os.listdir(driver.root)) == ["snapshots", "volume"]
    assert os.listdir(os.path.join(driver.root, "snapshots")) == []


def test_an_unreadable_image_is_listed_with_its_error(driver_factory):
    if not driver_factory.kit.directory:
        pytest.skip("an RBD image has no header a test can overwrite")
    driver = driver_factory()
    driver.create_volume(HEAD, SIZE)
    with open(driver.path(HEAD), "r+b") as handle:
        handle.write(b"\0" * 512)  # the qcow2 header is gone
    [stored] = driver.inventory()
    assert stored.name == HEAD and isinstance(stored.error, errors.ServiceError)


# -- a failure after each storage step -------------------------------------------------------------


class Injected(Exception):
    """The failure injected after a storage step completed."""


def fail_after(monkeypatch, step: int) -> list[int]:
    """Make the `step`-th storage command (1-based) fail right after it ran; count them."""
    real_run, calls = process.run, [0]

    def run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        calls[0] += 1
        if calls[0] == step:
            raise Injected(f"after step {step}: {args[0][:2]}")
        return result

    monkeypatch.setattr(process, "run", run)
    return calls


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
def test_an_export_interrupted_after_any_step_is_finished_by_calling_it_again(
    driver_factory, exports, monkeypatch, compress
):
    driver, kit, _changed = history(driver_factory)
    full = exports / "full.qcow2"
    driver.export(layer("s1"), str(full), progress=no_progress)
    target = driver_factory("other")
    step = 0
    while True:
        step += 1
        incremental = exports / "incr.qcow2"
        fail_after(monkeypatch, step)
        try:
            driver.export(
                layer("s3"),
                str(incremental),
                base_export=str(full),
                since=layer("s1"),
                compress=compress,
                progress=no_progress,
            )
            finished = True
        except Injected:
            finished = False
        monkeypatch.undo()
        if not finished:
            # What the failed call left is replaced: the same call again writes a right export.
            driver.export(
                layer("s3"),
                str(incremental),
                base_export=str(full),
                since=layer("s1"),
                compress=compress,
                progress=no_progress,
            )
        assert sorted(os.listdir(exports)) == ["full.qcow2", "incr.qcow2"]
        name = restored(target, incremental, f"volume/r{step}")
        assert kit.same_content(target, name, driver, layer("s3")), f"after a failure at step {step}"
        if finished:
            break
    assert step >= 4, "every step of the incremental export was interrupted once"


def test_a_restore_interrupted_after_any_step_is_finished_by_another_attempt(
    driver_factory, exports, monkeypatch
):
    driver, kit, _changed = history(driver_factory)
    full = exports / "full.qcow2"
    driver.export(layer("s3"), str(full), progress=no_progress)
    target = driver_factory("other")
    step = 0
    while True:
        step += 1
        name = f"volume/r{step}"
        fail_after(monkeypatch, step)
        try:
            partial = target.restore_export(str(full), name, SIZE, f"a1-{step}", no_progress)
            target.publish_partial(partial, name)
            finished = True
        except Injected:
            finished = False
        monkeypatch.undo()
        # An RBD publish is itself a command (`rbd rename`, the last step): a failure injected after
        # it finds the restore published, and complete (compared below).
        published_last = not driver_factory.kit.directory and target.exists(name)
        assert not target.exists(name) or finished or published_last, (
            "nothing is published by a failed attempt"
        )
        if not finished and not published_last:
            # The next attempt clears what any earlier one left and publishes its own copy.
            target.discard_partials(name)
            restored(target, full, name, tag=f"a2-{step}")
        assert [o.name for o in target.inventory() if o.partial] == []
        assert kit.same_content(target, name, driver, layer("s3")), f"after a failure at step {step}"
        if finished:
            break
    assert step >= 3
