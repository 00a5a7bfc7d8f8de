"""Shared by the console's management commands: exit codes, the terminal progress bar, sizes.

Exit codes (every console command):
    0  done, nothing left to do
    1  done, but findings remain or some objects could not be handled (see the output)
    2  usage error: bad arguments, unknown UUID, a value the service rejected (argparse also exits 2)
    3  a pool or backup point could not be read at all (directory missing or unreadable)
"""

from __future__ import annotations

import getpass
import json
import time
import uuid
from contextlib import contextmanager

from django.core.management.base import CommandError, OutputWrapper

from sharestore import errors
from sharestore.core import sizes

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def command_actor(command: str) -> str:
    """Who a command's writes are recorded as in the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"manage.py {command}:{user}"


def uuid_arg(value: str) -> str:
    """argparse type: a UUID, in canonical form."""
    return str(uuid.UUID(value))


# argparse names the type in its message ("invalid _uuid value: ..."): keep the name users have seen.
uuid_arg.__name__ = "_uuid"


def add_uuid_list(parser, flag: str, help: str) -> None:
    """A repeatable `--flag UUID` selecting rows (default: none named)."""
    parser.add_argument(flag, action="append", type=uuid_arg, default=[], metavar="UUID", help=help)


def add_uuid_lists(parser, helps: dict[str, str]) -> None:
    """The repeatable `--flag UUID` options that select a command's rows, {flag: help}, in that order."""
    for flag, help in helps.items():
        add_uuid_list(parser, flag, f"{help} (repeatable)")


def add_fix_arguments(parser, *, fix_help: str) -> None:
    """What a destructive command asks for: `--fix` to act (`fix_help` says how), `--dry-run` to only
    report; without `--fix` it only reports (docs/console.md "Commands")."""
    parser.add_argument("--fix", action="store_true", help=fix_help)
    parser.add_argument("--dry-run", action="store_true", help="only report (the default; wins over --fix)")


def fix_requested(options: dict) -> bool:
    """Whether a command declared by `add_fix_arguments` may act: `--fix`, and no `--dry-run`."""
    return options["fix"] and not options["dry_run"]


def add_non_negative(parser, flag: str, type, *, default=None, metavar: str | None = None, help: str) -> None:
    """A count or a duration that must not be negative, which `require_non_negative` checks."""
    parser.add_argument(flag, type=type, default=default, metavar=metavar, help=help)


def require_non_negative(options: dict, *flags: str) -> None:
    """A usage error naming the first of `flags` (declared by `add_non_negative`) given below zero."""
    for flag in flags:
        value = options[flag.removeprefix("--").replace("-", "_")]
        if value is not None and value < 0:
            raise CommandError(f"{flag} must not be negative", returncode=EXIT_USAGE)


def add_location_arguments(parser, *, path_help: str, path_required: bool = True) -> None:
    """What registering a storage location (a pool, a backup point) asks for: its name, cluster,
    directory (`path_help` says whose view of it) and capacity."""
    parser.add_argument("--name", required=True)
    parser.add_argument("--cluster", required=True, type=uuid_arg, metavar="UUID")
    parser.add_argument("--path", required=path_required, help=path_help)
    parser.add_argument("--capacity", required=True, help="bytes, or with a unit: 500G, 2T")


def location_result(*, capacity: int, checked: dict | None = None, created=None, **extra) -> dict:
    """What registering a storage location answers: the values the service checked (a dry run) or the
    row it created (with `extra` entries)."""
    if created is None:
        return {
            "dry_run": True,
            "valid": True,
            "name": checked["name"],
            "path": checked["path"],
            "capacity": capacity,
        }
    return {
        "dry_run": False,
        "uuid": str(created.uuid),
        "name": created.name,
        "path": created.path,
        "capacity": created.capacity,
        **extra,
    }


def write_location_result(stdout, what: str, result: dict, *, as_json: bool) -> None:
    """`location_result` as JSON, or as one line naming `what` was registered (or would be)."""
    if as_json:
        stdout.write(json.dumps(result, indent=2))
    elif result["dry_run"]:
        stdout.write(f"valid: {what} {result['name']} at {result['path']} ({result['capacity']} bytes)")
    else:
        stdout.write(
            f"{what} {result['name']} {result['uuid']} at {result['path']} ({result['capacity']} bytes)"
        )


def get_by_uuid(model, value, what: str):
    """The `model` row with this UUID, or a usage error naming `what`."""
    obj = model.objects.filter(uuid=value).first()
    if obj is None:
        raise CommandError(f"{what} {value} not found", returncode=EXIT_USAGE)
    return obj


@contextmanager
def service_errors_as_usage():
    """A value the service rejects is a usage error of the command (exit 2), told in its message."""
    try:
        yield
    except errors.ServiceError as exc:
        raise CommandError(exc.render_message(), returncode=EXIT_USAGE) from None


def parse_size(text: str) -> int:
    """'1099511627776', '500G', '1TiB', '1.5t' -> bytes (binary multiples; `sharestore.core.sizes`)."""
    try:
        return sizes.parse_size(text)
    except sizes.SizeError as error:
        raise CommandError(str(error), returncode=EXIT_USAGE) from None


def exit_with(code: int, message: str) -> None:
    """End the command with `code` (0 returns normally)."""
    if code:
        raise CommandError(message, returncode=code)


def terminal_progress(stderr, options: dict) -> Progress:
    """The progress bar of a long command: drawn on a terminal, never under `--json`."""
    return Progress(stderr, enabled=not options["json"] and stderr.isatty())


class Progress:
    """A one-line progress bar on a terminal (stderr), silent otherwise; redrawn at most 10 times a second."""

    WIDTH = 30

    def __init__(self, stream, *, enabled: bool):
        self.stream = stream
        self.enabled = enabled
        self.drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int, label: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.WIDTH * done / total) if total else self.WIDTH
        line = f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} {label[-50:]:<50}"
        self._write(line)
        self.drawn = True

    def _write(self, text: str) -> None:
        # A command's self.stderr (OutputWrapper) ends every write with a newline unless told not to:
        # the bar would then scroll one line per redraw instead of redrawing in place.
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self._write("\n")
            self.drawn = False
