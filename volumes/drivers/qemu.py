"""The qemu-img / qemu-io layer: the one place that builds their argv, on top of `process.run`.

Every command names its formats explicitly (`-f`, `-F`, `-O`): probing is fooled by hostile images.
Metadata reads are plain `info` (never `--backing-chain`, which opens every layer and follows
network backings); a chain is read one layer at a time by `walk_chain`, the one walker, under one
limit. Timeouts come from `timeout()`, one setting. Files appear under their final name only once
complete: `publishing()` writes a temporary sibling, fsyncs it, renames it and fsyncs the directory.
Temporary names carry the attempt's tag (`tmp_sibling`), and every partial write is recognised by
`partial_target`; those live in `files.py` (no program runs there) and are named here as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from sharestore import errors
from sharestore.core import fencing
from volumes.drivers import process

# Publishing (files.py) is named here too: drivers and backups reach the whole engine through `qemu`.
from volumes.drivers.files import (  # noqa: F401
    TMP_PREFIX,
    discard_partials,
    fsync_parent,
    fsync_path,
    partial_target,
    partials_of,
    publish,
    publishing,
    rename,
    tmp_sibling,
    unlink,
)

DEFAULT_TIMEOUTS = {
    "inspect": 120,  # info, one layer's check, measure, map: metadata reads
    "metadata": 120,  # create, resize, rebase -u: metadata writes
    "check": 3600,  # a whole-image check of an untrusted or backup file (1 TiB mapped: ~2 s here)
    "copy": 24 * 3600,  # convert, safe rebase, commit, compare: proportional to data
}
# Metadata reads of an untrusted image run under this address-space limit, as Cinder does.
DEFAULT_INSPECT_ADDRESS_SPACE = 1 << 30
# A chain deeper than this is refused wherever it is walked (snapshot layers, linked clones of
# clones, incremental backups). It bounds the cost of a walk, not what the service allows:
# SHARESTORE_SNAPSHOT_MAX_DEPTH is far lower.
DEFAULT_CHAIN_LIMIT = 4096

Progress = Callable[[float], None]
CommandFailed = process.CommandFailed


# -- configuration -------------------------------------------------------------------------------


def qemu_img() -> str:
    return settings.SHARESTORE_QEMU_IMG


def qemu_io() -> str:
    return getattr(settings, "SHARESTORE_QEMU_IO", "qemu-io")


def timeout(kind: str) -> float:
    """Seconds a command of `kind` (inspect, metadata, check, copy) may run: SHARESTORE_QEMU_TIMEOUTS."""
    overrides = getattr(settings, "SHARESTORE_QEMU_TIMEOUTS", None) or {}
    return float(overrides.get(kind, DEFAULT_TIMEOUTS[kind]))


def inspect_address_space() -> int:
    return int(getattr(settings, "SHARESTORE_QEMU_INSPECT_ADDRESS_SPACE", DEFAULT_INSPECT_ADDRESS_SPACE))


def chain_limit() -> int:
    return int(getattr(settings, "SHARESTORE_BACKING_CHAIN_LIMIT", DEFAULT_CHAIN_LIMIT))


def _run(argv: list, kind: str, **kwargs) -> process.CommandResult:
    # A copy stops when its operation is cancelled (the runner's cancel event); metadata steps, which
    # may come after a publish, always finish.
    cancel = fencing.cancel_event() if kind == "copy" else None
    if cancel is not None:
        kwargs["cancel"] = cancel
    # Looked up at call time: tests inject faults by replacing `process.run`.
    return process.run(argv, timeout=timeout(kind), **kwargs)


def _json(result: process.CommandResult) -> dict | list:
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise errors.StorageError(
            reason=f"{os.path.basename(result.argv[0])} {result.argv[1]} printed no JSON",
            desc=result.stdout[-2000:],
        ) from exc


def single_layer(path: str, fmt: str = "qcow2") -> str:
    """A `json:` image name that opens `path` alone: qemu-img does not open its backing file."""
    spec = {"driver": fmt, "file": {"driver": "file", "filename": os.path.abspath(path)}}
    if fmt == "qcow2":
        spec["backing"] = None
    return "json:" + json.dumps(spec, separators=(",", ":"))


# -- encrypted images (LUKS in qcow2) ------------------------------------------------------------
# The files of an encrypted backup are named for one `with encrypted_files(...)` block: inside it,
# every command that opens one of them names it by a `json:` spec carrying `encrypt.key-secret`, and
# gets the password as a qemu `secret` object read from a 0600 file in a private 0700 directory;
# `convert` into one of them writes it LUKS-encrypted. The password itself never appears in an argv
# (only the secret file's path does), nor in a log line or an error (stderr names the file, not its
# content).

SECRET_ID = "sharestore-key"


@dataclass(frozen=True)
class _Encrypted:
    """Which files are encrypted, and the file holding their password, for the current block."""

    files: frozenset[str]
    secret_path: str


_ENCRYPTED: ContextVar[_Encrypted | None] = ContextVar("sharestore_qemu_encrypted", default=None)


@contextlib.contextmanager
def encrypted_files(paths: Iterable[str], password: str) -> Iterator[None]:
    """Within the block, `paths` are LUKS-encrypted qcow2 images with this password (read or written)."""
    if not password or "\x00" in password:
        raise errors.StorageError(reason="an encryption password must be a non-empty string")
    directory = tempfile.mkdtemp(prefix="sharestore-secret-")  # mode 0700
    secret_path = os.path.join(directory, "key")
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, password.encode("utf-8"))
    finally:
        os.close(fd)
    token = _ENCRYPTED.set(_Encrypted(frozenset(os.path.abspath(p) for p in paths), secret_path))
    try:
        yield
    finally:
        _ENCRYPTED.reset(token)
        shutil.rmtree(directory, ignore_errors=True)


def luks_iter_ms() -> int:
    """Milliseconds of PBKDF2 the LUKS header is calibrated to, paid again by every open of the file:
    qemu's 2,000 by default; the test settings lower it (a brute-force cost, not a correctness one)."""
    return settings.SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS


