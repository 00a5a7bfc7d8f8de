"""The qcow2 directory driver's pool layout: snapshot layers beside the head (`volume/<v>@<s>.qcow2`),
so freezing the head is a rename in one directory; layers of the layout before (`snapshots/<v>/<s>.qcow2`)
keep working in the same chains; the driver's own reading of qcow2 headers and L2 tables agrees with
qemu-img. Real qemu-img on real images; the qemu-img runs of a snapshot create are counted by wrapping
`process.run` (the wrapped call runs unchanged)."""

from __future__ import annotations

import contextlib
import os

import pytest

from sharestore import errors
from sharestore.core import fencing
from tests.helpers import image_info, pattern_matches, qemu_img, qemu_io
from volumes.drivers import process, qemu
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.drivers.qcow2.header import allocated_bytes, read_header, virtual_size
from volumes.drivers.qcow2.plan import MERGE_COMMIT, MERGE_REBASE

MiB = 1 << 20
V = "7fc3da44-118c-461b-9cf7-baba77f01502"
HEAD = f"volume/{V}"


def new_layer(name: str) -> str:
    return f"volume/{V}@{name}.qcow2"


def old_layer(name: str) -> str:
    return f"snapshots/{V}/{name}.qcow2"


@pytest.fixture
def driver(tmp_path) -> Qcow2DirectoryDriver:
    root = tmp_path / "pool"
    root.mkdir()
    d = Qcow2DirectoryDriver(str(root))
    d.create_volume(HEAD, 8 * MiB)
    return d


@pytest.fixture
def qemu_runs(monkeypatch):
    """The qemu-img subcommands run while the test runs, in order."""
    seen: list[str] = []
    real = process.run

    def counting(argv, *args, **kwargs):
        if os.path.basename(str(argv[0])) == "qemu-img":
            seen.append(str(argv[1]))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(process, "run", counting)
    return seen


def write(driver, name, byte, offset_mib, length_mib=1):
    qemu_io(driver.path(name), "qcow2", f"write -P {byte} {offset_mib * MiB} {length_mib * MiB}")


def reads(driver, name, byte, offset_mib, length_mib=1) -> bool:
    return pattern_matches(driver.path(name), "qcow2", offset_mib * MiB, length_mib * MiB, byte)


def backing_string(driver, name):
    return image_info(driver.path(name)).get("backing-filename")


def check_usage(driver, name) -> int:
    """Allocated data clusters x cluster size, by a plain `qemu-img check` of the file (chain opened)."""
    report = image_check(driver.path(name))
    return report.get("allocated-clusters", 0) * image_info(driver.path(name))["cluster-size"]


def image_check(path) -> dict:
    import json

    result = qemu_img("check", "-U", "-f", "qcow2", "--output=json", path, check=False)
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def test_a_snapshot_layer_is_named_beside_the_head(driver):
    assert driver.snapshot_name(HEAD, "s1") == new_layer("s1")
    # Not a name the head's partial writes could take (`.tmp-<v>.<tags>`).
    assert qemu.partial_target(f"volume/.tmp-{V}@s1.qcow2.op3-a1") == new_layer("s1")
    assert qemu.partial_target(f"volume/.tmp-{V}.op3-a1") == HEAD


def test_create_is_a_rename_and_one_qemu_img_run(driver, qemu_runs):
    write(driver, HEAD, 1, 0, 2)
    sizes = driver.snapshot_create(HEAD, new_layer("s1"))
    # No `info` of the layer, no `rebase -u`, no `check`: the overlay's create is the one qemu-img run.
    assert qemu_runs == ["create"]
    assert sizes == (check_usage(driver, new_layer("s1")), check_usage(driver, HEAD))
    assert sizes == (2 * MiB, 0)
    # The layer kept its own (empty) reference; the head names the layer by its bare name.
    assert backing_string(driver, new_layer("s1")) is None
    assert backing_string(driver, HEAD) == f"{V}@s1.qcow2"
    assert image_info(driver.path(HEAD))["virtual-size"] == 8 * MiB
    assert driver.head_snapshot(HEAD) == new_layer("s1")
    assert reads(driver, HEAD, 1, 0, 2) and reads(driver, HEAD, 0, 2, 6)

    qemu_runs.clear()
    write(driver, HEAD, 2, 2)
    assert driver.snapshot_create(HEAD, new_layer("s2")) == (MiB, 0)
    assert qemu_runs == ["create"]
    assert backing_string(driver, new_layer("s2")) == f"{V}@s1.qcow2"
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s2"), new_layer("s1")]
    assert reads(driver, HEAD, 1, 0, 2) and reads(driver, HEAD, 2, 2)
    assert qemu_img("check", "-f", "qcow2", driver.path(HEAD)).returncode == 0


