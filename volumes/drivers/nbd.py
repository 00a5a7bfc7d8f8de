"""Reading byte ranges of an image's guest-visible content: `qemu-img map` and a read-only `qemu-nbd`.

Part of the storage engine (only engine modules start programs). `serve(path)` starts
`qemu-nbd -r` on a private unix socket and yields an `NbdClient`, a minimal pure-Python NBD client
(fixed-newstyle handshake, NBD_OPT_EXPORT_NAME, simple replies, NBD_CMD_READ and NBD_CMD_DISC).

Why not the alternatives: the Python `nbd` bindings (python3-libnbd) are not installed here and
not on PyPI as a wheel; `nbdcopy` streams whole images only, and one `nbdcopy` or `qemu-io` per
range costs a process start per chunk. The protocol subset needed for reads is about 60 lines
and needs nothing beyond qemu-utils, which the service requires anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings

from sharestore import errors
from volumes.drivers import process, qemu

MAP_TIMEOUT = 600
START_TIMEOUT = 30
IO_TIMEOUT = 300
# qemu-nbd refuses requests above 32 MiB (NBD_MAX_BUFFER_SIZE); reads are split below that.
MAX_READ = 32 << 20

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = 0x49484156454F5054
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
OPT_EXPORT_NAME = 1
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
CMD_READ = 0
CMD_DISC = 2


def qemu_img() -> str:
    return settings.SHARESTORE_QEMU_IMG


def qemu_nbd() -> str:
    """The qemu-nbd binary (SHARESTORE_QEMU_NBD, default `qemu-nbd`)."""
    return getattr(settings, "SHARESTORE_QEMU_NBD", "qemu-nbd")


@dataclass(frozen=True)
class Extent:
    """One run of `qemu-img map --output=json`: where guest bytes come from."""

    start: int
    length: int
    present: bool
    zero: bool
    data: bool
    depth: int

    @property
    def end(self) -> int:
        return self.start + self.length


def _layer_only_name(path: str) -> str:
    # A `json:` name with `"backing": null` opens this qcow2 file alone: its map shows what this
    # layer allocates (`present`), never what its backing files hold, and opens none of them.
    spec = {"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": os.path.abspath(path)}}
    return "json:" + json.dumps(spec, separators=(",", ":"))


def image_map(path: str, *, layer_only: bool = False) -> list[Extent]:
    """The extents of a qcow2 image (through its backing chain, or of its own layer with `layer_only`)."""
    if layer_only:
        argv = [qemu_img(), "map", "--output=json", _layer_only_name(path)]
    else:
        # An encrypted backup file (inside `qemu.encrypted_files`) is named with its key secret.
        name = qemu.open_name(os.path.abspath(path))
        argv = [qemu_img(), "map", *qemu.secret_objects(path), "--output=json", "-f", "qcow2", name]
    result = process.run(argv, timeout=MAP_TIMEOUT)
    return [
        Extent(
            start=int(e["start"]),
            length=int(e["length"]),
            # qemu 7.2 always reports `present`; without it, count anything not a hole as present.
            present=bool(e.get("present", e.get("data") or not e.get("zero"))),
            zero=bool(e.get("zero")),
            data=bool(e.get("data")),
            depth=int(e.get("depth", 0)),
        )
        for e in json.loads(result.stdout)
    ]


class NbdError(errors.StorageError):
    """The NBD server answered something this client does not understand, or an error."""


class NbdClient:
    """Reads from one export of an NBD server over a connected socket (simple replies, a few in flight)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.size = 0
        self._handle = 0

    def _recv_exact(self, count: int) -> bytes:
        buffer = bytearray(count)
        view = memoryview(buffer)
        got = 0
        while got < count:
            try:
                n = self.sock.recv_into(view[got:], count - got)
            except OSError as exc:  # a timeout too: the server hung
                raise NbdError(reason=f"reading from the NBD server failed: {exc}") from exc
            if n == 0:
                raise NbdError(reason=f"NBD server closed the connection ({got} of {count} bytes)")
            got += n
        return bytes(buffer) if count < 4096 else buffer

    def handshake(self, export: str = "") -> None:
        """Fixed-newstyle negotiation ending in NBD_OPT_EXPORT_NAME; sets `size`."""
        magic, opt_magic, flags = struct.unpack(">8sQH", self._recv_exact(18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT or not flags & FLAG_FIXED_NEWSTYLE:
            raise NbdError(reason="not a fixed-newstyle NBD server")
        client_flags = FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)
        name = export.encode()
        self.sock.sendall(struct.pack(">IQII", client_flags, IHAVEOPT, OPT_EXPORT_NAME, len(name)) + name)
        self.size, _transmission_flags = struct.unpack(">QH", self._recv_exact(10))
        if not flags & FLAG_NO_ZEROES:
            self._recv_exact(124)

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise NbdError(
                reason=f"read of {length} bytes at {offset} is outside the {self.size}-byte export"
            )

    def _send_read(self, offset: int, length: int) -> int:
        self._handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, self._handle, offset, length))
        return self._handle

    def _reply(self, pending: dict[int, tuple[int, int]]) -> tuple[int, bytes | bytearray]:
        """One simple reply: (offset, data) of the request it answers (qemu-nbd may answer out of order)."""
        magic, error, handle = struct.unpack(">IIQ", self._recv_exact(16))
        if magic != SIMPLE_REPLY_MAGIC or handle not in pending:
            raise NbdError(reason=f"unexpected NBD reply (magic {magic:#x}, handle {handle})")
        offset, length = pending.pop(handle)
        if error:
            raise NbdError(reason=f"NBD read of {length} bytes at {offset} failed: error {error}")
        return offset, self._recv_exact(length)

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """`length` bytes at `offset` of the export."""
        parts = dict(
            self.read_many([(offset + d, min(MAX_READ, length - d)) for d in range(0, length, MAX_READ)])
        )
        if len(parts) == 1:
            return parts[offset]
        return b"".join(parts[k] for k in sorted(parts))

    def read_many(self, ranges, *, window: int = 4) -> Iterator[tuple[int, bytes | bytearray]]:
        """Yield (offset, data) for each (offset, length) range, in completion order.

        Up to `window` requests are in flight, so qemu-nbd reads the next ranges while the caller
        hashes the last one (hashlib releases the GIL on large buffers).
        """
        pending: dict[int, tuple[int, int]] = {}
        for offset, length in ranges:
            self._check_range(offset, length)
            if length > MAX_READ:
                raise NbdError(reason=f"read of {length} bytes exceeds {MAX_READ}")
            pending[self._send_read(offset, length)] = (offset, length)
            if len(pending) >= window:
                yield self._reply(pending)
        while pending:
            yield self._reply(pending)

    def disconnect(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))