def _encrypted(path: str) -> _Encrypted | None:
    scope = _ENCRYPTED.get()
    if scope is None or path.startswith("json:") or os.path.abspath(path) not in scope.files:
        return None
    return scope


def is_encrypted(path: str) -> bool:
    """Whether `path` is one of the encrypted files of the current `encrypted_files` block."""
    return _encrypted(path) is not None


def open_name(path: str, fmt: str = "qcow2") -> str:
    """How a command names `path` to open it: as is, or a `json:` spec with its key secret."""
    if _encrypted(path) is None:
        return path
    spec = {"driver": fmt, "file": {"driver": "file", "filename": os.path.abspath(path)}}
    spec["encrypt.key-secret"] = SECRET_ID
    return "json:" + json.dumps(spec, separators=(",", ":"))


def secret_objects(*paths: str) -> list[str]:
    """The `--object secret,...` arguments a command opening or writing `paths` needs (or none)."""
    for path in paths:
        scope = _encrypted(path)
        if scope is not None:
            # qemu's option syntax escapes a comma by doubling it.
            return [
                "--object",
                f"secret,id={SECRET_ID},format=raw,file={scope.secret_path.replace(',', ',,')}",
            ]
    return []


# -- reading images -------------------------------------------------------------------------------


def info(path: str, *, fmt: str = "qcow2", pass_fds: Sequence[int] = (), untrusted: bool = False) -> dict:
    """Plain `info -U` of one image: never opens its backing file (a data-file, though, is opened)."""
    result = _run(
        [qemu_img(), "info", "-U", "-f", fmt, "--output=json", path],
        "inspect",
        pass_fds=pass_fds,
        address_space=inspect_address_space() if untrusted else None,
    )
    return _json(result)


def check(
    path: str,
    *,
    fmt: str = "qcow2",
    ok_codes: Sequence[int] = (0,),
    kind: str = "check",
    pass_fds: Sequence[int] = (),
    untrusted: bool = False,
) -> dict:
    """`check -U` report plus `exit` (0 ok, 1 not checked, 2 corrupt, 3 leaks); raises unless in ok_codes."""
    argv = [qemu_img(), "check", "-U", *secret_objects(path), "--output=json", open_name(path, fmt)]
    if not path.startswith("json:"):
        argv[3:3] = ["-f", fmt]
    result = _run(
        argv,
        kind,
        ok_codes=ok_codes,
        pass_fds=pass_fds,
        address_space=inspect_address_space() if untrusted else None,
    )
    try:
        report = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        report = {}
    report["exit"] = result.returncode
    if result.returncode and result.stderr.strip():
        report["stderr"] = result.stderr.strip()[-2000:]
    return report


def layer_allocated(path: str) -> int:
    """Bytes of data clusters allocated in this qcow2 layer alone; its backing files are never opened.

    qemu-img 7.2's `info` has no such figure. `check` over a `json:` name with `"backing": null` reads
    only this file's metadata: ~7 ms at any chain depth here, where a plain `check` opens every layer
    (44 ms at depth 60) and `map` of the same single layer costs 2-6x as much on a 1 TiB layer.
    """
    report = check(single_layer(path), ok_codes=(0, 3), kind="inspect")  # 3: leaks, harmless to count
    return int(report.get("allocated-clusters", 0)) * int(report.get("cluster-size", 65536))