def test_create_checks_the_fence_once_for_both_renames(driver):
    """The head becoming the layer and the overlay becoming the head are one publish: one lease check
    (a row lock held for both renames), not one more per rename."""
    checks: list[str] = []

    @contextlib.contextmanager
    def counting_guard():
        checks.append("check")
        yield

    write(driver, HEAD, 1, 0, 2)
    with fencing.installed(counting_guard, operation_id=7, attempt=1):
        assert driver.snapshot_create(HEAD, new_layer("s1")) == (2 * MiB, 0)
    assert checks == ["check"]
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s1")]
    # Outside the snapshot's publish every rename is still guarded on its own.
    with fencing.installed(counting_guard, operation_id=7, attempt=1):
        qemu.rename(driver.path(new_layer("s1")), driver.path(new_layer("moved")))
    assert checks == ["check", "check"]


def test_create_keeps_the_head_size_after_a_resize(driver):
    qemu_img("resize", "-q", "-f", "qcow2", driver.path(HEAD), str(24 * MiB + 512))
    write(driver, HEAD, 5, 20)
    driver.snapshot_create(HEAD, new_layer("s1"))
    assert image_info(driver.path(HEAD))["virtual-size"] == 24 * MiB + 512
    assert reads(driver, HEAD, 5, 20)


def test_create_resumes_from_every_step(driver, qemu_runs):
    write(driver, HEAD, 1, 0)
    # A crash after the rename: the next call publishes the overlay.
    os.rename(driver.path(HEAD), driver.path(new_layer("s1")))
    assert driver.snapshot_create(HEAD, new_layer("s1")) == (MiB, 0)
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s1")]
    # A crash after the overlay's publish: nothing left to do; the head found in place is measured.
    qemu_runs.clear()
    write(driver, HEAD, 2, 1)
    assert driver.snapshot_create(HEAD, new_layer("s1")) == (MiB, MiB)
    assert "create" not in qemu_runs
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)


def test_undo_puts_the_head_back(driver):
    write(driver, HEAD, 1, 0)
    driver.snapshot_create(HEAD, new_layer("s1"))
    write(driver, HEAD, 2, 1)
    driver.snapshot_create(HEAD, new_layer("s2"))
    driver.snapshot_create_undo(HEAD, new_layer("s2"))
    assert not driver.exists(new_layer("s2"))
    assert backing_string(driver, HEAD) == f"{V}@s1.qcow2"
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)
    # Stopped after the rename only.
    os.rename(driver.path(HEAD), driver.path(new_layer("s3")))
    driver.snapshot_create_undo(HEAD, new_layer("s3"))
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s1")]
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1)


def old_chain(driver) -> None:
    """A volume as the layout before left it: s1 (1 at 0M) <- s2 (2 at 1M) in snapshots/<v>/."""
    write(driver, HEAD, 1, 0)
    driver.snapshot_create(HEAD, old_layer("s1"))
    write(driver, HEAD, 2, 1)
    driver.snapshot_create(HEAD, old_layer("s2"))
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s2.qcow2"
    assert backing_string(driver, old_layer("s2")) == "s1.qcow2"


def test_new_layers_stack_on_a_pool_of_the_layout_before(driver, qemu_runs):
    old_chain(driver)
    assert driver.head_snapshot(HEAD) == old_layer("s2")
    write(driver, HEAD, 3, 2)
    qemu_runs.clear()
    driver.snapshot_create(HEAD, driver.snapshot_name(HEAD, "s3"))
    assert qemu_runs == ["create"]
    # The reference moved with the file inside volume/: still right, never rewritten.
    assert backing_string(driver, new_layer("s3")) == f"../snapshots/{V}/s2.qcow2"
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s3"), old_layer("s2"), old_layer("s1")]
    assert driver.head_snapshot(HEAD) == new_layer("s3")
    assert reads(driver, HEAD, 1, 0) and reads(driver, HEAD, 2, 1) and reads(driver, HEAD, 3, 2)
    # A create whose name the layout before chose (accepted before an upgrade) still finishes.
    write(driver, HEAD, 4, 3)
    driver.snapshot_create(HEAD, old_layer("s4"))
    assert backing_string(driver, old_layer("s4")) == f"../../volume/{V}@s3.qcow2"
    assert driver.head_snapshot(HEAD) == old_layer("s4")
    assert all(reads(driver, HEAD, b, b - 1) for b in (1, 2, 3, 4))


