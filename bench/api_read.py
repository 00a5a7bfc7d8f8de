#!/usr/bin/env python
"""API read benchmark: `list` and `get` against a bare Django view of the same rows, in one run (issue 12).

100,000 volumes over 50 tenants and 20 pools (one tenant holds 20,000; 1 % deleted, a quarter
attached, some with two attachments, every 25th a clone) are seeded with bulk SQL into a dedicated
PostgreSQL database (dropped afterwards). The service runs as documented for production: gunicorn,
2 sync workers, persistent connections, DEBUG off, with `bench/_api_read_settings.py`, which only adds
the bare views' URLs. Debian's `wrk` (installed here when missing) loads it on loopback.

Each figure is a pair measured side by side, the sides alternating from round to round:
  list page_size 10 vs the bare 10-row view (goal >= 60 %), list page_size 100 vs the bare 100-row
  view (>= 70 %), get vs the bare one-row view (>= 60 %), the last page vs the first of the
  20,000-volume tenant (time per request, <= 2x), and p99 / p50 of list page_size 10 (<= 3x).
Ratios are of the medians over the rounds.

Usage: .venv/bin/python bench/api_read.py [--rounds 3] [--seconds 5] [--connections 16]
                                          [--db-url postgres://postgres@127.0.0.1:5432/sharestore_bench]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

VOLUMES, TENANTS, POOLS, BIG_TENANT_VOLUMES = 100_000, 50, 20, 20_000
TOKEN_KEY = "bench-api-read-token-key-0123456789abcdef"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration of each measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument(
        "--db-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sharestore_bench"),
    )
    parser.add_argument(
        "--server-side-binding", action="store_true", help="psycopg server-side binding (prepared statements)"
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the seeded database in place")
    return parser.parse_args()


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk")


def admin_connect(db_url: str):
    import psycopg

    parsed = urlparse(db_url)
    return psycopg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
        autocommit=True,
    )


def recreate_database(db_url: str) -> None:
    name = urlparse(db_url).path.lstrip("/")
    assert re.fullmatch(r"\w+", name) and "bench" in name, f"refusing to recreate database {name!r}"
    with admin_connect(db_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(db_url: str) -> None:
    name = urlparse(db_url).path.lstrip("/")
    with admin_connect(db_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(env: dict) -> dict:
    """Migrate and seed; return the request bodies of the measured calls."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from sharestore.core.services.tokens import token_create
    from volumes.models import Cluster, Host, Namespace, Pool, PoolMount, Tenant, Zone

    zones = [Zone.objects.create(name=f"zone-{i}") for i in range(2)]
    cluster = Cluster.objects.create(name="bench-cluster", mode="share", zone=zones[0])
    hosts = [Host.objects.create(name=f"host-{i}", cluster=cluster) for i in range(3)]
    tenants = []
    for i in range(TENANTS):
        tenant = Tenant.objects.create(name=f"tenant-{i}")
        Namespace.objects.create(tenant=tenant)
        tenants.append(tenant)
    pools = []
    for i in range(POOLS):
        pool = Pool.objects.create(
            name=f"pool-{i}",
            cluster=cluster,
            zone=zones[i % 2],
            path=f"/srv/bench/pool-{i}",
            capacity=1 << 50,
        )
        for host in hosts:
            PoolMount.objects.create(pool=pool, host=host, mount_path=f"/mnt/pool-{i}")
        pools.append(pool)
    token_create(name="bench", key=TOKEN_KEY)

    tenant_ids = [t.pk for t in tenants]
    namespace_ids = [t.namespace.pk for t in tenants]
    pool_ids = [p.pk for p in pools]
    started = time.monotonic()
    with connection.cursor() as cursor:
        # Volume g belongs to tenant 0 for g <= 20,000, else to one of the 49 others; 1 % are deleted.
        cursor.execute(
            """
            INSERT INTO volumes_volume (uuid, name, volume_type, capacity, snap_cap, used, snap_length,
                image_format, state, created, modified, cluster_id, namespace_id, pool_id, tenant_id)
            SELECT md5('bench-volume-' || g)::uuid, 'volume-' || g, (ARRAY['block','share','fs'])[1 + g %% 3],
                   (1 + g %% 64)::bigint << 30, (g %% 8)::bigint << 30, g::bigint * 4096, g::bigint * 512, 'qcow2',
                   CASE WHEN g %% 100 = 0 THEN 6 ELSE 0 END,
                   timestamptz '2026-01-01' + g * interval '1 minute',
                   timestamptz '2026-01-01' + g * interval '1 minute' + interval '5 seconds',
                   %(cluster)s,
                   (%(namespaces)s::bigint[])[t], (%(pools)s::bigint[])[1 + g %% %(npools)s], (%(tenants)s::bigint[])[t]
            FROM (SELECT g, CASE WHEN g <= %(big)s THEN 1 ELSE 2 + g %% (%(ntenants)s - 1) END AS t
                  FROM generate_series(1, %(volumes)s) g) s
            """,
            {
                "cluster": cluster.pk,
                "namespaces": namespace_ids,
                "pools": pool_ids,
                "tenants": tenant_ids,
                "npools": POOLS,
                "ntenants": TENANTS,
                "big": BIG_TENANT_VOLUMES,
                "volumes": VOLUMES,
            },
        )
        cursor.execute(
            """
            INSERT INTO volumes_volumeattachment (vm_uuid, device, host_uuid, vm_name, vm_type, created, volume_id)
            SELECT md5('vm-' || v.id || '-' || k)::uuid, 'vd' || chr(96 + k), %s, 'vm-' || v.id, 'kvm',
                   v.created + k * interval '1 second', v.id
            FROM volumes_volume v, generate_series(1, 2) k
            WHERE v.id %% 4 = 0 AND (k = 1 OR v.id %% 40 = 0)
            """,
            [str(hosts[0].uuid)],
        )
        cursor.execute("UPDATE volumes_volume SET source_volume_id = id - 1 WHERE id % 25 = 0")
    connection.close()
    import psycopg

    parsed = urlparse(env["DATABASE_URL"])
    with psycopg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.path.lstrip("/"),
        autocommit=True,
    ) as conn:
        conn.execute("VACUUM ANALYZE")
    seeded = time.monotonic() - started

    from volumes.choices import LIVE_STATES
    from volumes.models import Volume

    regular, big = tenants[1], tenants[0]
    big_live = Volume.objects.filter(tenant=big, state__in=LIVE_STATES).count()
    target = (
        Volume.objects.filter(tenant=regular, state__in=LIVE_STATES, attachments__isnull=False)
        .order_by("-created")
        .values_list("uuid", flat=True)
        .first()
    )
    scope = {"tenant": str(regular.uuid), "cluster_uuid": str(cluster.uuid)}
    bare = {"tenant_id": regular.pk, "cluster_id": cluster.pk}
    big_scope = {"tenant": str(big.uuid), "cluster_uuid": str(cluster.uuid)}
    connection.close()
    return {
        "seconds": seeded,
        "regular_live": Volume.objects.filter(tenant=regular, state__in=LIVE_STATES).count(),
        "big_live": big_live,
        "list10": ("/v1/volume/share/list", {**scope, "page_num": 1, "page_size": 10}),
        "bare10": ("/bench/bare/list", {**bare, "page_size": 10}),
        "list100": ("/v1/volume/share/list", {**scope, "page_num": 1, "page_size": 100}),
        "bare100": ("/bench/bare/list", {**bare, "page_size": 100}),
        "get": ("/v1/volume/share/get", {**scope, "volume_uuid": str(target)}),
        "bare_get": ("/bench/bare/get", {**bare, "volume_uuid": str(target)}),
        "first": ("/v1/volume/share/list", {**big_scope, "page_num": 1, "page_size": 10}),
        "last": (
            "/v1/volume/share/list",
            {**big_scope, "page_num": math.ceil(big_live / 10), "page_size": 10},
        ),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {TOKEN_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wrk(binary: str, base: str, target: tuple[str, dict], args, workdir: Path, seconds: int) -> dict:
    path, body = target
    script = workdir / "request.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Token {TOKEN_KEY}"\n'
    )
    out = subprocess.run(
        [
            binary,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            base + path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {path}:\n{out}")
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * units[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
    }


def main() -> int:
    args = parse()
    wrk_binary = ensure_wrk()
    workdir = Path(
        tempfile.mkdtemp(prefix="bench-api-read-", dir=ROOT / "var" if (ROOT / "var").is_dir() else None)
    )
    env = {
        **os.environ,
        "DATABASE_URL": args.db_url,
        "DJANGO_SETTINGS_MODULE": "sharestore.settings",
        "SHARESTORE_DATA_DIR": str(workdir / "data"),
        "SHARESTORE_DEBUG": "0",
        "SHARESTORE_LOG_LEVEL": "WARNING",
        # WhiteNoise warns once per process when collectstatic has not run; the API does not care.
        "PYTHONWARNINGS": "ignore:No directory at",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
        "BENCH_SERVER_SIDE_BINDING": "1" if args.server_side_binding else "0",
    }
    server = None
    recreate_database(args.db_url)
    try:
        targets = seed(env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "sharestore.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--chdir",
                str(ROOT),
            ],
            env={**env, "DJANGO_SETTINGS_MODULE": "_api_read_settings"},
            start_new_session=True,
        )
        for _ in range(100):
            if call(base, *targets["bare10"])[0] == 200:
                break
            time.sleep(0.2)
        for name in ("list10", "list100", "get", "first", "last", "bare10", "bare100", "bare_get"):
            status, body = call(base, *targets[name])
            assert status == 200, (name, status, body[:300])
            if not name.startswith("bare"):
                assert json.loads(body)["scode"] == 0, (name, body[:300])
        last = json.loads(call(base, *targets["last"])[1])["data"]
        assert 1 <= len(last["list"]) <= 10 and last["TotalCount"] == targets["big_live"], last["TotalCount"]
        return measure(args, wrk_binary, base, targets, workdir)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        from django.core.exceptions import ImproperlyConfigured

        try:
            from django.db import connections

            connections.close_all()
        except ImproperlyConfigured:  # Django never set up
            connections = None
        if not args.keep_db:
            drop_database(args.db_url)
        shutil.rmtree(workdir, ignore_errors=True)


PAIRS = [
    ("list page_size 10 vs bare", "list10", "bare10", 0.60, ">="),
    ("list page_size 100 vs bare", "list100", "bare100", 0.70, ">="),
    ("get vs bare one-row view", "get", "bare_get", 0.60, ">="),
    ("last page vs first (20,000 volumes)", "last", "first", 2.0, "<="),
]


def measure(args, wrk_binary, base, targets, workdir) -> int:
    print(
        f"{VOLUMES:,} volumes over {TENANTS} tenants and {POOLS} pools (one tenant with {BIG_TENANT_VOLUMES:,}; "
        f"{targets['big_live']:,} live), seeded in {targets['seconds']:.1f} s; the measured tenant has "
        f"{targets['regular_live']:,} live volumes; gunicorn {args.workers} sync workers; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s; {args.rounds} rounds, sides alternating"
        + ("; psycopg server-side binding" if args.server_side_binding else ""),
        flush=True,
    )
    names = sorted({n for pair in PAIRS for n in pair[1:3]})
    for name in names:  # warm every worker's caches and connections
        wrk(wrk_binary, base, targets[name], args, workdir, 1)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for _, a, b, _, _ in PAIRS:
            for name in (a, b) if r % 2 == 0 else (b, a):
                results[name].append(wrk(wrk_binary, base, targets[name], args, workdir, args.seconds))
    rps = {n: statistics.median(x["rps"] for x in v) for n, v in results.items()}
    print()
    print(f"{'endpoint':<12}{'req/s (median)':>16}{'rounds':>40}{'p50 ms':>9}{'p99 ms':>9}")
    for name in names:
        rounds = " ".join(f"{x['rps']:7.0f}" for x in results[name])
        p50 = statistics.median(x["p50"] for x in results[name])
        p99 = statistics.median(x["p99"] for x in results[name])
        print(f"  {name:<10}{rps[name]:>16.1f}{rounds:>40}{p50:>9.2f}{p99:>9.2f}")
    print()
    verdict = {True: "met", False: "NOT met"}
    print(f"{'figure':<40}{'ratio':>8}  {'per round':<26}goal")
    for label, a, b, goal, op in PAIRS:
        if op == ">=":  # share of the bare view's throughput
            ratio = rps[a] / rps[b]
            per_round = [x["rps"] / y["rps"] for x, y in zip(results[a], results[b], strict=True)]
            shown, rounds_shown = f"{ratio * 100:.0f} %", " ".join(f"{x * 100:.0f}%" for x in per_round)
            met = ratio >= goal
            goal_text = f">= {goal * 100:.0f} %"
        else:  # time per request, a over b
            ratio = rps[b] / rps[a]
            per_round = [y["rps"] / x["rps"] for x, y in zip(results[a], results[b], strict=True)]
            shown, rounds_shown = f"{ratio:.2f} x", " ".join(f"{x:.2f}" for x in per_round)
            met = ratio <= goal
            goal_text = f"<= {goal:g} x"
        print(f"  {label:<38}{shown:>8}  {rounds_shown:<26}{goal_text}: {verdict[met]}")
    tails = [x["p99"] / x["p50"] for x in results["list10"]]
    tail = statistics.median(tails)
    print(
        f"  {'p99 / p50, list page_size 10, c=' + str(args.connections):<38}{tail:>6.2f} x  "
        f"{' '.join(f'{x:.2f}' for x in tails):<26}<= 3 x: {verdict[tail <= 3]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
