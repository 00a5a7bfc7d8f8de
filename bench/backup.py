#!/usr/bin/env python
"""Backup benchmark: the backup *task* as a worker runs it (write, publish, chunk index), on real images.

Every backup and restore goes through the service (`backup_add`, `backup_restore`: checks, rows, the
queued operation) and then the task function a django-q2 worker would call for that operation
(`sharestore.core.tasks.operation_task(operation_id)` -> `operation_run`), timed on its own: the time
from a worker picking the operation up to the backup being BackupCompleted, checksum included.

Prints, medians of --rounds:
- a volume of --data-gib GiB, every byte written (70 % random, 30 % text-like): a full backup, then
  an incremental after a 1 % change (1 MiB random writes): incremental time as a share of the full
  one's (goal <= 10 %), and bytes written against bytes changed (goal <= 1.2), plain and zstd;
- a 64 GiB volume holding 1 GiB of data against an 8 GiB volume holding the same data (64 runs of
  16 MiB spread over each), full backups alternating (goal: 64 GiB <= 2x the 8 GiB time);
- restoring the full + incremental chain (the restore task) against a bare
  `qemu-img convert -t none -T none -m 16 -W` + sync of the same chain (bench/clone.py's form),
  alternating, from a cold page cache when run as root.

The database is a throwaway SQLite file and pools and backup points live under --dir (a real disk;
default var/bench-backup), removed at the end.

Usage: .venv/bin/python bench/backup.py [--data-gib 4] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB, GiB = 1 << 20, 1 << 30


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-gib", type=int, default=4, help="size of the fully written volume")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench-backup"))
    return parser.parse_args()


def setup_django(workdir: Path) -> None:
    # A throwaway database and data dir. Tasks are NOT run on commit (no sync mode): they stay
    # queued, and the benchmark calls each queued operation's task function itself, as a worker does.
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["SHARESTORE_DATA_DIR"] = str(workdir / "data")
    os.environ["SHARESTORE_Q_SYNC"] = "0"
    os.environ["SHARESTORE_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def cold() -> bool:
    """Flush and drop the page cache (root): each copy reads its source from disk."""
    sh("sync")
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def text_like(rng: random.Random, size: int) -> bytes:
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(words) for _ in range(12)) + f" {rng.randint(0, 10**9)}\n").encode()
    return bytes(out[:size])


def write_regions(image: str, regions, scratch: str, batch: int = 16) -> None:
    """Write (offset, bytes) regions into the image through qemu-io, `batch` regions per process."""
    regions = list(regions)
    for first in range(0, len(regions), batch):
        argv = ["qemu-io", "-f", "qcow2"]
        files = []
        for index, (offset, data) in enumerate(regions[first : first + batch]):
            source = os.path.join(scratch, f"region-{index}")
            with open(source, "wb") as handle:
                handle.write(data)
            files.append(source)
            argv += ["-c", f"write -s {source} {offset} {len(data)}"]
        sh(*argv, image)
        for source in files:
            os.unlink(source)


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
    from backups.models import Backup
    from backups.services.create import backup_add
    from backups.services.points import backup_point_create
    from backups.services.restore import backup_restore
    from sharestore.core.choices import OperationState
    from sharestore.core.models import Operation
    from sharestore.core.tasks import operation_task
    from volumes.choices import EventState
    from volumes.models import Pool, Volume
    from volumes.services import demo
    from volumes.services.snapshots import snapshot_create
    from volumes.services.volumes import pool_driver, volume_create, volume_delete

    topology = demo.demo_topology_seed(data_dir=workdir / "data")
    pool = topology["pools"][0]
    Pool.objects.filter(pk=pool.pk).update(capacity=1 << 60)
    pool.refresh_from_db()
    driver = pool_driver(pool)
    scratch = str(workdir / "scratch")
    os.makedirs(scratch)
    rng = random.Random(42)

    def drain() -> None:
        """Run every queued operation's task, as a worker would."""
        while op := Operation.objects.filter(state=OperationState.QUEUED).order_by("id").first():
            operation_task(op.pk)

    def new_volume(name: str, capacity: int) -> Volume:
        volume = volume_create(
            actor="bench",
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=pool,
            name=name,
            volume_type="block",
            capacity=capacity,
            snap_capacity=1 << 45,
        )
        drain()
        volume.refresh_from_db()
        assert volume.state == EventState.AVAILABLE, volume.state
        return volume

    def snap(volume: Volume, name: str):
        snapshot = snapshot_create(actor="bench", volume=volume, name=name)
        drain()
        volume.refresh_from_db()
        snapshot.refresh_from_db()
        return snapshot

    points = iter(range(1_000_000))

    def new_point():
        directory = workdir / "data" / "backup" / f"bp-{next(points)}"
        directory.mkdir(parents=True)
        return backup_point_create(
            name=directory.name, cluster=topology["cluster"], path=str(directory), capacity=1 << 50
        )

    def timed_backup(volume, snapshot, point, *, compress: bool, full: bool) -> tuple[float, Backup, dict]:
        """backup_add (not timed), then the worker's task function for its operation (timed)."""
        volume.refresh_from_db()
        made = backup_add(
            actor="bench",
            volume=volume,
            snapshot=snapshot,
            backup_point=point,
            name="b",
            compress=compress,
            full=full,
        )
        operation = Operation.objects.get(target_uuid=made.uuid, kind="backup.create")
        cold()
        start = time.perf_counter()
        operation_task(operation.pk)
        elapsed = time.perf_counter() - start
        made.refresh_from_db()
        operation.refresh_from_db()
        assert made.status == "BackupCompleted", (
            made.status,
            operation.error_message,
            operation.error_detail,
        )
        return elapsed, made, operation.params["chunks"]

    figures: dict[str, list[float]] = {}
    info: dict[str, object] = {}

    def note(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    # -- 1. full vs incremental after a 1 % change, on a fully written volume --------------------
    size = args.data_gib * GiB
    volume = new_volume("full-data", size)
    head = driver.path(volume.image_name)
    text = text_like(rng, 32 * MiB)
    random_end = int(size * 0.7) // (32 * MiB) * (32 * MiB)
    write_regions(
        head,
        ((o, os.urandom(32 * MiB) if o < random_end else text) for o in range(0, size, 32 * MiB)),
        scratch,
        batch=8,
    )
    snapshot = snap(volume, "s0")
    changed = size // 100 // MiB
    changed_bytes = changed * MiB
    for round_no in range(args.rounds):
        for compress in (False, True) if round_no % 2 == 0 else (True, False):
            label = "zstd" if compress else "plain"
            point = new_point()
            seconds, full, stats = timed_backup(volume, snapshot, point, compress=compress, full=True)
            note(f"full {label}", seconds)
            info[f"full {label} chunks"] = stats
            info[f"full {label} bytes"] = full.size
            # 1 % of the volume changed in 1 MiB random writes, then a new snapshot.
            offsets = sorted(rng.sample(range(size // MiB), changed))
            write_regions(head, ((o * MiB, os.urandom(MiB)) for o in offsets), scratch, batch=64)
            snapshot = snap(volume, f"s{round_no}-{label}")
            seconds, inc, stats = timed_backup(volume, snapshot, point, compress=compress, full=False)
            assert inc.base_id == full.pk
            note(f"incremental {label}", seconds)
            note(f"incremental {label} bytes", inc.size)
            info[f"incremental {label} chunks"] = stats
            # Keep the last chain of each kind for the restores; the older ones only take space.
            if f"chain {label}" in info:
                shutil.rmtree(info[f"chain {label}"].backup_point.path)
            info[f"chain {label}"] = inc

    # -- 2. restore of the last full + incremental chain vs bare convert -t none -T none ---------
    bare_dst = os.path.join(pool.path, "bare.qcow2")
    for round_no in range(args.rounds):
        for label in ("plain", "zstd"):
            inc = info[f"chain {label}"]
            chain_top = os.path.join(inc.backup_point.path, inc.file_name)
            order = ("service", "bare") if round_no % 2 == 0 else ("bare", "service")
            for what in order:
                if what == "service":
                    restored = backup_restore(
                        actor="bench",
                        backup=inc,
                        tenant=topology["tenant"],
                        cluster=topology["cluster"],
                        pool=pool,
                        name=f"restored-{label}-{round_no}",
                    )
                    operation = Operation.objects.get(volume=restored, kind="backup.restore")
                    cold()
                    start = time.perf_counter()
                    operation_task(operation.pk)
                    note(f"restore {label}", time.perf_counter() - start)
                    restored.refresh_from_db()
                    assert restored.state == EventState.AVAILABLE, restored.state
                    volume_delete(actor="bench", volume=restored)
                    drain()
                else:
                    cold()
                    start = time.perf_counter()
                    sh(
                        "qemu-img",
                        "convert",
                        "-f",
                        "qcow2",
                        "-O",
                        "qcow2",
                        "-t",
                        "none",
                        "-T",
                        "none",
                        "-m",
                        "16",
                        "-W",
                        chain_top,
                        bare_dst,
                    )
                    sh("sync")
                    note(f"bare convert {label}", time.perf_counter() - start)
                    os.unlink(bare_dst)
    volume_delete(actor="bench", volume=volume, force=True)
    drain()
    for label in ("plain", "zstd"):
        shutil.rmtree(info[f"chain {label}"].backup_point.path, ignore_errors=True)

    # -- 3. a 64 GiB sparse volume vs an 8 GiB one holding the same 1 GiB ------------------------
    data = [os.urandom(8 * MiB) + text[: 8 * MiB] for _ in range(64)]  # 64 x 16 MiB, half random
    sparse_pair = {}
    for label, capacity in (("64 GiB", 64 * GiB), ("8 GiB", 8 * GiB)):
        v = new_volume(f"sparse-{label.replace(' ', '')}", capacity)
        step = capacity // 64
        write_regions(driver.path(v.image_name), ((i * step, data[i]) for i in range(64)), scratch)
        sparse_pair[label] = (v, snap(v, "s"))
    for round_no in range(args.rounds):
        order = list(sparse_pair) if round_no % 2 == 0 else list(reversed(sparse_pair))
        for label in order:
            v, s = sparse_pair[label]
            point = new_point()
            seconds, _made, stats = timed_backup(v, s, point, compress=True, full=True)
            note(f"full {label}", seconds)
            info[f"full {label} chunks"] = stats
            shutil.rmtree(point.path)

    # -- report ------------------------------------------------------------------------------------
    med = {k: statistics.median(v) for k, v in figures.items()}
    verdict = {True: "met", False: "NOT met"}
    print(
        f"backup task (sharestore.core.tasks.operation_task) timed from claim to BackupCompleted, chunk index "
        f"included; medians of {args.rounds} rounds; "
        + ("cold page cache before each" if cold() else "page cache NOT dropped (not root)")
    )
    print()
    print(
        f"{args.data_gib} GiB volume, every byte written (70 % random, 30 % text-like); 1 % change = "
        f"{changed} x 1 MiB random writes ({changed_bytes:,} bytes)"
    )
    print(
        f"{'':24}{'full s':>9}{'incr s':>9}{'incr/full':>11}{'incr bytes':>14}{'x changed':>11}"
        "  chunks read (full / incr)"
    )
    goals = []
    for label in ("plain", "zstd"):
        full_s, inc_s = med[f"full {label}"], med[f"incremental {label}"]
        inc_bytes = med[f"incremental {label} bytes"]
        share, ratio = inc_s / full_s, inc_bytes / changed_bytes
        goals.append((label, share, ratio))
        print(
            f"  {label:22}{full_s:>9.3f}{inc_s:>9.3f}{share:>10.1%}{int(inc_bytes):>14,}{ratio:>11.2f}  "
            f"{info[f'full {label} chunks']['read']} / {info[f'incremental {label} chunks']['read']} "
            f"of {info[f'full {label} chunks']['chunks']}"
        )
    print()
    print(f"{'restore of full + incremental':44}{'seconds':>9}{'MB/s':>9}{'vs bare':>9}")
    for label in ("plain", "zstd"):
        ours, bare = med[f"restore {label}"], med[f"bare convert {label}"]
        print(f"  {'restore task ' + label:42}{ours:>9.3f}{size / ours / 1e6:>9.0f}{bare / ours:>9.0%}")
        print(
            f"  {'bare convert -t none -T none ' + label + ' + sync':42}{bare:>9.3f}{size / bare / 1e6:>9.0f}"
        )
    print()
    big, small = med["full 64 GiB"], med["full 8 GiB"]
    print("full backup (zstd, the default) of 1 GiB of data (64 x 16 MiB spread over the volume)")
    for label in ("64 GiB", "8 GiB"):
        stats = info[f"full {label} chunks"]
        print(
            f"  {label + ' volume':22}{med['full ' + label]:>9.3f} s   chunks read {stats['read']} of {stats['chunks']}"
        )
    print()
    for label, share, ratio in goals:
        print(
            f"goal {label}: incremental <= 10 % of full: {share:.1%} {verdict[share <= 0.10]}; "
            f"bytes <= 1.2x changed: {ratio:.2f} {verdict[ratio <= 1.2]}"
        )
    print(f"goal 64 GiB sparse <= 2x the 8 GiB volume: {big / small:.2f}x {verdict[big / small <= 2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
