#!/usr/bin/env python
"""Backup benchmark on real images through `backups.storage.BackupStore` (the code the backup tasks run).

Prints, side by side: bytes written by an incremental backup after changing 1 % of a volume against
the bytes changed (goal <= 1.2x, uncompressed), incremental vs full backup time, zstd against plain
(size and time), the content checksum's cost, and restore throughput against bare `qemu-img convert`
(goal >= 90 %), both from a cold page cache. The volume holds mixed data: random (incompressible),
text-like, and unallocated.

Usage: .venv/bin/python bench/backup.py [--size-mib 1024] [--rounds 3] [--dir DIR]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")

import django  # noqa: E402

django.setup()

from backups.storage import BackupStore  # noqa: E402

MiB = 1 << 20


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def write_regions(image: str, regions: list[tuple[int, bytes]], workdir: str) -> None:
    """Write each (offset, data) into the image through qemu-io (one process)."""
    argv = ["qemu-io", "-f", "qcow2"]
    for index, (offset, data) in enumerate(regions):
        source = os.path.join(workdir, f"chunk-{index}")
        with open(source, "wb") as handle:
            handle.write(data)
        argv += ["-c", f"write -s {source} {offset} {len(data)}"]
    sh(*argv, image)
    for index in range(len(regions)):
        os.unlink(os.path.join(workdir, f"chunk-{index}"))


def text_like(rng: random.Random, size: int) -> bytes:
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choice(words) for _ in range(12)) + f" {rng.randint(0, 10**9)}\n"
        out += line.encode()
    return bytes(out[:size])


def cold() -> None:
    """Flush and drop the page cache (root): each restore reads its files from disk, as a real one does."""
    sh("sync")
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError:
        pass


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir under var/)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    root = Path(__file__).resolve().parent.parent / "var"
    root.mkdir(exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir or root)
    try:
        return run(work, size, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: str, size: int, rounds: int) -> int:
    rng = random.Random(42)
    pool = os.path.join(work, "pool")
    point = os.path.join(work, "bp")
    os.makedirs(pool)
    os.makedirs(point)
    store = BackupStore(point)
    s0 = os.path.join(pool, "s0.qcow2")
    sh("qemu-img", "create", "-q", "-f", "qcow2", s0, str(size))
    # 40 % random, 30 % text-like, 30 % never written.
    random_part, text_part = int(size * 0.4) // MiB * MiB, int(size * 0.3) // MiB * MiB
    regions = []
    for offset in range(0, random_part, 32 * MiB):
        regions.append((offset, os.urandom(min(32 * MiB, random_part - offset))))
    text = text_like(rng, 32 * MiB)
    for offset in range(random_part, random_part + text_part, 32 * MiB):
        regions.append((offset, text[: min(32 * MiB, random_part + text_part - offset)]))
    write_regions(s0, regions, work)
    # s1: an overlay with 1 % of the volume changed, in 1 MiB random-data writes spread over the disk.
    s1 = os.path.join(pool, "s1.qcow2")
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "s0.qcow2", "-F", "qcow2", s1, str(size))
    changed = max(size // 100 // MiB, 1)
    offsets = sorted(rng.sample(range(size // MiB), changed))
    write_regions(s1, [(o * MiB, os.urandom(MiB)) for o in offsets], work)
    changed_bytes = changed * MiB
    data_bytes = random_part + text_part

    figures: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}

    def note(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    for _round in range(rounds):
        for compress, label in ((False, "plain"), (True, "zstd")):
            full, inc = f"v/full-{label}.qcow2", f"v/inc-{label}.qcow2"
            for name in (inc, full):
                store.remove(name)
            sh("sync")
            note(f"full {label}", timed(lambda: store.write_full(s0, full, compress=compress)))
            note(
                f"incremental {label}",
                timed(
                    lambda: store.write_incremental(
                        s1, inc, base_name=full, source_base=s0, compress=compress
                    )
                ),
            )
            sizes[f"full {label}"] = os.path.getsize(store.path(full))
            sizes[f"incremental {label}"] = os.path.getsize(store.path(inc))
        # The content diff used when the base's snapshot layer is gone (rollback, merged layer).
        store.remove("v/inc-diff.qcow2")
        note(
            "incremental plain, content diff",
            timed(
                lambda: store.write_incremental(
                    s1, "v/inc-diff.qcow2", base_name="v/full-plain.qcow2", source_base=None, compress=False
                )
            ),
        )
        sizes["incremental plain, content diff"] = os.path.getsize(store.path("v/inc-diff.qcow2"))
        note("checksum of the volume (nbdcopy + sha256)", timed(lambda: store.content_checksum(s1)))
        # Restore of full + incremental, against bare qemu-img convert of the same chain.
        for label in ("plain", "zstd"):
            chain = store.path(f"v/inc-{label}.qcow2")
            target = os.path.join(pool, f"restored-{label}")
            bare = os.path.join(pool, f"bare-{label}.qcow2")
            for path in (target, bare):
                if os.path.exists(path):
                    os.unlink(path)
            cold()
            note(f"restore {label}", timed(lambda: store.restore(f"v/inc-{label}.qcow2", target)))
            cold()
            note(
                f"bare convert {label}",
                timed(
                    lambda: (sh("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", chain, bare), sh("sync"))
                ),
            )
            result = subprocess.run(
                ["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", target, s1], capture_output=True
            )
            assert result.returncode == 0, f"restore of the {label} chain differs from the snapshot"

    med = {k: statistics.median(v) for k, v in figures.items()}
    print(
        f"volume {size // MiB} MiB: {data_bytes // MiB} MiB written (40 % random, 30 % text-like), "
        f"rest unallocated; 1 % change = {changed} x 1 MiB random writes; medians of {rounds} rounds"
    )
    print()
    print(f"{'incremental after a 1 % change':44} {'bytes':>14} {'x changed':>10} {'seconds':>9}")
    print(f"{'  bytes changed':44} {changed_bytes:>14,} {1.0:>10.2f}")
    for key in ("incremental plain", "incremental plain, content diff", "incremental zstd"):
        print(f"{'  ' + key:44} {sizes[key]:>14,} {sizes[key] / changed_bytes:>10.2f} {med[key]:>9.3f}")
    print()
    print(f"{'full backup':44} {'bytes':>14} {'x data':>10} {'seconds':>9}")
    for key in ("full plain", "full zstd"):
        print(f"{'  ' + key:44} {sizes[key]:>14,} {sizes[key] / data_bytes:>10.2f} {med[key]:>9.3f}")
    print()
    print(
        f"incremental vs full time: plain {med['incremental plain']:.3f} s vs {med['full plain']:.3f} s "
        f"({med['full plain'] / med['incremental plain']:.0f}x faster); "
        f"zstd {med['incremental zstd']:.3f} s vs "
        f"{med['full zstd']:.3f} s"
    )
    print(
        f"zstd vs plain, full backup: {sizes['full zstd'] / sizes['full plain']:.0%} of the size, "
        f"{med['full zstd'] / med['full plain']:.1f}x the time"
    )
    print(
        "content checksum (recorded with every backup): "
        f"{med['checksum of the volume (nbdcopy + sha256)']:.3f} s "
        f"for {size // MiB} MiB"
    )
    print()
    print(f"{'restore (full + incremental chain)':44} {'seconds':>9} {'MB/s':>9} {'vs bare':>9}")
    for label in ("plain", "zstd"):
        ours, bare = med[f"restore {label}"], med[f"bare convert {label}"]
        print(f"{'  restore ' + label:44} {ours:>9.3f} {size / ours / 1e6:>9.0f} {bare / ours:>9.0%}")
        print(f"{'  bare qemu-img convert ' + label + ' (+ sync)':44} {bare:>9.3f} {size / bare / 1e6:>9.0f}")
    ok_bytes = sizes["incremental plain"] / changed_bytes <= 1.2
    ok_restore = all(med[f"bare convert {l}"] / med[f"restore {l}"] >= 0.9 for l in ("plain", "zstd"))
    print()
    print(
        f"goal incremental bytes <= 1.2x changed: {'met' if ok_bytes else 'MISSED'}; "
        f"goal restore >= 90 % of bare convert: {'met' if ok_restore else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
