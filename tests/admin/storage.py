"""Storage helpers of the console and command tests: real volumes (real qemu-img images in the
test's pools), snapshot trees laid out as the snapshot service lays them out, and ways to break
things on purpose."""

from __future__ import annotations

import os
import subprocess
import time
import uuid as uuid_lib
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from volumes.choices import EventState, SnapshotStatus
from volumes.drivers import get_driver
from volumes.models import Pool, Snapshot, Volume
from volumes.services.volumes import volume_create

MiB = 1 << 20


def qemu_img(*args: str) -> None:
    subprocess.run([settings.SHARESTORE_QEMU_IMG, *args], check=True, capture_output=True, text=True)


def write_pattern(path: str | Path, offset: int, length: int, byte: int) -> None:
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} {length}", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )


def make_old(path: str | Path, seconds: int = 7200) -> None:
    """Backdate a file so reconcile's grace period does not protect it."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def pool_named(topology, name: str) -> Pool:
    return next(p for p in topology["pools"] if p.name == name)


def new_volume(topology, *, pool: Pool, name: str, capacity: int = 64 * MiB, data: bool = True) -> Volume:
    """A volume created through the service; its create task runs when the transaction commits."""
    # In a test transaction nothing commits: run the on-commit task explicitly (in a
    # transactional test it ran at the real commit and nothing is left to capture).
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        volume = volume_create(
            actor="test",
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=pool,
            name=name,
            volume_type="block",
            snap_capacity=capacity * 4,
            capacity=capacity,
        )
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE, volume.get_state_display()
    if data:
        write_pattern(head_path(volume), 0, MiB, 0x11)
        used = get_driver(pool.driver, pool.path).usage(volume.image_name)
        Volume.objects.filter(pk=volume.pk).update(used=used)
        volume.refresh_from_db()
    return volume


def head_path(volume: Volume) -> str:
    return os.path.join(volume.pool.path, volume.image_name)


def build_tree(volume: Volume, spec: list[tuple[str, str | None]], head_on: str) -> dict[str, Snapshot]:
    """Lay out a snapshot tree the way the snapshot service does and record it.

    `spec` lists (name, parent name) in creation order; every layer gets its own data; the head
    becomes an empty overlay on `head_on`. Layers live at snapshots/<volume>/<snapshot>.qcow2 with
    relative backing names; sizes are measured as the service measures them.
    """
    pool = volume.pool
    driver = get_driver(pool.driver, pool.path)
    layer_dir = Path(pool.path) / "snapshots" / str(volume.uuid)
    layer_dir.mkdir(parents=True, exist_ok=True)
    head = Path(head_path(volume))
    snapshots: dict[str, Snapshot] = {}
    for index, (name, parent) in enumerate(spec):
        snap_uuid = uuid_lib.uuid4()
        layer_name = f"snapshots/{volume.uuid}/{snap_uuid}.qcow2"
        layer = Path(pool.path) / layer_name
        if parent is None and index == 0:
            os.replace(head, layer)  # the first layer is the volume's data so far
        elif parent is None:
            qemu_img("create", "-q", "-f", "qcow2", str(layer), str(volume.capacity))
        else:
            parent_layer = Path(snapshots[parent].layer_name).name
            qemu_img("create", "-q", "-f", "qcow2", "-b", parent_layer, "-F", "qcow2", str(layer))
        write_pattern(layer, (index + 1) * MiB, MiB, 0x20 + index)
        snapshots[name] = Snapshot.objects.create(
            uuid=snap_uuid,
            volume=volume,
            name=name,
            parent=snapshots.get(parent) if parent else None,
            status=SnapshotStatus.AVAILABLE,
            layer_name=layer_name,
            size=driver.usage(layer_name),
        )
    head.unlink(missing_ok=True)
    base = snapshots[head_on].layer_name
    qemu_img("create", "-q", "-f", "qcow2", "-b", f"../{base}", "-F", "qcow2", str(head))
    Volume.objects.filter(pk=volume.pk).update(
        current_snapshot=snapshots[head_on],
        used=driver.usage(volume.image_name),
        snap_length=sum(s.size for s in snapshots.values()),
        modified=timezone.now(),
    )
    volume.refresh_from_db()
    return snapshots


def plant_orphan(pool: Pool, name: str | None = None, *, old: bool = True) -> Path:
    """A real qcow2 image no database row refers to."""
    name = name or f"volume/{uuid_lib.uuid4()}"
    path = Path(pool.path) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    qemu_img("create", "-q", "-f", "qcow2", str(path), str(8 * MiB))
    if old:
        make_old(path)
    return path
