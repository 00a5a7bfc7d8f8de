#!/usr/bin/env python
"""Snapshot create benchmark: the time a caller waits for a usable snapshot, against chain depth and
against volume size.

Depth (goals: depth 60 <= 1.2 x depth 1, and the storage step <= 2 x a bare `qemu-img create -u -b`): three volumes
whose heads sit on chains 0, 19 and 59 layers deep. Each round, for each volume, 16 MiB are written
into the head, then the snapshot is created through the API as a client calls it (POST
/v1/volume/share/snapshot/create with a token: view, service, transaction; the task runs inline on
commit as the worker runs it: claim, freeze the head into a layer, publish a new overlay, measure,
mark available) -- the create makes the chain 1, 20 or 60 layers deep -- and next to it a bare
`qemu-img create -u -b` of an overlay on that volume's top layer, the two sides alternating in order.
The new snapshot is then deleted (not timed) so every round runs at the same depth. Inside each API
call the driver's `snapshot_create` (the storage step, as the task calls it) is timed too, so the
storage step and the fixed service cost (API minus storage) are printed apart.
SHARESTORE_SNAPSHOT_MAX_DEPTH is raised for the run.

Size (goal: ratio <= 1.2): a 1 TiB volume with data spread over its whole range against a 1 GiB one,
through the service (`snapshot_create`) and its inline task, alternating, at the same depth each round.

The database is a throwaway SQLite file and the pools live under --dir (a real disk; default
var/bench-snapshot). Medians are compared.

Usage: .venv/bin/python bench/snapshot_create.py [--rounds 15] [--depth-rounds 15] [--big-data-gib 2]
       [--only depth|size] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the size comparison")
    parser.add_argument("--depth-rounds", type=int, default=15, help="rounds of the depth comparison")
    parser.add_argument("--depths", default="1,20,60", help="chain depths a create makes")
    parser.add_argument("--only", choices=("depth", "size"), help="run one comparison only")
    parser.add_argument("--big-data-gib", type=int, default=2, help="data spread over the 1 TiB volume")
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench-snapshot"))
    return parser.parse_args()


def setup_django(workdir: Path) -> None:
    # A throwaway database and data dir: the benchmark never touches a configured deployment.
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["SHARESTORE_DATA_DIR"] = str(workdir / "data")
    os.environ["SHARESTORE_Q_SYNC"] = "1"
    os.environ["SHARESTORE_LOG_LEVEL"] = "WARNING"
    os.environ["SHARESTORE_SNAPSHOT_MAX_DEPTH"] = "1000"
    os.environ.setdefault("SHARESTORE_SECRET_KEY", "bench-only-" + "x" * 40)
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
    from volumes.models import Pool
    from volumes.services import demo

    topology = demo.demo_topology_seed(data_dir=workdir / "data")
    pool = topology["pools"][0]
    Pool.objects.filter(pk=pool.pk).update(capacity=64 * TiB)
    pool.refresh_from_db()
    if args.only in (None, "depth"):
        run_depths(args, workdir, topology, pool)
    if args.only in (None, "size"):
        if args.only is None:
            print()
        run_sizes(args, topology, pool)
    return 0


def volume_factory(topology, pool):
    from volumes.choices import EventState
    from volumes.models import Volume
    from volumes.services.volumes import volume_create

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

    return new_volume


class Timed:
    """Time spent in the driver's steps, by wrapping its methods (the wrapped code runs unchanged)."""

    def __init__(self):
        from volumes.drivers.qcow2 import Qcow2DirectoryDriver

        self.spent = {"storage": 0.0, "freeze": 0.0, "measure": 0.0}
        for key, method in (("storage", "snapshot_create"), ("freeze", "_freeze"), ("measure", "usage")):
            setattr(Qcow2DirectoryDriver, method, self.wrap(key, getattr(Qcow2DirectoryDriver, method)))

    def wrap(self, key, fn):
        def wrapper(driver, *a, **k):
            start = time.perf_counter()
            try:
                return fn(driver, *a, **k)
            finally:
                self.spent[key] += time.perf_counter() - start

        return wrapper

    def reset(self) -> None:
        self.spent.update(storage=0.0, freeze=0.0, measure=0.0)


TIMED: Timed | None = None


def timed() -> Timed:
    global TIMED
    if TIMED is None:
        TIMED = Timed()
    return TIMED