@pytest.mark.parametrize("strategy", [MERGE_REBASE, MERGE_COMMIT])
def test_merges_across_the_two_layouts(driver, strategy):
    old_chain(driver)
    write(driver, HEAD, 3, 2)
    driver.snapshot_create(HEAD, new_layer("s3"))
    write(driver, HEAD, 4, 3)
    # An old layer into a new one (a commit moves the file across directories and repoints it).
    driver._layer_merge(old_layer("s2"), new_layer("s3"), strategy, lambda *_: None)
    assert not driver.exists(old_layer("s2"))
    assert driver.backing_chain(HEAD) == [HEAD, new_layer("s3"), old_layer("s1")]
    assert backing_string(driver, new_layer("s3")) == f"../snapshots/{V}/s1.qcow2"
    # A new layer into the head (a commit renames inside volume/: nothing to repoint).
    driver._layer_merge(new_layer("s3"), HEAD, strategy, lambda *_: None)
    assert driver.backing_chain(HEAD) == [HEAD, old_layer("s1")]
    assert backing_string(driver, HEAD) == f"../snapshots/{V}/s1.qcow2"
    assert all(reads(driver, HEAD, b, b - 1) for b in (1, 2, 3, 4))
    assert reads(driver, old_layer("s1"), 1, 0) and reads(driver, old_layer("s1"), 0, 1, 7)


def test_rollback_onto_either_layout_reads_no_layer_metadata(driver, qemu_runs):
    old_chain(driver)
    write(driver, HEAD, 3, 2)
    driver.snapshot_create(HEAD, new_layer("s3"))
    for target, expected in ((old_layer("s1"), (1,)), (new_layer("s3"), (1, 2, 3))):
        qemu_runs.clear()
        driver._head_reset(HEAD, target)
        assert qemu_runs == ["create"]  # the size comes from the layer's header
        assert driver.backing_chain(HEAD)[1] == target
        assert all(reads(driver, HEAD, b, b - 1) for b in expected)
        assert image_info(driver.path(HEAD))["virtual-size"] == 8 * MiB


def test_partials_and_inventory_tell_layers_and_heads_apart(driver):
    old_chain(driver)
    driver.snapshot_create(HEAD, new_layer("s3"))
    layer_partial = driver.path(f"volume/.tmp-{V}@s3.qcow2.op7-a1.a1-1f2e3d4c")
    head_partial = driver.path(f"volume/.tmp-{V}.op7-a1")
    for path in (layer_partial, head_partial):
        with open(path, "wb") as f:
            f.write(b"x" * 512)
    listed = {o.name: o for o in driver.inventory()}
    assert listed[f"volume/.tmp-{V}@s3.qcow2.op7-a1.a1-1f2e3d4c"].partial_of == new_layer("s3")
    assert listed[f"volume/.tmp-{V}.op7-a1"].partial_of == HEAD
    assert listed[new_layer("s3")].backing == old_layer("s2")
    assert listed[HEAD].reads == (new_layer("s3"), old_layer("s2"), old_layer("s1"))
    assert listed[new_layer("s3")].allocated == check_usage(driver, new_layer("s3"))
    # The head's partials are its own: a layer's partial is not among them.
    assert driver.discard_partials(HEAD) == 1
    assert os.path.exists(layer_partial) and not os.path.exists(head_partial)
    assert driver.discard_partials(new_layer("s3")) == 1


def test_removing_layers_keeps_the_volume_directory_and_empties_the_old_one(driver):
    old_chain(driver)
    driver.snapshot_create(HEAD, new_layer("s3"))
    driver.delete_image(HEAD)
    for name in (new_layer("s3"), old_layer("s2"), old_layer("s1")):
        assert driver.delete_image(name)
    assert os.path.isdir(os.path.join(driver.root, "volume"))
    assert not os.path.exists(os.path.join(driver.root, "snapshots", V))
    assert driver.inventory() == []


