"""The qemu layer on real images: the exact argv of the main commands (as Cinder's driver tests assert
them), the one chain walker and its limit, publishing without leftovers, and allocated bytes of a
single layer read without opening its backing files."""

from __future__ import annotations

import json
import os

import pytest

from sharestore import errors
from tests.helpers import image_info, pattern_matches, qemu_img, qemu_io
from volumes.drivers import process, qemu
from volumes.drivers.base import TreeWork

MiB = 1 << 20


@pytest.fixture
def calls(monkeypatch):
    """Every command the layer starts, (argv, timeout); the real qemu-img still runs."""
    seen: list[tuple[list[str], float]] = []
    real_run = process.run

    def recording(argv, **kwargs):
        seen.append(([str(a) for a in argv], kwargs["timeout"]))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", recording)
    return seen


def argvs(calls) -> list[list[str]]:
    return [argv for argv, _timeout in calls]


@pytest.fixture
def base(tmp_path) -> str:
    path = str(tmp_path / "base.qcow2")
    qemu.create(path, 64 * MiB)
    qemu_io(path, "qcow2", f"write -P 1 0 {4 * MiB}")
    return path


def overlay(tmp_path, backing: str, name: str = "top.qcow2") -> str:
    path = str(tmp_path / name)
    qemu.create(path, 64 * MiB, backing=os.path.basename(backing))
    return path


# -- exact argv -------------------------------------------------------------------------------------


def test_create_of_an_overlay_never_opens_the_backing(tmp_path, base, calls):
    top = str(tmp_path / "top.qcow2")
    qemu.create(top, 64 * MiB, backing="base.qcow2")
    assert argvs(calls) == [
        [
            "qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2",
            "-o", "preallocation=off", top, str(64 * MiB),
        ]
    ]  # fmt: skip
    assert image_info(top)["backing-filename"] == "base.qcow2"


def test_info_is_plain_with_explicit_format(base, calls):
    data = qemu.info(base)
    assert argvs(calls) == [["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", base]]
    assert data["virtual-size"] == 64 * MiB


def test_convert_options(tmp_path, base, calls):
    target = str(tmp_path / "copy.qcow2")
    seen = []
    qemu.convert(base, target, cache="unsafe", source_cache="writeback", compress=True, progress=seen.append)
    assert argvs(calls) == [
        [
            "qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2", "-t", "unsafe", "-T", "writeback",
            "-m", "16", "-W", "-c", "-o", "compression_type=zstd", base, target,
        ]
    ]  # fmt: skip
    assert seen and seen[-1] == 100.0
    assert pattern_matches(target, "qcow2", 0, 4 * MiB, 1)


def test_convert_of_a_top_layer_over_a_backing(tmp_path, base, calls):
    top = overlay(tmp_path, base)
    qemu_io(top, "qcow2", f"write -P 2 {8 * MiB} {1 * MiB}")
    target = str(tmp_path / "delta.qcow2")
    calls.clear()
    qemu.convert(top, target, backing="base.qcow2", out_of_order=False)
    assert argvs(calls) == [
        [
            "qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2", "-m", "16",
            "-B", "base.qcow2", "-F", "qcow2", top, target,
        ]
    ]  # fmt: skip
    assert qemu.layer_allocated(target) == 1 * MiB


def test_rebase_safe_and_unsafe(tmp_path, base, calls):
    top = overlay(tmp_path, base)
    calls.clear()
    qemu.rebase(top, None, cache="writeback", source_cache="writeback")
    qemu.rebase(top, "base.qcow2", safe=False)
    assert argvs(calls) == [
        ["qemu-img", "rebase", "-p", "-t", "writeback", "-T", "writeback", "-f", "qcow2", "-b", "", top],
        ["qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2", top],
    ]
    # The safe rebase onto nothing copied the base's data in; the unsafe one only renamed.
    assert qemu.layer_allocated(top) == 4 * MiB
    assert image_info(top)["backing-filename"] == "base.qcow2"


def test_commit_keeps_the_committed_layer(tmp_path, base, calls):
    top = overlay(tmp_path, base)
    qemu_io(top, "qcow2", f"write -P 3 {8 * MiB} {1 * MiB}")
    calls.clear()
    qemu.commit(top)
    assert argvs(calls) == [["qemu-img", "commit", "-p", "-t", "writeback", "-f", "qcow2", "-d", top]]
    assert pattern_matches(base, "qcow2", 8 * MiB, 1 * MiB, 3)
    assert qemu.layer_allocated(top) == 1 * MiB


def test_timeouts_come_from_one_setting(base, calls, settings):
    settings.SHARESTORE_QEMU_TIMEOUTS = {"inspect": 7}
    qemu.info(base)
    qemu.resize(base, 128 * MiB)
    assert [timeout for _argv, timeout in calls] == [7.0, qemu.DEFAULT_TIMEOUTS["metadata"]]


