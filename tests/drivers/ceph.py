"""A throw-away single-node Ceph for tests: one monitor, one memstore OSD and a manager (for
`ceph df`) under a temporary directory, no authentication, pool size 1. Started as root (CI); `CephUnavailable`
says why it could not start, and the fixture skips with that reason.

Images are made with 64 KiB objects (`rbd default order = 16`) so that usage figures are exact to a
qcow2 cluster, as the conformance suites measure them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("ceph", "ceph-mon", "ceph-osd", "ceph-mgr", "monmaptool", "rbd")
MGR_MODULES = "/usr/share/ceph/mgr"  # Debian's ceph-mgr Python modules
START_TIMEOUT = 90.0


class CephUnavailable(Exception):
    """Ceph cannot start here (not root, binaries missing, or the daemons did not come up)."""


@dataclass
class CephCluster:
    """A running test cluster: its ceph.conf, its RBD pool and the daemons to stop."""

    directory: Path
    conf: str
    pool: str = "rbd"
    processes: list[subprocess.Popen] = field(default_factory=list)

    def location(self, namespace: str = "") -> str:
        """A pool location for the RBD driver: `pool[/namespace]:conf=<path>`."""
        where = f"{self.pool}/{namespace}" if namespace else self.pool
        return f"{where}:conf={self.conf}"

    def namespace(self, name: str) -> str:
        """Create an empty RBD namespace (a fresh pool for one test) and return its location."""
        self.cli("rbd", "namespace", "create", f"{self.pool}/{name}")
        return self.location(name)

    def cli(self, *argv: str, timeout: float = 60.0) -> str:
        done = subprocess.run(
            [argv[0], "--conf", self.conf, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise CephUnavailable(
                f"{' '.join(argv[:3])} exited {done.returncode}: {done.stderr.strip()[-800:]}"
            )
        return done.stdout

    def stop(self) -> None:
        # Killed outright: nothing of a throw-away memstore cluster is worth a clean shutdown, and
        # the OSD took 5 s to stop on SIGTERM (at the end of every session).
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.processes:
            proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _conf(directory: Path, fsid: str, port: int) -> str:
    # `mon osd initial require min compat client = mimic`: clone v2 (clones across namespaces, no
    # protect needed) needs mimic clients or newer; set in the first OSD map, one `ceph` call fewer.
    return f"""[global]
fsid = {fsid}
mon host = 127.0.0.1:{port}
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 4294967296
osd crush chooseleaf type = 0
rbd default order = 16
rbd default clone format = 2
rbd default features = layering,exclusive-lock,object-map,fast-diff,deep-flatten
run dir = {directory}/run
log file = {directory}/log/$name.log
admin socket = {directory}/run/$name.asok
pid file = {directory}/run/$name.pid
mon data = {directory}/mon/$cluster-$id
osd data = {directory}/osd/$cluster-$id
mgr data = {directory}/mgr/$cluster-$id
mgr stats period = 1
mon pg warn min per osd = 0
osd journal size = 100
ms bind ipv6 = false
mon osd initial require min compat client = mimic
mgr module path = {directory}/mgr-modules
"""


def start(directory: Path) -> CephCluster:
    """Start a monitor and an OSD under `directory`, create the `rbd` pool, wait until it serves I/O."""
    if os.geteuid() != 0:
        raise CephUnavailable("a test Ceph cluster needs root")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise CephUnavailable(f"not installed: {', '.join(missing)} (apt-get install ceph ceph-common)")
    for sub in ("run", "log", "mon/ceph-a", "osd/ceph-0", "mgr/ceph-x", "mgr-modules"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    # The manager runs none of its Python modules (its C++ core answers `ceph df`): loading them
    # took it ~20 s on a loaded 2-core machine before it reported capacity. It needs their base.
    for base in ("mgr_module.py", "mgr_util.py"):
        if os.path.isfile(f"{MGR_MODULES}/{base}"):
            os.symlink(f"{MGR_MODULES}/{base}", directory / "mgr-modules" / base)
    fsid, port = str(uuid.uuid4()), _free_port()
    conf = directory / "ceph.conf"
    conf.write_text(_conf(directory, fsid, port))
    cluster = CephCluster(directory=directory, conf=str(conf))
    try:
        monmap = str(directory / "monmap")
        _run(["monmaptool", "--create", "--add", "a", f"127.0.0.1:{port}", "--fsid", fsid, monmap])
        _run(["ceph-mon", "--conf", str(conf), "--mkfs", "-i", "a", "--monmap", monmap])
        cluster.processes.append(_daemon(["ceph-mon", "--conf", str(conf), "-f", "-i", "a"], directory))
        osd_id = cluster.cli("ceph", "osd", "create", timeout=START_TIMEOUT).strip()
        _run(["ceph-osd", "--conf", str(conf), "--mkfs", "-i", osd_id])
        cluster.processes.append(_daemon(["ceph-osd", "--conf", str(conf), "-f", "-i", osd_id], directory))
        # A manager only for capacity figures (`ceph df`): the pool serves I/O without it.
        cluster.processes.append(_daemon(["ceph-mgr", "--conf", str(conf), "-f", "-i", "x"], directory))
        _wait_osd_up(cluster)
        cluster.cli("ceph", "osd", "pool", "create", cluster.pool, "8")
        # The first write to the pool waits for its placement groups to peer (no manager reports
        # them): `rbd pool init` returning means the pool serves I/O.
        cluster.cli("rbd", "pool", "init", cluster.pool, timeout=START_TIMEOUT)
        _wait_capacity(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if done.returncode != 0:
        raise CephUnavailable(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-800:]}")


def _daemon(argv: list[str], directory: Path) -> subprocess.Popen:
    log = open(directory / "log" / f"{argv[0]}.stderr", "ab")  # noqa: SIM115 (kept by the daemon)
    return subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_capacity(cluster: CephCluster) -> None:
    """Until the manager reports the cluster's capacity (the RBD driver's `space()`)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if json.loads(cluster.cli("ceph", "df", "--format", "json"))["stats"].get("total_bytes"):
            return
        time.sleep(0.5)
    raise CephUnavailable(f"the manager reports no capacity after {START_TIMEOUT:.0f} s")


def _wait_osd_up(cluster: CephCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for proc in cluster.processes:
            if proc.poll() is not None:
                raise CephUnavailable(f"{proc.args[0]} exited {proc.returncode}; see {cluster.directory}/log")
        osds = json.loads(cluster.cli("ceph", "osd", "dump", "--format", "json"))["osds"]
        if osds and all(o["up"] and o["in"] for o in osds):
            return
        time.sleep(0.2)
    raise CephUnavailable(f"the OSD is not up after {START_TIMEOUT:.0f} s; see {cluster.directory}/log")