@pytest.mark.parametrize("size", [MiB, 8 * MiB + 512, 1 << 30, 1 << 40])
def test_the_header_reader_agrees_with_qemu_img(tmp_path, size):
    path = str(tmp_path / "x.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", path, str(size))
    assert virtual_size(path) == image_info(path)["virtual-size"] == size
    header = read_header(path)
    assert header is not None and header.version == 3 and header.cluster_bits == 16


def test_the_header_reader_declines_what_it_does_not_know(tmp_path, driver):
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 4096)
    short = tmp_path / "short.qcow2"
    short.write_bytes(b"QFI\xfb\0\0\0\3")
    assert virtual_size(str(raw)) is None and virtual_size(str(short)) is None
    assert virtual_size(str(tmp_path / "missing")) is None
    # The driver then asks qemu-img, which reports what is wrong: nothing is published.
    os.makedirs(os.path.dirname(driver.path(new_layer("bad"))), exist_ok=True)
    os.replace(str(raw), driver.path(new_layer("bad")))
    with pytest.raises(errors.StorageError):
        driver._head_reset(HEAD, new_layer("bad"))
    assert reads(driver, HEAD, 0, 0, 8) and driver.backing_name(HEAD) is None


def qemu_check_bytes(path: str) -> int:
    """What `qemu-img check` of the one layer (backing closed) reports: allocated clusters x size."""
    import json

    result = qemu_img("check", "-U", "--output=json", qemu.single_layer(path), check=False)
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    return report.get("allocated-clusters", 0) * image_info(path)["cluster-size"]


IMAGES = {
    # name: (create options, size, qemu-io commands)
    "data, zeroes, discard": (
        [],
        "1G",
        ["write -P 1 0 3M", "write -z 8M 1M", "write -z 1M 64k", "discard 2M 128k", "write -P 2 100M 1000"],
    ),
    "v2, 4 KiB clusters": (
        ["-o", "compat=0.10,cluster_size=4096"],
        "100M",
        ["write -P 3 0 1M", "write -P 3 50M 10k"],
    ),
    "2 MiB clusters, unmapped zeroes": (
        ["-o", "cluster_size=2M"],
        "10G",
        ["write -P 1 0 5M", "write -z -u 0 2M"],
    ),
    "zstd, compressed clusters": (
        ["-o", "compression_type=zstd"],
        "1G",
        ["write -c -P 1 0 1M", "write -P 2 4M 1M"],
    ),
    "1 TiB, data spread": ([], "1T", [f"write -P 5 {i * 17}G 3M" for i in range(61)]),
    "empty": ([], "1G", []),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_allocated_bytes_equal_qemu_img_check(tmp_path, case):
    options, size, commands = IMAGES[case]
    path = str(tmp_path / "x.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", *options, path, size)
    if commands:
        qemu_io(path, "qcow2", *commands)
    assert allocated_bytes(path) == qemu_check_bytes(path)
    # An overlay on it: zeroes over data, data written then discarded, one new cluster.
    top = str(tmp_path / "top.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", path, "-F", "qcow2", top, size)
    qemu_io(top, "qcow2", "write -z 0 1M", "write -P 4 5M 64k", "discard 5M 64k", "write -P 6 9M 4k")
    assert allocated_bytes(top) == qemu_check_bytes(top)


def test_allocated_bytes_of_a_compressed_copy(tmp_path):
    source, packed = str(tmp_path / "s.qcow2"), str(tmp_path / "c.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", source, "64M")
    qemu_io(source, "qcow2", "write -P 7 0 3M", "write -P 8 40M 200k")
    qemu_img("convert", "-c", "-O", "qcow2", source, packed)
    assert allocated_bytes(packed) == qemu_check_bytes(packed) > 0


def test_allocated_bytes_leave_what_they_do_not_know_to_qemu_img(tmp_path, driver):
    extended = str(tmp_path / "x.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", extended, "1G")
    qemu_io(extended, "qcow2", "write -P 1 0 1M")
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 4096)
    assert allocated_bytes(extended) is None and allocated_bytes(str(raw)) is None
    # The driver then asks qemu-img: the same figure.
    os.replace(extended, driver.path(new_layer("x")))
    assert driver.usage(new_layer("x")) == qemu_check_bytes(driver.path(new_layer("x"))) == MiB
