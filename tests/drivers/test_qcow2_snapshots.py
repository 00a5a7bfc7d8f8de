"""The qcow2 directory driver's snapshot-layer operations on real images: freeze, unfreeze, reset,
merge (rebase and commit) and the chain reader, each also resumed from the states a crash leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from sharestore import errors
from tests.helpers import image_info, pattern_matches, qemu_img, qemu_io
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.drivers.qcow2.plan import MERGE_COMMIT, MERGE_REBASE

MiB = 1 << 20
V = "7fc3da44-118c-461b-9cf7-baba77f01502"
HEAD = f"volume/{V}"


def layer(name: str) -> str:
    return f"snapshots/{V}/{name}.qcow2"


@pytest.fixture
def driver(tmp_path) -> Qcow2DirectoryDriver:
    root = tmp_path / "pool"
    root.mkdir()
    d = Qcow2DirectoryDriver(str(root))
    d.create_volume(HEAD, 8 * MiB)
    return d


def write(driver, name, byte, offset_mib, length_mib=1):
    qemu_io(driver.path(name), "qcow2", f"write -P {byte} {offset_mib * MiB} {length_mib * MiB}")


def reads(driver, name, byte, offset_mib, length_mib=1) -> bool:
    return pattern_matches(driver.path(name), "qcow2", offset_mib * MiB, length_mib * MiB, byte)


def backing_string(driver, name):
    return image_info(driver.path(name)).get("backing-filename")


def build_chain(driver) -> None:
    """s1 (1 at 0M) <- s2 (2 at 1M) <- head (3 at 2M)."""
    write(driver, HEAD, 1, 0)
    driver._freeze(HEAD, layer("s1"))
    write(driver, HEAD, 2, 1)
    driver._freeze(HEAD, layer("s2"))
    write(driver, HEAD, 3, 2)


def test_freeze_moves_the_head_into_a_layer_and_leaves_an_empty_overlay(driver):
    build_chain(driver)
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s2.qcow2"
    # The layer's reference was rewritten for its own directory (it named ../snapshots/... from volume/).
    assert backing_string(driver, layer("s2")) == "s1.qcow2"
    assert backing_string(driver, layer("s1")) is None
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2"), layer("s1")]
    assert driver.backing_name(HEAD) == layer("s2")
    assert reads(driver, layer("s1"), 1, 0) and reads(driver, layer("s1"), 0, 1)
    assert (
        reads(driver, layer("s2"), 1, 0)
        and reads(driver, layer("s2"), 2, 1)
        and reads(driver, layer("s2"), 0, 2)
    )
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)
    assert driver.usage(layer("s2")) == MiB
    assert image_info(driver.path(HEAD))["virtual-size"] == 8 * MiB
    assert qemu_img("check", "-f", "qcow2", driver.path(HEAD)).returncode == 0


def test_freeze_resumes_after_the_rename(driver):
    write(driver, HEAD, 1, 0)
    driver._freeze(HEAD, layer("s1"))
    write(driver, HEAD, 2, 1)
    # A crash right after the rename: the layer still names its backing as seen from volume/.
    os.rename(driver.path(HEAD), driver.path(layer("s2")))
    assert backing_string(driver, layer("s2")) == f"../snapshots/{V}/s1.qcow2"
    driver._freeze(HEAD, layer("s2"))
    assert backing_string(driver, layer("s2")) == "s1.qcow2"
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2"), layer("s1")]
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)
    # Done: calling it again changes nothing.
    driver._freeze(HEAD, layer("s2"))
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2"), layer("s1")]


def test_freeze_refuses_files_it_did_not_make(driver):
    write(driver, HEAD, 1, 0)
    driver._freeze(HEAD, layer("s1"))
    driver._freeze(HEAD, layer("s2"))
    # Both files exist but the head is not an overlay on s1: not a freeze of s1 to finish.
    with pytest.raises(errors.StorageError):
        driver._freeze(HEAD, layer("s1"))
    with pytest.raises(errors.StorageError):
        driver._freeze(f"volume/{'0' * 8}", layer("s9"))
    driver._freeze(HEAD, layer("s2"))  # the freeze it did make is recognised as done
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2"), layer("s1")]


def test_unfreeze_puts_the_head_back_from_any_point(driver):
    write(driver, HEAD, 1, 0)
    driver._freeze(HEAD, layer("s1"))
    write(driver, HEAD, 2, 1)
    driver._freeze(HEAD, layer("s2"))
    driver._unfreeze(HEAD, layer("s2"))
    assert not driver.exists(layer("s2"))
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s1.qcow2"
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)
    # Stopped after the rename only.
    os.rename(driver.path(HEAD), driver.path(layer("s3")))
    driver._unfreeze(HEAD, layer("s3"))
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s1.qcow2"
    # Nothing frozen: nothing to undo.
    driver._unfreeze(HEAD, layer("never"))
    assert reads(driver, HEAD, 2, 1)


def test_unfreeze_never_discards_a_head_that_is_not_the_freeze_overlay(driver):
    write(driver, HEAD, 1, 0)
    driver._freeze(HEAD, layer("s1"))
    driver._freeze(HEAD, layer("s2"))
    with pytest.raises(errors.StorageError):
        driver._unfreeze(HEAD, layer("s1"))
    assert driver.exists(HEAD) and driver.exists(layer("s1"))


def test_head_reset_replaces_the_head_with_an_empty_overlay(driver):
    build_chain(driver)
    driver._head_reset(HEAD, layer("s1"))
    assert driver.backing_chain(HEAD) == [HEAD, layer("s1")]
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 0, 1, 2)
    assert driver.usage(HEAD) == 0
    # The other branch is untouched.
    assert reads(driver, layer("s2"), 2, 1)
    assert not [n for n in driver._all_files() if ".tmp-" in n]


@pytest.mark.parametrize("strategy", [MERGE_REBASE, MERGE_COMMIT])
def test_merge_into_the_head(driver, strategy):
    build_chain(driver)
    driver._layer_merge(layer("s2"), HEAD, strategy, lambda *_: None)
    assert not driver.exists(layer("s2"))
    assert driver.backing_chain(HEAD) == [HEAD, layer("s1")]
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s1.qcow2"
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)
    assert reads(driver, layer("s1"), 1, 0) and reads(driver, layer("s1"), 0, 1, 2)


@pytest.mark.parametrize("strategy", [MERGE_REBASE, MERGE_COMMIT])
def test_merge_a_root_layer_into_a_child_layer(driver, strategy):
    build_chain(driver)
    driver._layer_merge(layer("s1"), layer("s2"), strategy, lambda *_: None)
    assert not driver.exists(layer("s1"))
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2")]
    assert backing_string(driver, layer("s2")) is None
    assert (
        reads(driver, layer("s2"), 1, 0)
        and reads(driver, layer("s2"), 2, 1)
        and reads(driver, layer("s2"), 0, 2)
    )
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)


def test_merge_progress_is_reported(driver):
    build_chain(driver)
    seen = []
    driver._layer_merge(layer("s2"), HEAD, MERGE_REBASE, lambda percent, *_: seen.append(percent))
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)


def test_commit_resumes_between_commit_and_rename_and_between_rename_and_repoint(driver):
    build_chain(driver)
    # Commit done (layer s2 now also holds the head's clusters), crash before the rename.
    qemu_img("commit", "-q", "-f", "qcow2", "-d", driver.path(HEAD))
    assert reads(driver, layer("s2"), 3, 2)
    driver._layer_merge(layer("s2"), HEAD, MERGE_COMMIT, lambda *_: None)
    assert driver.backing_chain(HEAD) == [HEAD, layer("s1")]
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)

    # Rename done, crash before the repoint: the head names its backing as seen from snapshots/<v>/.
    driver._freeze(HEAD, layer("s3"))
    write(driver, HEAD, 4, 3)
    qemu_img("commit", "-q", "-f", "qcow2", "-d", driver.path(HEAD))
    os.replace(driver.path(layer("s3")), driver.path(HEAD))
    assert backing_string(driver, HEAD) == "s1.qcow2"  # right from snapshots/<v>/, wrong from volume/
    driver._layer_merge(layer("s3"), HEAD, MERGE_COMMIT, lambda *_: None)
    assert driver.backing_chain(HEAD) == [HEAD, layer("s1")]
    assert reads(driver, HEAD, 4, 3) and reads(driver, HEAD, 3, 2)


def test_commit_into_head_repoints_a_reference_that_only_held_from_the_layer_directory(driver):
    build_chain(driver)
    qemu_img("commit", "-q", "-f", "qcow2", "-d", driver.path(HEAD))
    # The crash state after the rename: s2's file, whose reference "s1.qcow2" is wrong from volume/.
    os.replace(driver.path(layer("s2")), driver.path(HEAD))
    assert backing_string(driver, HEAD) == "s1.qcow2"
    driver._layer_merge(layer("s2"), HEAD, MERGE_COMMIT, lambda *_: None)
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s1.qcow2"
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)


def test_rebase_resumes_when_only_the_removal_was_left(driver):
    build_chain(driver)
    qemu_img("rebase", "-f", "qcow2", "-F", "qcow2", "-b", f"../snapshots/{V}/s1.qcow2", driver.path(HEAD))
    assert driver.exists(layer("s2"))
    driver._layer_merge(layer("s2"), HEAD, MERGE_REBASE, lambda *_: None)
    assert not driver.exists(layer("s2"))
    assert reads(driver, HEAD, 2, 1)


def test_rebase_killed_midway_then_resumed_loses_nothing(driver):
    build_chain(driver)
    # A layer big enough for the copy to take a while, with a distinct pattern per MiB.
    big = Qcow2DirectoryDriver(driver.root)
    big.delete_image(HEAD)
    big.delete_image(layer("s1"))
    big.delete_image(layer("s2"))
    big.create_volume(HEAD, 512 * MiB)
    qemu_io(big.path(HEAD), "qcow2", *[f"write -P {i % 250 + 1} {i * 2 * MiB} {MiB}" for i in range(200)])
    big._freeze(HEAD, layer("s1"))
    qemu_io(big.path(HEAD), "qcow2", *[f"write -P 251 {(i * 2 + 1) * MiB} {MiB}" for i in range(0, 200, 3)])
    big._freeze(HEAD, layer("s2"))
    argv = ["qemu-img", "rebase", "-f", "qcow2", "-b", "", big.path(HEAD)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Wherever it stopped, the head still reads what it read, and the merge finishes from there.
    assert big.backing_name(HEAD) in (layer("s2"), None)
    if big.backing_name(HEAD) == layer("s2"):
        big._layer_merge(layer("s2"), HEAD, MERGE_REBASE, lambda *_: None)
    for i in range(0, 200, 7):
        assert pattern_matches(big.path(HEAD), "qcow2", i * 2 * MiB, MiB, i % 250 + 1)
    for i in range(0, 200, 3):
        assert pattern_matches(big.path(HEAD), "qcow2", (i * 2 + 1) * MiB, MiB, 251)


def test_merge_refuses_a_dependent_that_is_not_on_the_layer(driver):
    build_chain(driver)
    with pytest.raises(errors.StorageError):
        driver._layer_merge(layer("s1"), HEAD, MERGE_REBASE, lambda *_: None)
    assert driver.backing_chain(HEAD) == [HEAD, layer("s2"), layer("s1")]


def test_chain_reader_refuses_protocol_backings(driver, tmp_path):
    evil = f"snapshots/{V}/evil.qcow2"
    os.makedirs(os.path.dirname(driver.path(evil)), exist_ok=True)
    qemu_img(
        "create", "-q", "-f", "qcow2", "-u", "-b", "nbd://127.0.0.1:1/x", "-F", "raw", driver.path(evil), "1M"
    )
    with pytest.raises(errors.StorageError, match="unexpected backing"):
        driver.backing_chain(evil)


def test_layer_remove_is_idempotent(driver):
    build_chain(driver)
    driver._head_reset(HEAD, layer("s1"))
    driver._layer_remove(layer("s2"))
    driver._layer_remove(layer("s2"))
    assert not driver.exists(layer("s2"))
    assert driver.backing_chain(HEAD) == [HEAD, layer("s1")]
