"""The fixed part of a qcow2 header, read by the driver itself (no qemu-img run): a layer's virtual size.

A snapshot create and a rollback need only the virtual size of the layer a new overlay sits on, and
the header holds it at a fixed offset (qcow2 spec, docs/interop/qcow2.txt: big-endian `size` at byte
24). One `pread` of the first bytes costs microseconds where `qemu-img info` costs a process start.
Anything this reader does not recognise as a plain qcow2 header (another magic, an unknown version, a
short file) answers None, and the caller asks qemu-img instead, which also reports the error.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

MAGIC = b"QFI\xfb"
# magic, version, backing_file_offset, backing_file_size, cluster_bits, size, crypt_method, l1_size,
# l1_table_offset, refcount_table_offset, refcount_table_clusters, nb_snapshots, snapshots_offset
_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
# version 3 goes on: incompatible, compatible and autoclear features, refcount_order, header_length
_V3 = struct.Struct(">QQQII")


@dataclass(frozen=True)
class Header:
    version: int
    cluster_bits: int
    virtual_size: int
    crypt_method: int
    incompatible_features: int


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
    magic, version, _bo, _bs, cluster_bits, size, crypt, *_rest = _V2.unpack_from(raw)
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
    )


def virtual_size(path: str) -> int | None:
    """The virtual size the qcow2 header at `path` records, or None (not a header this reader knows)."""
    header = read_header(path)
    return None if header is None else header.virtual_size