def measure(
    path: str,
    *,
    fmt: str = "qcow2",
    out_fmt: str = "qcow2",
    pass_fds: Sequence[int] = (),
    untrusted: bool = False,
) -> dict:
    """Space a flattened copy of `path` (whole chain) needs as `out_fmt`: `required`, `fully-allocated`."""
    result = _run(
        [qemu_img(), "measure", "-f", fmt, "-O", out_fmt, "--output=json", path],
        "inspect",
        pass_fds=pass_fds,
        address_space=inspect_address_space() if untrusted else None,
    )
    return _json(result)


def map_extents(path: str, *, fmt: str = "qcow2", layer_only: bool = False) -> list[dict]:
    """`map` extents (start, length, depth, present, zero, data); `layer_only` leaves the backing closed."""
    if layer_only:
        argv = [qemu_img(), "map", "-U", "--output=json", single_layer(path, fmt)]
    else:
        argv = [qemu_img(), "map", "-U", "-f", fmt, "--output=json", path]
    return _json(_run(argv, "inspect"))


def compare(
    first: str, second: str, *, fmt: str = "qcow2", second_fmt: str = "qcow2", strict: bool = False
) -> bool:
    """Whether two images show the same guest-visible content (`-s`: allocation must match too)."""
    argv = [qemu_img(), "compare", "-U", *secret_objects(first, second), "-f", fmt, "-F", second_fmt]
    if strict:
        argv.append("-s")
    names = [open_name(first, fmt), open_name(second, second_fmt)]
    return _run([*argv, *names], "copy", ok_codes=(0, 1)).returncode == 0


# -- backing chains ------------------------------------------------------------------------------


def backing_raw(path: str, data: dict | None = None) -> str | None:
    """The backing name stored in `path` (relative to its directory, or absolute), or None."""
    raw = (data if data is not None else info(path)).get("backing-filename")
    if not raw:
        return None
    # `json:`, `nbd://`, `file:` ... are never written by this service and would let an image steer
    # qemu-img to another file or host.
    if ":" in raw.split("/", 1)[0]:
        raise errors.StorageError(reason=f"{path} names an unexpected backing {raw!r}")
    return raw


def resolve(path: str, raw: str) -> str:
    """The file a backing name stored in `path` designates (names are relative to the image's directory)."""
    return os.path.normpath(os.path.join(os.path.dirname(path), raw))


def backing_path(path: str, data: dict | None = None) -> str | None:
    raw = backing_raw(path, data)
    return None if raw is None else resolve(path, raw)


def walk_chain(path: str, *, accept: Callable[[str, str], None] | None = None) -> list[str]:
    """`path` and every file under it, top first, by one plain `info` per layer.

    `accept(layer, raw)` may refuse a backing name before it is followed. A missing layer, a loop or
    a chain of more than `chain_limit()` files raises StorageError before qemu-img opens the chain.
    """
    limit = chain_limit()
    chain = [os.path.normpath(path)]
    while len(chain) <= limit:
        raw = backing_raw(chain[-1])
        if raw is None:
            return chain
        if accept is not None:
            accept(chain[-1], raw)
        below = resolve(chain[-1], raw)
        if not os.path.isfile(below):
            raise errors.StorageError(reason=f"{chain[-1]} is backed by a missing file {below}")
        if below in chain:
            raise errors.StorageError(reason=f"backing chain of {path} loops at {below}")
        chain.append(below)
    raise errors.StorageError(reason=f"backing chain of {path} is longer than {limit} layers")


def relative_backing(backing: str, image: str) -> str:
    """How `image` names `backing`: relative to the image's directory, so a pool can move."""
    return os.path.relpath(backing, os.path.dirname(image))


# -- writing images -------------------------------------------------------------------------------


def create(
    path: str, size: int, *, fmt: str = "qcow2", backing: str | None = None, backing_fmt: str = "qcow2"
) -> None:
    """A new empty image of `size` bytes; with `backing`, an overlay naming it exactly as given.

    Overlays are always created with `-u` and an explicit size: qemu-img then never opens the
    backing chain, so this costs the same at any depth (9 ms at depth 1, 191 ms at depth 200 without).
    """
    argv = [qemu_img(), "create", "-q", "-f", fmt]
    if backing is not None:
        argv += ["-u", "-b", backing, "-F", backing_fmt]
    if fmt == "qcow2":
        argv += ["-o", "preallocation=off"]
    _run([*argv, path, str(int(size))], "metadata")


def resize(path: str, size: int, *, fmt: str = "qcow2") -> None:
    _run([qemu_img(), "resize", "-q", "-f", fmt, path, str(int(size))], "metadata")


