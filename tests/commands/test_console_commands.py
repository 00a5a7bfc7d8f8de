"""manage.py refresh_usage, add_pool and add_backup_point: the same services as the console."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid as uuid_lib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.models import BackupPoint
from sharestore.core.commands import parse_size
from sharestore.core.models import AuditEvent
from tests.admin.storage import build_tree, new_volume, pool_named
from volumes.drivers import get_driver
from volumes.models import Pool, Volume

REPO = Path(__file__).resolve().parents[2]


def run(name: str, *args: str) -> tuple[int, str]:
    """(exit code, stdout) — or (exit code, the error message) when the command ends with one."""
    out = io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=io.StringIO())
        return 0, out.getvalue()
    except CommandError as exc:
        return exc.returncode, out.getvalue() if "--json" in args else f"{out.getvalue()}{exc}"


# -- refresh_usage ----------------------------------------------------------------------------------


def test_refresh_usage_dry_run_reports_then_writes_what_the_files_measure(topology):
    disks = pool_named(topology, "disks")
    volume = new_volume(topology, pool=disks, name="v")
    snapshots = build_tree(volume, [("s1", None), ("s2", "s1")], head_on="s2")
    Volume.objects.filter(pk=volume.pk).update(used=5, snap_length=6)
    driver = get_driver(disks.driver, disks.path)

    code, out = run("refresh_usage", "--dry-run", "--json", "--pool", str(disks.uuid))
    document = json.loads(out)
    assert code == 1 and document["dry_run"] is True
    real_used = driver.usage(volume.image_name)
    real_length = sum(driver.usage(s.layer_name) for s in snapshots.values())
    assert sorted((c["field"], c["old"], c["new"]) for c in document["changes"]) == [
        ("snap_length", 6, real_length),
        ("used", 5, real_used),
    ]
    assert Volume.objects.get(pk=volume.pk).used == 5

    code, out = run("refresh_usage", "--volume", str(volume.uuid))
    assert code == 0
    assert (
        out.splitlines()[-1]
        == "1 volume(s) measured, 0 skipped (busy or not populated), wrote 2 value(s), 0 error(s)"
    )
    volume.refresh_from_db()
    assert (volume.used, volume.snap_length) == (real_used, real_length)
    assert AuditEvent.objects.get(volume=volume, action="usage.refresh").actor.startswith(
        "manage.py refresh_usage:"
    )
    assert run("refresh_usage", "--dry-run")[0] == 0


def test_refresh_usage_reports_a_volume_it_cannot_measure(topology):
    disks = pool_named(topology, "disks")
    volume = new_volume(topology, pool=disks, name="v")
    Path(disks.path, volume.image_name).write_bytes(b"not an image")
    code, out = run("refresh_usage", "--json")
    document = json.loads(out)
    assert code == 1
    assert [e["volume_uuid"] for e in document["errors"]] == [str(volume.uuid)]


def test_refresh_usage_unknown_volume_is_a_usage_error(topology):
    code, message = run("refresh_usage", "--volume", str(uuid_lib.uuid4()))
    assert code == 2 and "no volume with UUID" in message


# -- add_pool ---------------------------------------------------------------------------------------


def test_add_pool_creates_a_pool_mounted_on_every_host(topology, data_dir):
    directory = data_dir / "fast"
    directory.mkdir()
    cluster = topology["cluster"]
    code, out = run(
        "add_pool",
        "--name",
        "fast",
        "--cluster",
        str(cluster.uuid),
        "--path",
        str(directory),
        "--capacity",
        "2T",
        "--overcommit",
        "1.25",
        "--json",
    )
    assert code == 0
    document = json.loads(out)
    pool = Pool.objects.get(uuid=document["uuid"])
    assert (pool.name, pool.path, pool.capacity, str(pool.overcommit_ratio)) == (
        "fast",
        str(directory),
        2 << 40,
        "1.25",
    )
    assert document["mounts"] == {str(topology["host"].uuid): str(directory)}
    assert AuditEvent.objects.filter(action="pool.create", object_uuid=pool.uuid).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--path": "/does/not/exist"}, "invalid parameter path: directory /does/not/exist does not exist"),
        ({"--path": "relative"}, "invalid parameter path: must be an absolute directory path"),
        ({"--name": "disks"}, "already has a pool named 'disks'"),
        ({"--capacity": "lots"}, "invalid size 'lots'"),
        ({"--cluster": str(uuid_lib.UUID(int=1))}, "cluster 00000000-0000-0000-0000-000000000001 not found"),
        ({"--overcommit": "0"}, "overcommit_ratio: must be greater than 0"),
    ],
)
def test_add_pool_rejections_exit_2_and_create_nothing(topology, data_dir, change, message):
    directory = data_dir / "fast"
    directory.mkdir()
    arguments = {
        "--name": "fast",
        "--cluster": str(topology["cluster"].uuid),
        "--path": str(directory),
        "--capacity": "1T",
    }
    arguments.update(change)
    code, output = run("add_pool", *[x for pair in arguments.items() for x in pair])
    assert code == 2 and message in output
    assert Pool.objects.count() == 3


def test_add_pool_dry_run_validates_only(topology, data_dir):
    directory = data_dir / "fast"
    directory.mkdir()
    code, out = run(
        "add_pool",
        "--name",
        "fast",
        "--cluster",
        str(topology["cluster"].uuid),
        "--path",
        str(directory),
        "--capacity",
        "1024",
        "--dry-run",
    )
    assert code == 0 and out.strip() == f"valid: pool fast at {directory} (1024 bytes)"
    assert not Pool.objects.filter(name="fast").exists()


def test_parse_size():
    assert [parse_size(x) for x in ("1024", "1K", "500G", "2TiB", "1.5t")] == [
        1024,
        1024,
        500 << 30,
        2 << 40,
        3 << 39,
    ]


# -- add_backup_point -------------------------------------------------------------------------------


def test_add_backup_point_and_its_rejections(topology, data_dir):
    directory = data_dir / "bp"
    directory.mkdir()
    base = ["--name", "nightly", "--cluster", str(topology["cluster"].uuid), "--capacity", "10T"]
    code, out = run("add_backup_point", *base, "--path", str(data_dir / "missing"))
    assert code == 2 and f"directory {data_dir / 'missing'} does not exist" in out
    code, out = run("add_backup_point", *base, "--path", str(directory), "--json")
    assert code == 0
    point = BackupPoint.objects.get(uuid=json.loads(out)["uuid"])
    assert (point.path, point.capacity) == (str(directory), 10 << 40)
    code, out = run("add_backup_point", *base, "--path", str(directory))
    assert code == 2 and "already has a backup point named 'nightly'" in out


# -- from a shell -----------------------------------------------------------------------------------


def test_bad_arguments_exit_2_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "manage.py", "reconcile", "--pool", "not-a-uuid"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "argument --pool: invalid _uuid value: 'not-a-uuid'" in result.stderr


def test_add_pool_rbd_needs_a_ceph_pool(topology, data_dir):
    """rbd runs the RBD driver (tests/drivers/test_rbd_pools.py connects to a real Ceph)."""
    with pytest.raises(CommandError, match="ceph_pool"):
        call_command(
            "add_pool", "--name", "r", "--cluster", str(topology["cluster"].uuid), "--capacity", "1T",
            "--type", "rbd",
        )  # fmt: skip
    assert not Pool.objects.filter(name="r").exists()
