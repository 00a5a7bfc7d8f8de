"""The engine's range reader: `qemu-img map` of a chain or of one layer, and reads through `qemu-nbd`
with the pure-Python NBD client, on real images."""

from __future__ import annotations

import pytest

from sharestore import errors
from tests.helpers import qemu_img, qemu_io
from volumes.drivers import nbd

MiB = 1 << 20


@pytest.fixture
def overlay(tmp_path) -> str:
    """base.qcow2 (8 MiB of 1s) under top.qcow2 (64 KiB of 2s at 1 MiB, 128 KiB zeroed at 4 MiB)."""
    base, top = str(tmp_path / "base.qcow2"), str(tmp_path / "top.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", base, str(64 * MiB))
    qemu_io(base, "qcow2", f"write -P 1 0 {8 * MiB}")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, str(64 * MiB))
    qemu_io(top, "qcow2", f"write -P 2 {1 * MiB} 64k", f"write -z {4 * MiB} 128k")
    return top


def test_map_of_one_layer_shows_only_what_it_allocates(overlay):
    present = [(e.start, e.length, e.data) for e in nbd.image_map(overlay, layer_only=True) if e.present]
    assert present == [(1 * MiB, 64 * 1024, True), (4 * MiB, 128 * 1024, False)]
    chain = nbd.image_map(overlay)
    assert chain[-1].end == 64 * MiB
    assert {e.depth for e in chain if e.data} == {0, 1}


def test_reads_see_the_chain(overlay):
    with nbd.serve(overlay) as client:
        assert client.size == 64 * MiB
        assert client.read(1 * MiB - 2, 4) == b"\x01\x01\x02\x02"
        assert client.read(4 * MiB, 128 * 1024) == bytes(128 * 1024)
        assert len(client.read(0, 40 * MiB)) == 40 * MiB  # split below qemu-nbd's 32 MiB limit
        got = dict(client.read_many([(i * MiB, MiB) for i in range(10)]))
        assert sorted(got) == [i * MiB for i in range(10)]
        assert got[9 * MiB] == bytes(MiB) and got[0] == b"\x01" * MiB
        with pytest.raises(nbd.NbdError):
            client.read(64 * MiB - 1, 2)


def test_a_server_that_cannot_open_the_image_fails_with_its_stderr(tmp_path):
    with pytest.raises(errors.StorageError) as raised, nbd.serve(str(tmp_path / "missing.qcow2")):
        pass
    assert "missing.qcow2" in raised.value.desc
