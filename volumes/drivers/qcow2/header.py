"""What the driver reads from a qcow2 file itself (no qemu-img run): its virtual size and its usage.

A snapshot create and a rollback need only the virtual size of the layer a new overlay sits on, and
the header holds it at a fixed offset (qcow2 spec, docs/interop/qcow2.txt: big-endian `size` at byte
24). One `pread` of the first bytes costs microseconds where `qemu-img info` costs a process start.

A layer's usage (Used, a snapshot's Size) is its allocated data clusters x cluster size: the figure
`qemu-img check` reports as `allocated-clusters`, which it counts from the active L2 tables
(qemu 7.2 block/qcow2-refcount.c, check_refcounts_l2: every L2 entry that is compressed or carries a
host offset, i.e. normal and zero-allocated clusters; unallocated and plain zero clusters are not
counted). `allocated_bytes` counts the same entries the same way from the L1 table and the L2 tables
it points to: a few reads of one file, never its backing file (tests/drivers/test_qcow2_layout.py
compares it with `qemu-img check` on written, zeroed, discarded, compressed, v2 and 1 TiB images).

Anything this reader does not recognise as a plain qcow2 (another magic, an unknown version, a short
file, an incompatible feature other than the compression type: dirty, corrupt, external data file,
extended L2 entries; encryption; a table outside the file) answers None, and the caller asks qemu-img
instead, which also reports the error.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache

MAGIC = b"QFI\xfb"
# magic, version, backing_file_offset, backing_file_size, cluster_bits, size, crypt_method, l1_size,
# l1_table_offset, refcount_table_offset, refcount_table_clusters, nb_snapshots, snapshots_offset
_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
# version 3 goes on: incompatible, compatible and autoclear features, refcount_order, header_length
_V3 = struct.Struct(">QQQII")


# Incompatible feature bits this reader accepts: only the compression type (bit 3), which changes how
# compressed clusters are encoded, not how L2 entries say a cluster is allocated.
_KNOWN_INCOMPATIBLE = 1 << 3
# Bits of an L2 entry that make `qemu-img check` count it: the compressed flag (62) and the host
# offset (bits 9-55). As bytes of a big-endian entry: 40 ff ff ff ff ff fe 00.
_L2_COUNTED = bytes.fromhex("40fffffffffffe00")
_L1_OFFSET = 0x00FFFFFFFFFFFE00
_MAX_L1_ENTRIES = 32 * 1024 * 1024 // 8  # qemu's own limit on an L1 table (QCOW_MAX_L1_SIZE)


@dataclass(frozen=True)
class Header:
    version: int
    cluster_bits: int
    virtual_size: int
    crypt_method: int
    incompatible_features: int
    l1_size: int = 0
    l1_table_offset: int = 0


def read_header(path: str) -> Header | None:
    """The header of the qcow2 file at `path`, or None when it is not one this reader knows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.pread(fd, _V2.size + _V3.size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) < _V2.size:
        return None
    magic, version, _bo, _bs, cluster_bits, size, crypt, l1_size, l1_offset, *_rest = _V2.unpack_from(raw)
    if magic != MAGIC or version not in (2, 3) or not 9 <= cluster_bits <= 21:
        return None
    incompatible = 0
    if version == 3:
        if len(raw) < _V2.size + _V3.size:
            return None
        incompatible = _V3.unpack_from(raw, _V2.size)[0]
    return Header(
        version=version,
        cluster_bits=cluster_bits,
        virtual_size=size,
        crypt_method=crypt,
        incompatible_features=incompatible,
        l1_size=l1_size,
        l1_table_offset=l1_offset,
    )


def virtual_size(path: str) -> int | None:
    """The virtual size the qcow2 header at `path` records, or None (not a header this reader knows)."""
    header = read_header(path)
    return None if header is None else header.virtual_size


@lru_cache(maxsize=8)
def _l2_mask(table_bytes: int) -> int:
    return int.from_bytes(_L2_COUNTED * (table_bytes // 8), "big")


def _entries(raw: bytes) -> array:
    table = array("Q", raw)
    if table.itemsize != 8:  # pragma: no cover - every platform qemu runs on has 8-byte Q
        raise OSError("no 64-bit array type")
    return table


def allocated_bytes(path: str) -> int | None:
    """Allocated data clusters x cluster size of the qcow2 layer at `path` alone, as `qemu-img check`
    counts them; None when the file is not one this reader knows (the caller asks qemu-img)."""
    header = read_header(path)
    if header is None or header.crypt_method or header.incompatible_features & ~_KNOWN_INCOMPATIBLE:
        return None
    cluster = 1 << header.cluster_bits
    if header.l1_size > _MAX_L1_ENTRIES or header.l1_table_offset % cluster:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        end = os.fstat(fd).st_size
        l1_bytes = header.l1_size * 8
        if header.l1_table_offset + l1_bytes > end:
            return None
        raw = os.pread(fd, l1_bytes, header.l1_table_offset) if l1_bytes else b""
        if len(raw) != l1_bytes:
            return None
        l1 = _entries(raw)
        if sys.byteorder == "little":
            l1.byteswap()  # big-endian on disk
        mask = _l2_mask(cluster)
        counted = 0
        for entry in l1:
            offset = entry & _L1_OFFSET
            if not offset:
                continue
            if offset % cluster or offset + cluster > end:
                return None  # not a table this reader can vouch for: qemu-img check reports it
            table = os.pread(fd, cluster, offset)
            if len(table) != cluster:
                return None
            # Keep only the counted bits of every entry; an entry that is then zero is not counted.
            kept = (int.from_bytes(table, "big") & mask).to_bytes(cluster, "big")
            counted += cluster // 8 - _entries(kept).count(0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return counted * cluster