@contextlib.contextmanager
def serve(path: str, *, fmt: str = "qcow2") -> Iterator[NbdClient]:
    """Serve the image (read-only, with its backing chain) on a private socket; yield a connected client.

    qemu-nbd exits by itself once its one client disconnects; it is killed if it outlives the block.
    """
    workdir = tempfile.mkdtemp(prefix="sharestore-nbd-")
    sock_path = os.path.join(workdir, "s")
    # A protocol name (an RBD driver's `rbd:pool/image@snap:conf=…`) is passed as it is.
    target = path if path.startswith("rbd:") else os.path.abspath(path)
    name = qemu.open_name(target, fmt)
    argv = [qemu_nbd(), "-r", *qemu.secret_objects(path), "-f", fmt, "-k", sock_path, name]
    err_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after the server
    try:
        proc = process.spawn(argv, stdout=subprocess.DEVNULL, stderr=err_file)
    except errors.StorageError:
        err_file.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def stderr() -> str:
        err_file.seek(0)
        return err_file.read().decode("utf-8", "replace").strip()[-4000:]

    sock = None
    client = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # qemu-nbd creates the socket once the image is open: poll for it rather than `--fork`, which
        # would hide the server's pid and so its exit status.
        while True:
            if proc.poll() is not None:
                raise process.CommandFailed(process.CommandResult(tuple(argv), proc.returncode, "", stderr()))
            if os.path.exists(sock_path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(sock_path)
                    break
                except OSError:
                    sock.close()
                    sock = None
            if time.monotonic() > deadline:
                raise errors.StorageTimeout(seconds=START_TIMEOUT, command=f"qemu-nbd {path}")
            time.sleep(0.01)
        sock.settimeout(IO_TIMEOUT)
        client = NbdClient(sock)
        try:
            client.handshake()
        except NbdError as exc:
            exc.desc = stderr() or exc.desc
            raise
        yield client
    finally:
        if client is not None:
            client.disconnect()
        if sock is not None:
            sock.close()
        if client is None and proc.poll() is None:
            proc.kill()  # never connected: nothing will make it exit by itself
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err_file.close()
        shutil.rmtree(workdir, ignore_errors=True)
