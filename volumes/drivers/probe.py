"""What an import source holds, decided from its bytes by us (never by qemu's probe).

Only two formats import faithfully: qcow2 (a standalone image, vetted further by the driver) and raw
(a disk's bytes as they are). Everything else that qemu could read as a disk, and every text file, is
refused: copying it as raw bytes would make a volume that holds the container, the descriptor or the
text, not the disk it describes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

QCOW2_MAGIC = b"QFI\xfb"
# How much of the head the magic checks read (the tar magic sits at 257, VDI's at 64).
HEAD_BYTES = 4096


@dataclass(frozen=True)
class Refused:
    """A format that cannot be imported faithfully: its name in English and Chinese."""

    name: str
    name_cn: str


# One format a line: offset | magic (Python escapes) | English name | Chinese name. A negative offset
# is counted from the end of the file (VHD's fixed footer, DMG's trailer).
_TABLE = r"""
0    | KDMV                      | VMDK (sparse)      | VMDK（稀疏）
0    | COWD                      | VMDK (ESX sparse)  | VMDK（ESX 稀疏）
0    | # Disk DescriptorFile     | VMDK descriptor    | VMDK 描述符文件
0    | vhdxfile                  | VHDX               | VHDX
0    | conectix                  | VHD (dynamic)      | VHD（动态）
-512 | conectix                  | VHD (fixed)        | VHD（固定）
64   | \x7f\x10\xda\xbe          | VDI                | VDI
0    | QED\x00                   | QED                | QED
0    | LUKS\xba\xbe               | LUKS (encrypted)   | LUKS（加密）
0    | WithoutFreeSpace          | Parallels          | Parallels
0    | WithouFreSpacExt          | Parallels          | Parallels
0    | Bochs Virtual HD Image    | Bochs              | Bochs
0    | #!/bin/sh\n#V2.0 Format   | cloop              | cloop
-512 | koly                      | DMG                | DMG
257  | ustar                     | tar archive (OVA)  | tar 归档（OVA）
"""


def _parse(table: str) -> list[tuple[int, bytes, Refused]]:
    rows = []
    for line in table.strip().splitlines():
        offset, magic, name, name_cn = (cell.strip() for cell in line.split("|"))
        rows.append(
            (
                int(offset),
                magic.encode("latin-1").decode("unicode_escape").encode("latin-1"),
                Refused(name, name_cn),
            )
        )
    return rows


_MAGICS = _parse(_TABLE)

TEXT = Refused(
    "a text file (a descriptor or a list, not a disk image)", "文本文件（描述文件或清单，而非磁盘镜像）"
)


def _is_text(head: bytes) -> bool:
    """Text: lines (a newline and something else than whitespace), no NUL byte, valid UTF-8, only
    printable characters or whitespace. A raw disk's first sector holds zeros or boot code, and a
    sector filled with one byte has no lines: neither passes."""
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The read may cut a multi-byte character at its end.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    if "\n" not in text or not text.strip():
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


def sniff(fd: int, size: int) -> str | Refused:
    """'qcow2', 'raw', or why the source is refused, from the head (and tail) of the open file `fd`."""
    head = os.pread(fd, HEAD_BYTES, 0)
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    tail = os.pread(fd, 512, size - 512) if size >= 1024 else b""
    for offset, magic, refused in _MAGICS:
        data = tail if offset < 0 else head[offset:]
        if data.startswith(magic):
            return refused
    if _is_text(head):
        return TEXT
    return "raw"