def convert(
    source: str,
    target: str,
    *,
    fmt: str = "qcow2",
    out_fmt: str = "qcow2",
    cache: str | None = None,
    source_cache: str | None = None,
    compress: bool = False,
    coroutines: int = 16,
    out_of_order: bool = True,
    backing: str | None = None,
    backing_fmt: str = "qcow2",
    progress: Progress | None = None,
    pass_fds: Sequence[int] = (),
) -> None:
    """Copy `source`'s guest-visible content (its whole chain) into a new image at `target`.

    `backing` (`-B`) writes only the clusters allocated in `source`'s top layer, over that backing:
    right only when that layer is exactly the change since the backing's content.
    """
    argv = [qemu_img(), "convert", "-p", *secret_objects(source, target), "-f", fmt, "-O", out_fmt]
    if is_encrypted(target):
        if compress or backing is not None or out_fmt != "qcow2":
            # qemu-img 7.2: "Compression and encryption not supported at the same time".
            raise errors.StorageError(reason=f"an encrypted {target} is written uncompressed and whole")
        argv += [
            "-o",
            f"encrypt.format=luks,encrypt.key-secret={SECRET_ID},encrypt.iter-time={luks_iter_ms()}",
        ]
    if cache:
        argv += ["-t", cache]
    if source_cache:
        argv += ["-T", source_cache]
    argv += ["-m", str(coroutines)]
    if out_of_order:
        argv.append("-W")
    if compress:
        argv += ["-c", "-o", "compression_type=zstd"]
    if backing is not None:
        argv += ["-B", backing, "-F", backing_fmt]
    _run([*argv, open_name(source, fmt), target], "copy", progress=progress, pass_fds=pass_fds)


def rebase(
    path: str,
    backing: str | None,
    *,
    safe: bool = True,
    fmt: str = "qcow2",
    backing_fmt: str = "qcow2",
    cache: str | None = None,
    source_cache: str | None = None,
    progress: Progress | None = None,
) -> None:
    """Make `path` sit on `backing` (None: on nothing), named exactly as given.

    Safe (default): every cluster whose content would change is first copied into `path`, so its
    guest-visible content never changes. `safe=False` (`-u`) rewrites the name only: right only when
    the new name designates the same content; never use it to drop a layer.
    """
    argv = [qemu_img(), "rebase"]
    if safe:
        argv.append("-p")
        if cache:
            argv += ["-t", cache]
        if source_cache:
            argv += ["-T", source_cache]
    else:
        argv.append("-u")
    argv += ["-f", fmt]
    argv += ["-b", ""] if backing is None else ["-F", backing_fmt, "-b", backing]
    _run([*argv, path], "copy" if safe else "metadata", progress=progress if safe else None)


def commit(
    path: str, *, fmt: str = "qcow2", cache: str | None = "writeback", progress: Progress | None = None
) -> None:
    """Write `path`'s clusters into its backing file; `-d`: `path` keeps them, so the work can be redone."""
    argv = [qemu_img(), "commit", "-p", *(["-t", cache] if cache else []), "-f", fmt, "-d", path]
    _run(argv, "copy", progress=progress)


# -- qemu-io (patterns written and read back by demos and tests) ---------------------------------


def io_write(path: str, chunks: Sequence[tuple[int, int, int | str | None]], *, fmt: str = "qcow2") -> None:
    """Write (offset, length, fill) chunks through one qemu-io process. The fill is a pattern byte,
    the path of a file holding exactly those bytes (`write -s`: an RBD export copies changed extents
    so), or None for zeros (`write -z`)."""
    argv = [qemu_io(), "-f", fmt]
    for offset, length, fill in chunks:
        how = "-z" if fill is None else f"-s {fill}" if isinstance(fill, str) else f"-P {int(fill)}"
        argv += ["-c", f"write {how} {int(offset)} {int(length)}"]
    result = _run([*argv, path], "copy")
    if "error" in result.stdout.lower() or "failed" in result.stdout.lower():
        raise errors.StorageError(reason=f"qemu-io write into {path} failed", desc=result.stdout[-2000:])


def io_read_matches(path: str, offset: int, length: int, byte: int, *, fmt: str = "qcow2") -> bool:
    """Whether the guest-visible bytes at [offset, offset+length) all equal `byte`."""
    argv = [qemu_io(), "-r", "-U", "-f", fmt, "-c", f"read -P {int(byte)} {int(offset)} {int(length)}", path]
    result = _run(argv, "copy", ok_codes=(0, 1))
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout


# -- cache modes ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def supports_direct_io(directory: str) -> bool:
    """Whether files in `directory` can be opened with O_DIRECT (tmpfs cannot)."""
    probe = os.path.join(directory, f"{TMP_PREFIX}odirect-{uuid.uuid4().hex}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    else:
        os.close(fd)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
