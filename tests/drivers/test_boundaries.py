"""Static boundaries of the storage engine: outside `volumes/drivers/{process,qemu,nbd}.py` no production
module starts a process or names qemu-img, qemu-io, qemu-nbd or nbdcopy as a program to run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sharestore", "volumes", "backups")
ENGINE = {"volumes/drivers/process.py", "volumes/drivers/qemu.py", "volumes/drivers/nbd.py"}
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
