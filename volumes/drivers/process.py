"""The process runner: the only code that starts qemu-img (and its companions qemu-io, qemu-nbd).

Commands are argv lists, never a shell. Each has a timeout; stderr is kept and carried into the
error; `-p` progress records (`    (12.89/100%)` ended by CR or LF) are parsed from stdout as they
arrive and handed to a callback. A command given a `cancel` event (the copies, see `qemu._run`) is
killed within a poll interval of the event being set, and `CommandCancelled` is raised: its caller's
failure path removes what it wrote, as for any failed copy.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from sharestore import errors

PROGRESS_RE = re.compile(rb"\(\s*([0-9.]+)/100%\)")
ENOSPC_MARKERS = ("No space left on device", "ENOSPC")
# How often a running command's output and its cancel event are looked at, at most.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandFailed(errors.StorageError):
    """A storage command exited with a status its caller did not accept."""

    def __init__(self, result: CommandResult):
        self.result = result
        command = result.argv[1] if len(result.argv) > 1 else ""
        reason = f"{os.path.basename(result.argv[0])} {command} exited {result.returncode}"
        super().__init__(desc=result.stderr.strip()[-4000:], reason=reason)


class CommandCancelled(errors.OperationCancelled):
    """A command was killed because its operation was cancelled (the runner records who asked)."""

    def __init__(self, argv: Sequence[str]):
        command = argv[1] if len(argv) > 1 else ""
        super().__init__(
            desc=f"{os.path.basename(argv[0])} {command} was stopped", action="", uuid="", actor=""
        )


def _limit_resources(address_space: int | None):
    def preexec():
        if address_space:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    stdout: int | IO,
    stderr: int | IO,
    pass_fds: Sequence[int] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """Start argv with no stdin, no inherited descriptor but `pass_fds` and C-locale messages (which
    the callers parse); StorageError if the program is not installed."""
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            pass_fds=tuple(pass_fds),
            close_fds=True,
            preexec_fn=preexec_fn,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError as exc:
        raise errors.StorageError(reason=f"{argv[0]} is not installed", desc=str(exc)) from exc


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    progress: Callable[[float], None] | None = None,
    ok_codes: Sequence[int] = (0,),
    pass_fds: Sequence[int] = (),
    address_space: int | None = None,
    cancel: threading.Event | None = None,
) -> CommandResult:
    """Run argv; raise CommandFailed, NoSpace or StorageTimeout unless it exits with one of ok_codes,
    CommandCancelled (the command killed) once `cancel` is set."""
    argv = tuple(str(a) for a in argv)
    with tempfile.TemporaryFile() as err_file:
        proc = spawn(
            argv,
            stdout=subprocess.PIPE,
            stderr=err_file,
            pass_fds=pass_fds,
            preexec_fn=_limit_resources(address_space) if address_space else None,
        )
        deadline = time.monotonic() + timeout
        out = bytearray()
        pending = b""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    proc.kill()
                    proc.wait()
                    raise errors.StorageTimeout(seconds=int(timeout), command=shlex.join(argv[:3]))
                if cancel is not None and cancel.is_set():
                    proc.kill()
                    proc.wait()
                    raise CommandCancelled(argv)
                if not sel.select(timeout=min(remaining, POLL_SECONDS)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
                if progress is not None:
                    pending += chunk
                    *records, pending = re.split(rb"[\r\n]", pending)
                    for record in records:
                        match = PROGRESS_RE.search(record)
                        if match:
                            progress(float(match.group(1)))
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise errors.StorageTimeout(seconds=int(timeout), command=shlex.join(argv[:3])) from None
        finally:
            sel.close()
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err_file.seek(0)
        stderr = err_file.read().decode("utf-8", "replace")
    result = CommandResult(argv, proc.returncode, out.decode("utf-8", "replace"), stderr)
    if result.returncode not in ok_codes:
        if any(marker in stderr for marker in ENOSPC_MARKERS):
            raise errors.NoSpace(where=argv[-1], desc=stderr.strip()[-4000:])
        raise CommandFailed(result)
    return result
