#!/usr/bin/env python
"""RBD rows of the snapshot-create and linked-clone benchmarks: the RBD driver's `snapshot_create` and
`linked_clone` on a 1 TiB volume against a 1 GiB one (4 MiB objects), on a throw-away single-node Ceph
(memstore; the test cluster of tests/drivers/ceph.py, so it needs root and the ceph packages).

Each volume holds --data-mib MiB spread over its whole range (memstore keeps it in memory). Each
round, for each size (alternating order): write 1 MiB into the head, time `snapshot_create`, time a
`linked_clone` of that snapshot, then remove the clone and the snapshot (not timed). Medians are
compared (goal as for qcow2: ratio <= 1.2). Driver calls, not the API: the API's share is measured by
bench/snapshot_create.py and bench/clone.py on directory pools.

Usage: .venv/bin/python bench/rbd.py [--rounds 10] [--data-mib 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data-mib", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
    os.environ.setdefault("SHARESTORE_SECRET_KEY", "bench-only-" + "x" * 40)
    import django

    django.setup()
    from tests.drivers import ceph
    from volumes.drivers import SnapshotSource
    from volumes.drivers.rbd import RbdDriver

    cluster = ceph.start(Path(tempfile.mkdtemp(prefix="bench-rbd-")))
    try:
        # Production-sized objects (4 MiB, RBD's default), not the tests' 64 KiB ones.
        conf = Path(cluster.conf).with_name("bench.conf")
        conf.write_text(
            Path(cluster.conf).read_text().replace("rbd default order = 16", "rbd default order = 22")
        )
        location = cluster.namespace("bench").replace(cluster.conf, str(conf))
        driver = RbdDriver(location)
        volumes = {}
        for label, size in (("1 TiB", TiB), ("1 GiB", GiB)):
            name = f"volume/{uuid.uuid4()}"
            driver.create_volume(name, size)
            step = size // args.data_mib
            driver.write_pattern(name, [(i * step, MiB, 1) for i in range(args.data_mib)])
            volumes[label] = name
        times = {(label, what): [] for label in volumes for what in ("snapshot", "clone")}
        for round_ in range(args.rounds):
            order = list(volumes.items())[:: 1 if round_ % 2 == 0 else -1]
            for label, name in order:
                driver.write_pattern(name, [(round_ * MiB, MiB, 2)])
                snap = driver.snapshot_name(name, str(uuid.uuid4()))
                started = time.perf_counter()
                driver.snapshot_create(name, snap)
                times[(label, "snapshot")].append(time.perf_counter() - started)
                clone = f"volume/{uuid.uuid4()}"
                started = time.perf_counter()
                driver.linked_clone(clone, SnapshotSource(driver, name, snap))
                times[(label, "clone")].append(time.perf_counter() - started)
                driver.delete_image(clone)
                driver.remove_object(snap)
        for what in ("snapshot", "clone"):
            big, small = (statistics.median(times[(label, what)]) for label in ("1 TiB", "1 GiB"))
            print(
                f"rbd {what:8s} 1 TiB {big * 1000:8.1f} ms  1 GiB {small * 1000:8.1f} ms  ratio {big / small:.2f}"
            )
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