def test_untrusted_info_runs_under_an_address_space_limit(base, monkeypatch):
    seen = {}
    real_run = process.run

    def recording(argv, **kwargs):
        seen.update(kwargs)
        return real_run(argv, **kwargs)

    monkeypatch.setattr(process, "run", recording)
    qemu.info(base, untrusted=True)
    assert seen["address_space"] == qemu.DEFAULT_INSPECT_ADDRESS_SPACE


# -- reading --------------------------------------------------------------------------------------


def test_compare_measure_and_map(tmp_path, base):
    copy = str(tmp_path / "copy.qcow2")
    qemu.convert(base, copy)
    assert qemu.compare(base, copy)
    qemu_io(copy, "qcow2", f"write -P 9 {1 * MiB} 512")
    assert not qemu.compare(base, copy)
    assert qemu.measure(base)["required"] >= 4 * MiB
    data = [e for e in qemu.map_extents(base) if e["data"]]
    assert sum(e["length"] for e in data) == 4 * MiB


def test_qemu_io_writes_and_reads_back(tmp_path, base):
    qemu.io_write(base, [(8 * MiB, 1 * MiB, 0x5A), (16 * MiB, 64 * 1024, 0xA5)])
    assert qemu.io_read_matches(base, 8 * MiB, 1 * MiB, 0x5A)
    assert qemu.io_read_matches(base, 16 * MiB, 64 * 1024, 0xA5)
    assert not qemu.io_read_matches(base, 8 * MiB, 1 * MiB, 0xA5)


