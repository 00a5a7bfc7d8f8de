"""Import sources that are not regular files, or not a format that imports faithfully: refused in the
request with a clear scode, before any blocking open, and nothing is created (no row, operation, file)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tarfile

import pytest

from tests.api.test_volume_bad_input import MISSING, create_body, snapshot_of_storage
from tests.helpers import assert_error, qemu_img


@contextlib.contextmanager
def hang_guard(seconds: int = 20):
    """Turn a hang (a blocking open of a FIFO) into a failure instead of a stuck suite."""

    def expired(signum, frame):
        raise TimeoutError(f"the request did not answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def post_import(api, path):
    with hang_guard():
        return api.post("create", create_body(volume_name="imp", capacity=MISSING, backing_file=str(path)))


def test_a_fifo_is_refused_without_waiting_for_a_writer(api, data_dir, import_root):
    fifo = import_root / "pipe.raw"
    os.mkfifo(fifo)
    before = snapshot_of_storage(data_dir)
    status, body = post_import(api, fifo)
    assert_error(status, body, 422, 1010)
    assert "not a regular file (a FIFO)" in body["message"]
    assert snapshot_of_storage(data_dir) == before


def test_a_socket_is_refused(api, data_dir, import_root):
    path = import_root / "s.raw"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        before = snapshot_of_storage(data_dir)
        status, body = post_import(api, path)
    assert_error(status, body, 422, 1010)
    assert "not a regular file" in body["message"]
    assert snapshot_of_storage(data_dir) == before


def _qemu_image(fmt: str, *options: str):
    def make(path):
        qemu_img("create", "-q", "-f", fmt, *options, str(path), "4M")

    return make


def _text(content: str):
    def make(path):
        path.write_text(content)

    return make


def _tar(path):
    disk = path.parent / "inner.raw"
    qemu_img("create", "-q", "-f", "raw", str(disk), "1M")
    with tarfile.open(path, "w") as archive:
        archive.add(disk, arcname="disk.raw")
    disk.unlink()


VMDK_DESCRIPTOR = (
    '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
    'RW 8 FLAT "/etc/passwd" 0\n'
)

UNFAITHFUL = [
    ("vmdk sparse", _qemu_image("vmdk"), "VMDK (sparse)"),
    ("vmdk descriptor naming a host file", _text(VMDK_DESCRIPTOR), "VMDK descriptor"),
    ("vmdk descriptor after a blank line", _text("\n" + VMDK_DESCRIPTOR), "a text file"),
    ("vhdx", _qemu_image("vhdx"), "VHDX"),
    ("vhd dynamic", _qemu_image("vpc"), "VHD (dynamic)"),
    ("vhd fixed", _qemu_image("vpc", "-o", "subformat=fixed"), "VHD (fixed)"),
    ("vdi", _qemu_image("vdi"), "VDI"),
    ("qed", _qemu_image("qed"), "QED"),
    ("parallels", _qemu_image("parallels"), "Parallels"),
    ("tar archive (ova)", _tar, "tar archive"),
    ("plain text", _text("just some words\nin a file\n"), "a text file"),
]


@pytest.mark.parametrize("label,make,name", UNFAITHFUL, ids=[c[0] for c in UNFAITHFUL])
def test_formats_that_cannot_be_imported_faithfully_are_refused(
    api, data_dir, import_root, label, make, name
):
    source = import_root / "source.img"
    make(source)
    before = snapshot_of_storage(data_dir)
    status, body = post_import(api, source)
    assert_error(status, body, 422, 1016)
    assert name in body["message"], body["message"]
    assert snapshot_of_storage(data_dir) == before


def test_a_raw_disk_filled_with_a_printable_byte_is_still_raw(api, import_root):
    source = import_root / "pattern.raw"
    source.write_bytes(b"Z" * (1 << 20))
    status, body = post_import(api, source)
    assert (status, body["scode"]) == (200, 0), body
    target = next(iter(body["data"]["volume"]["AccessPath"].values()))
    assert qemu_img("compare", "-f", "raw", "-F", "qcow2", str(source), target).returncode == 0
