#!/usr/bin/env python
"""Snapshot create benchmark: the time a caller waits for a usable snapshot, on a 1 TiB volume with
data spread over its whole range against a 1 GiB one (goal: ratio <= 1.2).

Each create goes through the real path: the service (`snapshot_create`, its transaction and checks)
and the task it enqueues (run inline on commit: claim, freeze the head into a layer, publish a new
overlay, measure the layer, mark it available). Before every create, 16 MiB are written into each
head so every freeze has fresh data in it. Creates alternate between the volumes, both at the same
chain depth each round; medians are compared. The database is a throwaway SQLite file and the
pools live under --dir (a real disk; default var/bench-snapshot).

Usage: .venv/bin/python bench/snapshot_create.py [--rounds 15] [--big-data-gib 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--big-data-gib", type=int, default=2, help="data spread over the 1 TiB volume")
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench-snapshot"))
    return parser.parse_args()


def setup_django(workdir: Path) -> None:
    # A throwaway database and data dir: the benchmark never touches a configured deployment.
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["SHARESTORE_DATA_DIR"] = str(workdir / "data")
    os.environ["SHARESTORE_Q_SYNC"] = "1"
    os.environ["SHARESTORE_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def write(image: str, chunks: list[tuple[int, int, int]]) -> None:
    """(offset, length, pattern byte) chunks, through one qemu-io process."""
    argv = ["qemu-io", "-f", "qcow2"]
    for offset, length, byte in chunks:
        argv += ["-c", f"write -P {byte} {offset} {length}"]
    subprocess.run([*argv, image], check=True, capture_output=True)


def main() -> int:
    args = parse()
    workdir = Path(args.dir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    tempfile.tempdir = str(workdir)
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    setup_django(workdir)
    from volumes.choices import EventState, SnapshotStatus
    from volumes.drivers.qcow2_dir import Qcow2DirectoryDriver
    from volumes.models import Pool, Snapshot, Volume
    from volumes.services import demo
    from volumes.services.snapshots import snapshot_create
    from volumes.services.volumes import pool_driver, volume_create

    topology = demo.demo_topology_seed(data_dir=workdir / "data")
    pool = topology["pools"][0]
    Pool.objects.filter(pk=pool.pk).update(capacity=4 * TiB)
    pool.refresh_from_db()

    def new_volume(name: str, capacity: int) -> Volume:
        volume = volume_create(
            actor="bench",
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=pool,
            name=name,
            volume_type="block",
            capacity=capacity,
            snap_capacity=4 * TiB,
        )
        volume.refresh_from_db()
        assert volume.state == EventState.AVAILABLE, volume.state
        return volume

    big, small = new_volume("bench-1tib", TiB), new_volume("bench-1gib", GiB)
    driver = pool_driver(pool)
    spread = args.big_data_gib * 64  # 16 MiB chunks, spread evenly over the whole terabyte
    write(driver.path(big.image_name), [(i * (TiB // spread), 16 * MiB, i % 250 + 1) for i in range(spread)])
    write(driver.path(small.image_name), [(0, 512 * MiB, 7)])

    # Where the time goes inside the task, by wrapping the driver's steps.
    spent = {"freeze": 0.0, "measure": 0.0}

    def timed(name, fn):
        def wrapper(self, *a, **k):
            start = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    Qcow2DirectoryDriver.snapshot_freeze = timed("freeze", Qcow2DirectoryDriver.snapshot_freeze)
    Qcow2DirectoryDriver.allocated_bytes = timed("measure", Qcow2DirectoryDriver.allocated_bytes)

    results = {
        big.pk: {"total": [], "freeze": [], "measure": []},
        small.pk: {"total": [], "freeze": [], "measure": []},
    }
    for round_no in range(args.rounds):
        order = [big, small] if round_no % 2 == 0 else [small, big]
        for volume in order:
            offset = (round_no * 37 % 60) * (volume.capacity // 64)
            write(driver.path(volume.image_name), [(offset, 16 * MiB, round_no % 250 + 1)])
        for volume in order:
            volume.refresh_from_db()
            spent.update(freeze=0.0, measure=0.0)
            start = time.perf_counter()
            snapshot = snapshot_create(actor="bench", volume=volume, name=f"s{round_no}")
            elapsed = time.perf_counter() - start
            snapshot.refresh_from_db()
            assert snapshot.status == SnapshotStatus.AVAILABLE, snapshot.status
            results[volume.pk]["total"].append(elapsed)
            results[volume.pk]["freeze"].append(spent["freeze"])
            results[volume.pk]["measure"].append(spent["measure"])

    big_layers = Snapshot.objects.filter(volume=big).count()
    print(
        f"1 TiB volume: {args.big_data_gib} GiB in {spread} x 16 MiB chunks spread over the whole range; "
        f"1 GiB volume: 512 MiB at its start; 16 MiB more in each head before every create; "
        f"{args.rounds} creates each, alternating (chain depth 1..{big_layers})"
    )
    print()
    print(f"{'snapshot create (ms)':<34}{'median':>9}{'min':>9}{'max':>9}{'freeze':>9}{'measure':>9}")
    medians = {}
    for label, volume in (("1 TiB with data", big), ("1 GiB", small)):
        r = results[volume.pk]
        medians[volume.pk] = statistics.median(r["total"])
        print(
            f"  {label:<32}{medians[volume.pk] * 1000:>9.1f}{min(r['total']) * 1000:>9.1f}"
            f"{max(r['total']) * 1000:>9.1f}{statistics.median(r['freeze']) * 1000:>9.1f}"
            f"{statistics.median(r['measure']) * 1000:>9.1f}"
        )
    ratio = medians[big.pk] / medians[small.pk]
    print()
    print(f"ratio 1 TiB / 1 GiB (medians): {ratio:.2f}  goal <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