def test_check_reports_the_exit_code(base):
    assert qemu.check(base)["exit"] == 0
    with open(base, "r+b") as handle:
        handle.truncate(os.path.getsize(base) // 2)
    report = qemu.check(base, ok_codes=(0, 1, 2, 3))
    assert report["exit"] != 0
    with pytest.raises(errors.StorageError):
        qemu.check(base)


def test_allocated_bytes_of_a_top_layer_count_that_layer_only_without_opening_its_backing(tmp_path, base):
    top = overlay(tmp_path, base)
    # 1 MiB of data and 64 KiB of data in the top layer; 4 MiB below it; zeros written as zeros count nothing.
    qemu_io(
        top,
        "qcow2",
        f"write -P 2 {1 * MiB} {1 * MiB}",
        f"write -P 3 {32 * MiB} 65536",
        f"write -z {40 * MiB} 131072",
    )
    expected = 1 * MiB + 65536
    assert qemu.layer_allocated(top) == expected
    os.unlink(base)
    # A check of the layer under its plain name needs the backing file ...
    assert qemu_img("check", "-U", "-f", "qcow2", top, check=False).returncode != 0
    # ... the single-layer read does not.
    assert qemu.layer_allocated(top) == expected
    # A file that is not an image at all where the backing was: still never opened.
    with open(base, "wb") as handle:
        handle.write(b"not an image")
    assert qemu.layer_allocated(top) == expected


def test_single_layer_name_is_json_with_no_backing(tmp_path):
    name = qemu.single_layer(str(tmp_path / "a,b.qcow2"))
    assert name.startswith("json:")
    assert json.loads(name[5:]) == {
        "driver": "qcow2",
        "backing": None,
        "file": {"driver": "file", "filename": str(tmp_path / "a,b.qcow2")},
    }


# -- the chain walker -----------------------------------------------------------------------------


def chain_of(tmp_path, base, layers: int) -> list[str]:
    paths = [base]
    for i in range(layers):
        paths.append(overlay(tmp_path, paths[-1], f"l{i}.qcow2"))
    return paths


def test_walk_chain_reads_each_layer_once_top_first(tmp_path, base, calls):
    paths = chain_of(tmp_path, base, 3)
    calls.clear()
    assert qemu.walk_chain(paths[-1]) == list(reversed(paths))
    assert [argv[1] for argv in argvs(calls)] == ["info"] * 4
    assert all("--backing-chain" not in argv for argv in argvs(calls))


def test_walk_chain_has_one_limit(tmp_path, base, settings):
    paths = chain_of(tmp_path, base, 3)
    settings.SHARESTORE_BACKING_CHAIN_LIMIT = 4
    assert len(qemu.walk_chain(paths[-1])) == 4
    settings.SHARESTORE_BACKING_CHAIN_LIMIT = 3
    with pytest.raises(errors.StorageError, match="longer than 3 layers"):
        qemu.walk_chain(paths[-1])


def test_walk_chain_refuses_loops_missing_layers_and_protocol_names(tmp_path, base):
    top = overlay(tmp_path, base)
    qemu.rebase(base, "top.qcow2", safe=False)
    with pytest.raises(errors.StorageError, match="loops"):
        qemu.walk_chain(top)
    qemu.rebase(base, "gone.qcow2", safe=False)
    with pytest.raises(errors.StorageError, match="missing"):
        qemu.walk_chain(top)
    qemu.rebase(base, "nbd://example.invalid/x", safe=False)
    with pytest.raises(errors.StorageError, match="unexpected backing"):
        qemu.walk_chain(top)


def test_walk_chain_lets_the_caller_refuse_a_name(tmp_path, base):
    top = overlay(tmp_path, base)

    def same_directory_only(layer: str, raw: str) -> None:
        if raw != "other.qcow2":
            raise errors.StorageError(reason=f"{raw} refused")

    with pytest.raises(errors.StorageError, match="base.qcow2 refused"):
        qemu.walk_chain(top, accept=same_directory_only)


# -- publishing -----------------------------------------------------------------------------------


def test_publishing_leaves_only_the_final_file(tmp_path):
    final = str(tmp_path / "d" / "image.qcow2")
    with qemu.publishing(final) as tmp:
        assert os.path.dirname(tmp) == os.path.dirname(final) and tmp != final
        qemu.create(tmp, 1 * MiB)
        assert not os.path.exists(final)
    assert os.listdir(tmp_path / "d") == ["image.qcow2"]


def test_a_failed_write_publishes_nothing_and_keeps_the_old_file(tmp_path):
    tmp_path = tmp_path / "pub"
    tmp_path.mkdir()
    final = str(tmp_path / "image.qcow2")
    qemu.create(final, 1 * MiB)
    with pytest.raises(errors.StorageError), qemu.publishing(final) as tmp:
        qemu.create(tmp, 1 * MiB)
        qemu.create(tmp, 1 * MiB, backing="/nonexistent/base", backing_fmt="qcow2")
        qemu.rebase(tmp, None)  # fails: the backing is missing
    assert os.listdir(tmp_path) == ["image.qcow2"]
    assert image_info(final).get("backing-filename") is None


def test_publishing_replaces_a_leftover_temporary_file(tmp_path):
    tmp_path = tmp_path / "pub"
    tmp_path.mkdir()
    final = str(tmp_path / "image.qcow2")
    with open(qemu.tmp_sibling(final), "wb") as handle:
        handle.write(b"from a crashed attempt")
    with qemu.publishing(final) as tmp:
        qemu.create(tmp, 1 * MiB)
    assert os.listdir(tmp_path) == ["image.qcow2"]
    assert image_info(final)["virtual-size"] == 1 * MiB


def test_rename_and_unlink(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src, dst = str(tmp_path / "a" / "x"), str(tmp_path / "b" / "x")
    qemu.create(src, 1 * MiB)
    qemu.rename(src, dst)
    assert not os.path.exists(src) and os.path.isfile(dst)
    assert qemu.unlink(dst) is True
    assert qemu.unlink(dst) is False
    with pytest.raises(errors.StorageError, match="atomic"):
        qemu.publish(str(tmp_path / "a" / "t"), str(tmp_path / "b" / "t"))


# -- driver paths that must not open the backing chain ------------------------------------------


def test_snapshot_rollback_and_linked_clone_work_with_the_bottom_of_the_chain_gone(tmp_path):
    from volumes.drivers import SnapshotSource, SnapshotTree, TreeSnapshot
    from volumes.drivers.qcow2 import Qcow2DirectoryDriver

    root = tmp_path / "pool"
    root.mkdir()
    driver = Qcow2DirectoryDriver(str(root))
    head, v = "volume/v", "snapshots/v"
    driver.create_volume(head, 8 * MiB)
    qemu_io(driver.path(head), "qcow2", f"write -P 1 0 {1 * MiB}")
    driver.snapshot_create(head, f"{v}/s1.qcow2")
    qemu_io(driver.path(head), "qcow2", f"write -P 2 {1 * MiB} {2 * MiB}")
    driver.snapshot_create(head, f"{v}/s2.qcow2")
    # Anything that opened the chain down to s1 now fails.
    os.unlink(driver.path(f"{v}/s1.qcow2"))
    assert driver.snapshot_create(head, f"{v}/s3.qcow2") == (0, 0)
    assert driver.usage(f"{v}/s2.qcow2") == 2 * MiB
    assert driver.head_snapshot(head) == f"{v}/s3.qcow2"
    tree = SnapshotTree(
        volume=head,
        snapshots=(
            TreeSnapshot("s1", f"{v}/s1.qcow2", None),
            TreeSnapshot("s2", f"{v}/s2.qcow2", "s1"),
            TreeSnapshot("s3", f"{v}/s3.qcow2", "s2"),
        ),
        head_on="s3",
    )
    change = driver.snapshot_rollback(
        head, "s2", tree, TreeWork(journal={}, progress=lambda *_: None, checkpoint=lambda: None)
    )
    assert (change.gone, change.used) == ([], 0)
    assert driver.head_snapshot(head) == f"{v}/s2.qcow2"
    clone = driver.linked_clone("volume/clone", SnapshotSource(driver, head, f"{v}/s3.qcow2"))
    assert (clone.virtual_size, clone.allocated, driver.backing_name("volume/clone")) == (
        8 * MiB,
        0,
        f"{v}/s3.qcow2",
    )
    assert driver.info(head).allocated == 0
