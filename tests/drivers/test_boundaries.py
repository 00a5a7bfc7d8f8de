"""Static boundaries of the storage engine: outside `volumes/drivers/{process,qemu,nbd}.py` no production
module starts a process or names qemu-img, qemu-io, qemu-nbd or nbdcopy as a program to run."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sharestore", "volumes", "backups")
# The RBD driver's rbd/ceph CLI layer runs its commands through the same runner.
ENGINE = {
    "volumes/drivers/process.py",
    "volumes/drivers/qemu.py",
    "volumes/drivers/nbd.py",
    "volumes/drivers/rbd/cli.py",
}
PROGRAMS = {"qemu-img", "qemu-io", "qemu-nbd", "nbdcopy"}
PROCESS_MODULES = {"subprocess", "pty", "volumes.drivers.process"}
OS_STARTERS = {"system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty"}
OS_STARTER_PREFIXES = ("spawn", "exec")
# The setting that names the qemu-img binary: only the engine reads it, only settings defines it.
PROGRAM_SETTINGS = {"SHARESTORE_QEMU_IMG", "SHARESTORE_QEMU_IO", "SHARESTORE_QEMU_NBD"}
CONFIGURATION = {"sharestore/settings.py"}

# Known crossings in production code, each to be removed when its code moves onto the engine (the
# stale-entry test below fails once one is gone, so the list only shrinks).
PENDING: set[tuple[str, str]] = set()


def production_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def names_a_program(value: str) -> str | None:
    text = value.strip()
    for program in PROGRAMS:
        if text == program or text.endswith("/" + program):
            return program
    return None


def crossings(relative: str, source: str) -> list[tuple[int, str]]:
    """(line, what) for every way `source` starts a process or names a storage program to run."""
    tree = ast.parse(source, filename=relative)
    docstrings = docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in PROCESS_MODULES or alias.name.split(".")[0] in {"subprocess", "pty"}:
                    found.append((node.lineno, f"imports {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            for module in sorted(modules & PROCESS_MODULES):
                found.append((node.lineno, f"imports {module}"))
            if node.module == "os" and any(
                a.name in OS_STARTERS or a.name.startswith(OS_STARTER_PREFIXES) for a in node.names
            ):
                found.append((node.lineno, "imports a process starter from os"))
        elif isinstance(node, ast.Attribute):
            starter = node.attr in OS_STARTERS or node.attr.startswith(OS_STARTER_PREFIXES)
            if starter and isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append((node.lineno, f"calls os.{node.attr}"))
            if node.attr in {"Popen", "create_subprocess_exec", "create_subprocess_shell"}:
                found.append((node.lineno, f"uses {node.attr}"))
            if node.attr in PROGRAM_SETTINGS and relative not in CONFIGURATION:
                found.append((node.lineno, f"reads {node.attr}"))
        elif isinstance(node, ast.Name) and node.id == "Popen":
            found.append((node.lineno, "uses Popen"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            program = names_a_program(node.value)
            if program and relative not in CONFIGURATION:
                found.append((node.lineno, f"names program {program!r}"))
    return found


def all_crossings() -> dict[tuple[str, str], list[int]]:
    result: dict[tuple[str, str], list[int]] = {}
    for path in production_modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative in ENGINE:
            continue
        for line, what in crossings(relative, path.read_text()):
            result.setdefault((relative, what), []).append(line)
    return result


def test_only_the_engine_starts_storage_programs():
    found = all_crossings()
    unexpected = {key: lines for key, lines in found.items() if key not in PENDING}
    assert not unexpected, "\n".join(
        f"{path}:{','.join(map(str, lines))}: {what} (go through volumes/drivers/qemu.py or nbd.py)"
        for (path, what), lines in sorted(unexpected.items())
    )


def test_pending_exceptions_are_still_needed():
    gone = PENDING - set(all_crossings())
    assert not gone, f"no longer crossing, remove from PENDING: {sorted(gone)}"


def test_the_scan_sees_what_it_must_refuse():
    sample = '''
"""Docstrings may say qemu-img."""
import subprocess
from volumes.drivers import process
import os

def f(settings):
    """qemu-img check explained."""
    os.system("ls")
    subprocess.Popen(["/usr/bin/qemu-img", "info", "x"])
    process.run(["nbdcopy", "--", "[", "qemu-nbd", "]"], timeout=1)
    return settings.SHARESTORE_QEMU_IMG, "qemu-img check failed on x"
'''
    assert sorted(what for _line, what in crossings("volumes/services/sample.py", sample)) == [
        "calls os.system",
        "imports subprocess",
        "imports volumes.drivers.process",
        "names program 'nbdcopy'",
        "names program 'qemu-img'",
        "names program 'qemu-nbd'",
        "reads SHARESTORE_QEMU_IMG",
        "uses Popen",
    ]


# -- the second boundary: only drivers build paths inside a pool -----------------------------------
# A pool's location is `Pool.path` (where workers reach it), `PoolMount.mount_path` (where a host
# does) or a driver's `root`; what lies inside it (file names, partial-write names, directories) is
# the driver's business. Values are recognised by how they are reached: `.path` of something named
# *pool*, `.root` of something named *driver*, any `.mount_path`, and local names assigned from
# those. A host's AccessPath goes through `driver.access_path(mount_path, name)`.

DRIVERS_PACKAGE = "volumes/drivers/"
# The backup point's layout (its own `.tmp-` names) belongs to its store; a backup point is no pool.
PARTIAL_NAMES_ALLOWED = {"backups/storage.py"}
PATH_BUILDERS = {"join", "Path", "PurePath", "PosixPath"}
POOL_READERS = {
    "listdir",
    "scandir",
    "walk",
    "glob",
    "iglob",
    "exists",
    "lexists",
    "isfile",
    "isdir",
    "stat",
    "lstat",
    "statvfs",
    "disk_usage",
    "unlink",
    "remove",
    "rmdir",
    "removedirs",
    "makedirs",
    "mkdir",
    "rmtree",
    "open",
}
POOL_PENDING: set[tuple[str, str]] = set()


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return ""


def _pool_location(node: ast.AST, tainted: set[str]) -> bool:
    """Whether the expression is (or contains) a pool's location."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            owner = _dotted(sub.value).rsplit(".", 1)[-1].lower()
            if sub.attr == "mount_path":
                return True
            if sub.attr == "path" and "pool" in owner:
                return True
            if sub.attr == "root" and "driver" in owner:
                return True
        elif isinstance(sub, ast.Name) and sub.id in tainted:
            return True
    return False


