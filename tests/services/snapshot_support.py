"""Shared checks for snapshot tests: guest-visible content of many images in one qemu-io run, the
database tree against the on-disk backing chains, orphan files, and fault injection."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from datetime import timedelta
from unittest import mock

from django.conf import settings
from django.utils import timezone

from sharestore import errors
from sharestore.core.models import Operation
from tests.helpers import run_tasks
from volumes.choices import SnapshotStatus
from volumes.drivers import process
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.models import Snapshot, Volume
from volumes.services.volumes import pool_driver

REGION = 256 << 10
REGIONS = 16
VOLUME_BYTES = REGION * REGIONS


def write_regions(path: str, content: dict[int, int]) -> None:
    """Write `byte` over each region `index` of the image at `path`."""
    if not content:
        return
    argv = ["qemu-io", "-f", "qcow2"]
    for index, byte in sorted(content.items()):
        argv += ["-c", f"write -P {byte} {index * REGION} {REGION}"]
    result = subprocess.run([*argv, path], capture_output=True, text=True, check=True)
    assert "error" not in result.stdout.lower() and "failed" not in result.stdout.lower(), result.stdout


def content_mismatches(expected: dict[str, list[int]]) -> list[str]:
    """For each image path, the regions whose guest-visible bytes are not the expected pattern byte.

    One qemu-io process opens every image in turn (`open`/`close` commands): a check of a whole
    tree costs one process start.
    """
    argv = ["qemu-io"]
    labels = []
    for path, regions in expected.items():
        argv += ["-c", f"open -r -U -o driver=qcow2 {path}"]
        for index, byte in enumerate(regions):
            argv += ["-c", f"read -P {byte} {index * REGION} {REGION}"]
            labels.append(f"{os.path.basename(path)} region {index} (expected {byte})")
        argv += ["-c", "close"]
    result = subprocess.run(argv, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert "can't open" not in out and "Could not open" not in out, out
    problems, index, failed = [], 0, False
    for line in result.stdout.splitlines():
        if line.startswith("Pattern verification failed"):
            failed = True
        elif line.startswith("read "):
            if failed:
                problems.append(labels[index])
            index += 1
            failed = False
    assert index == len(labels), out
    return problems


def backing_chain_on_disk(driver: Qcow2DirectoryDriver, name: str) -> list[str]:
    """`qemu-img info --backing-chain` of an image (our own files: trusted), as names in the pool."""
    result = subprocess.run(
        [settings.SHARESTORE_QEMU_IMG, "info", "-U", "--backing-chain", "--output=json", driver.path(name)],
        capture_output=True,
        text=True,
        check=True,
    )
    root = os.path.normpath(driver.root)
    names = []
    for layer in json.loads(result.stdout):
        path = os.path.normpath(layer["filename"])
        names.append(os.path.relpath(path, root))
    return names


def assert_tree_matches_disk(volume: Volume) -> None:
    """The database tree (every row, hidden ones too) is exactly what the files' backing chains say,
    and the pool holds no file of this volume that the database does not know."""
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    driver = pool_driver(volume.pool)
    rows = {r.pk: r for r in Snapshot.objects.filter(volume=volume)}

    def chain_of(snapshot_id):
        chain, seen = [], set()
        while snapshot_id is not None:
            assert snapshot_id not in seen, "loop in the database tree"
            seen.add(snapshot_id)
            chain.append(rows[snapshot_id].layer_name)
            snapshot_id = rows[snapshot_id].parent_id
        return chain

    assert backing_chain_on_disk(driver, volume.image_name) == [
        volume.image_name,
        *chain_of(volume.current_snapshot_id),
    ]
    parents = {r.parent_id for r in rows.values()} | {volume.current_snapshot_id}
    for row in rows.values():
        if row.pk not in parents:
            assert backing_chain_on_disk(driver, row.layer_name) == chain_of(row.pk), row.name
    on_disk = {
        n
        for n in driver._all_files()
        if n == volume.image_name
        or n.startswith((f"snapshots/{volume.uuid}/", f"{volume.image_name}@"))  # both layouts
    }
    assert on_disk == {volume.image_name, *(r.layer_name for r in rows.values())}, "orphaned or missing files"


def assert_settled(volume: Volume) -> None:
    """No snapshot half-way, the volume usable, its operations finished."""
    volume.refresh_from_db()
    assert volume.state == 0, volume.get_state_display()
    assert not Snapshot.objects.filter(
        volume=volume, status__in=[SnapshotStatus.CREATING, SnapshotStatus.DELETING]
    ).exists()
    assert not Operation.objects.filter(volume=volume, state__in=["queued", "running"]).exists()


class Crash(BaseException):
    """The worker dies here: not an Exception, so nothing in the service catches it."""


@contextlib.contextmanager
def storage_fault(at: int, *, fault: type[BaseException] = Crash):
    """Raise `fault` right after the `at`-th storage step (a qemu-img run, a rename, an unlink or a
    publish) has really been done; yields a counter of the steps seen."""
    seen = {"steps": 0}
    real_run = process.run

    def count():
        seen["steps"] += 1
        if seen["steps"] == at:
            if fault is Crash:
                raise Crash(at)
            raise errors.StorageError(reason=f"injected failure after step {at}")

    def run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        count()
        return result

    def counted(name):
        real = getattr(Qcow2DirectoryDriver, name)

        def wrapper(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            count()
            return result

        return mock.patch.object(Qcow2DirectoryDriver, name, wrapper)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(process, "run", run))
        for name in ("_rename", "_unlink", "_publish"):
            stack.enter_context(counted(name))
        yield seen


def redeliver(operation: Operation, task) -> None:
    """What the sweeper does once the dead worker's lease expired: the same task runs again."""
    Operation.objects.filter(pk=operation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with run_tasks():
        task(operation.pk)