def run_sizes(args, topology, pool) -> bool:
    from volumes.choices import SnapshotStatus
    from volumes.models import Snapshot
    from volumes.services.snapshots import snapshot_create
    from volumes.services.volumes import pool_driver

    new_volume = volume_factory(topology, pool)
    big, small = new_volume("bench-1tib", TiB), new_volume("bench-1gib", GiB)
    driver = pool_driver(pool)
    spread = args.big_data_gib * 64  # 16 MiB chunks, spread evenly over the whole terabyte
    write(driver.path(big.image_name), [(i * (TiB // spread), 16 * MiB, i % 250 + 1) for i in range(spread)])
    write(driver.path(small.image_name), [(0, 512 * MiB, 7)])

    # Where the time goes inside the task.
    spent = timed().spent

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
            timed().reset()
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
    return ratio <= 1.2


def measure_ways(layer: str) -> list[tuple[str, list[str]]]:
    """Three qemu-img ways (the driver's fallback: check of one layer, backing closed) as bare commands,
    and the driver's own count of the layer's L2 tables (argv None)."""
    from django.conf import settings

    from volumes.drivers import qemu

    img = settings.SHARESTORE_QEMU_IMG
    return [
        ("check, chain opened", [img, "check", "-U", "-f", "qcow2", "--output=json", layer]),
        ("check, layer alone", [img, "check", "-U", "--output=json", qemu.single_layer(layer)]),
        ("map, layer alone", [img, "map", "-U", "--output=json", qemu.single_layer(layer)]),
        ("L2 count (driver)", None),
    ]


def run_depths(args, workdir: Path, topology, pool) -> bool:
    from django.conf import settings
    from django.test import Client

    from sharestore.core.services.tokens import token_create
    from volumes.choices import SnapshotStatus
    from volumes.drivers.qcow2.header import allocated_bytes
    from volumes.models import Snapshot
    from volumes.services import demo
    from volumes.services.snapshots import snapshot_create, snapshot_delete
    from volumes.services.volumes import pool_driver

    depths = [int(d) for d in args.depths.split(",")]
    new_volume = volume_factory(topology, pool)
    driver = pool_driver(pool)
    _token, key = token_create(name="bench")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    scratch = Path(pool.path) / "bench-bare"  # same filesystem as the layers
    scratch.mkdir()
    spent = timed().spent

    volumes = {}
    for depth in depths:
        volume = new_volume(f"bench-depth-{depth}", GiB)
        for i in range(depth - 1):
            write(driver.path(volume.image_name), [((i * 16 * MiB) % GiB, MiB, i % 250 + 1)])
            volume.refresh_from_db()
            snapshot_create(actor="bench", volume=volume, name=f"base{i}")
        assert len(driver.backing_chain(volume.image_name)) == depth, depth
        volumes[depth] = volume

    def api_create(volume, name: str) -> tuple[float, str]:
        body = {
            "tenant": demo.TENANT_UUID,
            "cluster_uuid": demo.CLUSTER_UUID,
            "volume_uuid": str(volume.uuid),
            "snapshot_name": name,
            "desc": "",
        }
        start = time.perf_counter()
        response = client.post(
            "/v1/volume/share/snapshot/create", data=json.dumps(body), content_type="application/json"
        )
        elapsed = time.perf_counter() - start
        answer = json.loads(response.content)
        assert response.status_code == 200 and answer["scode"] == 0, answer
        return elapsed, answer["data"]["snapshot"]["UUID"]

    def bare_create(backing: str, depth: int) -> float:
        target = scratch / f"bare-{depth}.qcow2"
        argv = [
            settings.SHARESTORE_QEMU_IMG,
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            backing,
            "-F",
            "qcow2",
        ]
        start = time.perf_counter()
        subprocess.run([*argv, str(target), str(GiB)], check=True, capture_output=True)
        elapsed = time.perf_counter() - start
        target.unlink()
        return elapsed

    ways = [way for way, _argv in measure_ways("x")]
    results = {
        d: {"api": [], "bare": [], "storage": [], "freeze": [], "measure": [], **{w: [] for w in ways}}
        for d in depths
    }
    for round_no in range(args.depth_rounds):
        shift = round_no % len(depths)
        for depth in depths[shift:] + depths[:shift]:
            volume = volumes[depth]
            head = driver.path(volume.image_name)
            write(head, [((round_no * 37 % 60) * (GiB // 64), 16 * MiB, round_no % 250 + 1)])
            volume.refresh_from_db()
            timed().reset()
            sides = ("api", "bare") if round_no % 2 == 0 else ("bare", "api")
            for side in sides:
                if side == "api":
                    elapsed, snapshot_uuid = api_create(volume, f"r{round_no}")
                    for key in ("storage", "freeze", "measure"):
                        results[depth][key].append(spent[key])
                else:
                    elapsed = bare_create(head, depth)
                results[depth][side].append(elapsed)
            snapshot = Snapshot.objects.get(uuid=snapshot_uuid)
            assert snapshot.status == SnapshotStatus.AVAILABLE, snapshot.status
            # Ways to measure the new layer's allocated bytes, same layer, same moment.
            layer = driver.path(snapshot.layer_name)
            for way, argv in measure_ways(layer):
                start = time.perf_counter()
                if argv is None:
                    allocated_bytes(layer)  # what the driver's usage runs: no process
                else:
                    subprocess.run(argv, check=True, capture_output=True)
                results[depth][way].append(time.perf_counter() - start)
            assert len(driver.backing_chain(volume.image_name)) == depth + 1
            # Back to the same depth for the next round (not timed).
            volume.refresh_from_db()
            snapshot_delete(actor="bench", volume=volume, snapshot=snapshot)
            assert len(driver.backing_chain(volume.image_name)) == depth

    def ms(values) -> float:
        return statistics.median(values) * 1000

    print(
        f"snapshot create through the API (POST snapshot/create, task inline) vs a bare `qemu-img create -u -b`, "
        f"1 GiB volumes, 16 MiB written into the head before each create, {args.depth_rounds} rounds, "
        f"sides and depths alternating, medians (ms)"
    )
    print(
        "storage = the driver's snapshot_create as the task calls it (timed inside the same API calls): "
        "freeze (rename, overlay) + measure (the layer's allocated bytes); service = api - storage; "
        "bare = `qemu-img create -q -f qcow2 -u -b <head> -F qcow2 <new> 1G` in the pool's filesystem"
    )
    print()
    header = f"{'chain depth':<13}{'api':>8}{'min':>8}{'max':>8}{'storage':>9}{'freeze':>8}{'measure':>8}"
    print(header + f"{'service':>9}{'bare':>8}{'storage/bare':>14}{'api/bare':>10}{'api/depth 1':>13}")
    api1 = ms(results[depths[0]]["api"])
    for depth in depths:
        r = results[depth]
        api, bare, storage = ms(r["api"]), ms(r["bare"]), ms(r["storage"])
        service = ms([a - st for a, st in zip(r["api"], r["storage"], strict=True)])
        print(
            f"  {depth:<11}{api:>8.1f}{min(r['api']) * 1000:>8.1f}{max(r['api']) * 1000:>8.1f}"
            f"{storage:>9.1f}{ms(r['freeze']):>8.1f}{ms(r['measure']):>8.1f}{service:>9.1f}{bare:>8.1f}"
            f"{storage / bare:>14.2f}{api / bare:>10.2f}{api / api1:>13.2f}"
        )
    print()
    print("allocated bytes of the new layer (ms, medians):")
    print(f"{'chain depth':<13}" + "".join(f"{way:>22}" for way in ways))
    for depth in depths:
        print(f"  {depth:<11}" + "".join(f"{ms(results[depth][way]):>22.1f}" for way in ways))
    deepest = depths[-1]
    r = results[deepest]
    growth = ms(r["api"]) / api1
    storage_vs_bare = ms(r["storage"]) / ms(r["bare"])
    api_vs_bare = ms(r["api"]) / ms(r["bare"])
    service = ms(
        [a - st for d in depths for a, st in zip(results[d]["api"], results[d]["storage"], strict=True)]
    )
    print()
    print(
        f"depth {deepest} / depth {depths[0]} (api medians): {growth:.2f}  goal <= 1.2: "
        f"{'met' if growth <= 1.2 else 'NOT met'}"
    )
    print(
        f"depth {deepest} storage step / bare create -u: {storage_vs_bare:.2f}  goal <= 2: "
        f"{'met' if storage_vs_bare <= 2 else 'NOT met'}"
    )
    print(
        f"depth {deepest} api / bare create -u: {api_vs_bare:.2f}  (the API adds a fixed service cost: "
        f"{service:.1f} ms median over all depths, view + service + django-q2 + database)"
    )
    return growth <= 1.2 and storage_vs_bare <= 2


if __name__ == "__main__":
    sys.exit(main())