def _tainted_names(tree: ast.AST) -> set[str]:
    tainted: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if _pool_location(node.value, tainted):
                    for target in targets:
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name) and name.id not in tainted:
                                tainted.add(name.id)
                                changed = True
    return tainted


def pool_path_uses(relative: str, source: str) -> list[tuple[int, str]]:
    """(line, what) for every place `source` builds or opens a path inside a pool, or names partials."""
    tree = ast.parse(source, filename=relative)
    docstrings = docstring_nodes(tree)
    tainted = _tainted_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func).rsplit(".", 1)[-1]
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if name in PATH_BUILDERS | POOL_READERS and any(_pool_location(a, tainted) for a in arguments):
                found.append((node.lineno, f"{name}() on a pool location"))
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "path"
                and "driver" in _dotted(node.func.value).rsplit(".", 1)[-1].lower()
            ):
                found.append((node.lineno, "calls driver.path()"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if _pool_location(node.left, tainted):
                found.append((node.lineno, "path / on a pool location"))
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            for part, following in itertools.pairwise(parts):
                if (
                    isinstance(part, ast.FormattedValue)
                    and _pool_location(part.value, tainted)
                    and isinstance(following, ast.Constant)
                    and str(following.value).startswith("/")
                ):
                    found.append((node.lineno, "f-string path on a pool location"))
        if relative not in PARTIAL_NAMES_ALLOWED:
            if (
                isinstance(node, ast.Name | ast.alias)
                and getattr(node, "id", getattr(node, "name", "")) == "TMP_PREFIX"
            ):
                found.append((getattr(node, "lineno", 0), "uses TMP_PREFIX"))
            elif isinstance(node, ast.Attribute) and node.attr == "TMP_PREFIX":
                found.append((node.lineno, "uses TMP_PREFIX"))
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ".tmp-" in node.value
                and id(node) not in docstrings
            ):
                found.append((node.lineno, "names .tmp- partials"))
    return found


def all_pool_path_uses() -> dict[tuple[str, str], list[int]]:
    result: dict[tuple[str, str], list[int]] = {}
    for path in production_modules():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(DRIVERS_PACKAGE):
            continue
        for line, what in pool_path_uses(relative, path.read_text()):
            result.setdefault((relative, what), []).append(line)
    return result


def test_only_drivers_build_paths_inside_a_pool():
    found = all_pool_path_uses()
    unexpected = {key: lines for key, lines in found.items() if key not in POOL_PENDING}
    assert not unexpected, "\n".join(
        f"{path}:{','.join(map(str, lines))}: {what} (ask the pool's driver: inventory, usage, export ...)"
        for (path, what), lines in sorted(unexpected.items())
    )


def test_pool_path_pending_exceptions_are_still_needed():
    gone = POOL_PENDING - set(all_pool_path_uses())
    assert not gone, f"no longer crossing, remove from POOL_PENDING: {sorted(gone)}"


def test_the_pool_path_scan_sees_what_it_must_refuse():
    sample = '''
"""Docstrings may say .tmp- files."""
import os
from pathlib import Path
from volumes.drivers.qemu import TMP_PREFIX

def f(volume, driver, mount, source_pool):
    root = volume.pool.path
    os.listdir(os.path.join(root, "snapshots"))
    Path(source_pool.path) / "volume"
    os.path.isfile(driver.root + "/x")
    access = f"{mount.mount_path}/volume/x"
    partial = ".tmp-" + volume.image_name
    message = f"pool directory {volume.pool.path} does not exist"
    source = pool_driver(volume.pool).path(volume.image_name)
    return driver.access_path(mount.mount_path, "volume/x"), message
'''
    assert sorted(what for _line, what in pool_path_uses("volumes/services/sample.py", sample)) == [
        "Path() on a pool location",
        "calls driver.path()",
        "f-string path on a pool location",
        "isfile() on a pool location",
        "join() on a pool location",
        "listdir() on a pool location",
        "names .tmp- partials",
        "path / on a pool location",
        "uses TMP_PREFIX",
    ]
