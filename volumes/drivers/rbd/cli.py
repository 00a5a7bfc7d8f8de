"""The `rbd` / `ceph` command layer of the RBD driver: the one place that builds their argv.

Runs through `process.run` (argv lists, a timeout on every command, stderr carried into the error)
and reads `--format json`. Each function that changes the cluster is one storage step (the conformance
suite counts them to inject a crash after each). Image data moves through qemu-img (`volumes.drivers.
qemu`) over `rbd:` names, which `qemu_name` builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sharestore import errors
from volumes.drivers import process, qemu

TIMEOUTS = {"inspect": 60.0, "metadata": 120.0, "copy": 24 * 3600.0}
NOT_FOUND = ("No such file or directory", "error opening image", "(2)")


@dataclass(frozen=True)
class Cluster:
    """How to reach one Ceph pool (and namespace): the location `pool[/namespace]:conf=…[:id=…][:keyring=…]`."""

    pool: str
    namespace: str = ""
    conf: str = ""
    user: str = ""
    keyring: str = ""

    @classmethod
    def parse(cls, location: str) -> Cluster:
        where, *options = location.split(":")
        values = dict(option.split("=", 1) for option in options if "=" in option)
        unknown = set(values) - {"conf", "id", "keyring"}
        pool, _, namespace = where.partition("/")
        if not pool or "@" in where or "/" in namespace or unknown or len(values) != len(options):
            raise errors.InvalidParameter(
                field="path",
                reason="an RBD location is pool[/namespace]:conf=<conf file>[:id=<user>][:keyring=<path>]",
            )
        return cls(pool, namespace, values.get("conf", ""), values.get("id", ""), values.get("keyring", ""))

    @property
    def location(self) -> str:
        where = f"{self.pool}/{self.namespace}" if self.namespace else self.pool
        options = [
            f"{k}={v}" for k, v in (("conf", self.conf), ("id", self.user), ("keyring", self.keyring)) if v
        ]
        return ":".join([where, *options])

    @property
    def scope(self) -> str:
        """`pool[/namespace]` as the rbd CLI names a place."""
        return f"{self.pool}/{self.namespace}" if self.namespace else self.pool

    def spec(self, image: str, snap: str | None = None) -> str:
        return f"{self.scope}/{image}" + (f"@{snap}" if snap else "")

    def options(self) -> list[str]:
        argv = []
        if self.conf:
            argv += ["--conf", self.conf]
        if self.user:
            argv += ["--id", self.user]
        if self.keyring:
            argv += ["--keyring", self.keyring]
        return argv

    def qemu_name(self, image: str, snap: str | None = None) -> str:
        """qemu's `rbd:` name of an image or a snapshot (read-only); ':' and '@' in values escaped."""

        def esc(value: str) -> str:
            return value.replace("\\", "\\\\").replace(":", "\\:").replace("@", "\\@")

        name = f"rbd:{esc(self.pool)}/" + (f"{esc(self.namespace)}/" if self.namespace else "") + esc(image)
        if snap:
            name += f"@{esc(snap)}"
        for key, value in (("conf", self.conf), ("id", self.user), ("keyring", self.keyring)):
            if value:
                name += f":{key}={esc(value)}"
        return name


def _run(cluster: Cluster, program: str, args: list[str], kind: str, **kwargs) -> process.CommandResult:
    # Looked up at call time: tests inject faults by replacing `process.run`.
    return process.run([program, *cluster.options(), *args], timeout=TIMEOUTS[kind], **kwargs)


def _json(result: process.CommandResult):
    try:
        return json.loads(result.stdout or "null")
    except ValueError as exc:
        raise errors.StorageError(
            reason=f"{result.argv[0]} printed no JSON", desc=result.stdout[-2000:]
        ) from exc


def missing(exc: errors.StorageError) -> bool:
    """Whether a failed command failed because the image or snapshot is not there."""
    return any(marker in (exc.desc or "") for marker in NOT_FOUND)


# -- reads ----------------------------------------------------------------------------------------


def rbd_json(cluster: Cluster, *args: str, timeout_kind: str = "inspect"):
    return _json(_run(cluster, "rbd", [*args, "--format", "json"], timeout_kind))


def list_long(cluster: Cluster) -> list[dict]:
    return rbd_json(cluster, "ls", "-l", cluster.scope) or []


def list_names(cluster: Cluster, *, connect_timeout: int | None = None) -> list[str]:
    """The pool's image names; with `connect_timeout`, give up connecting after that many seconds."""
    if connect_timeout is None:
        return rbd_json(cluster, "ls", cluster.scope) or []
    argv = ["ls", "--client_mount_timeout", str(connect_timeout), "--format", "json", cluster.scope]
    return _json(process.run(["rbd", *cluster.options(), *argv], timeout=connect_timeout + 5.0)) or []


def image_info(cluster: Cluster, image: str) -> dict | None:
    try:
        return rbd_json(cluster, "info", cluster.spec(image))
    except process.CommandFailed as exc:
        if missing(exc):
            return None
        raise


def snaps(cluster: Cluster, image: str) -> list[dict]:
    return rbd_json(cluster, "snap", "ls", cluster.spec(image)) or []


def children(cluster: Cluster, image: str, snap: str) -> list[dict]:
    return rbd_json(cluster, "children", "--all", cluster.spec(image, snap)) or []


def diff(
    cluster: Cluster,
    image: str,
    snap: str | None = None,
    *,
    since: str | None = None,
    holes: bool = False,
    whole_objects: bool = False,
) -> list[dict]:
    """`rbd diff` extents holding data (`holes`: also those that became holes, `exists` false).
    `whole_objects`: whole RBD objects, answered from the object map (fast-diff) in time independent
    of the image's size; otherwise exact byte ranges, which visits every object."""
    args = [
        "diff",
        *(["--whole-object"] if whole_objects else []),
        *(["--from-snap", since] if since else []),
    ]
    args.append(cluster.spec(image, snap))
    return [e for e in rbd_json(cluster, *args) or [] if holes or e.get("exists") in ("true", True)]


def du(cluster: Cluster, image: str, snap: str | None = None) -> int:
    """`rbd du` used bytes of the image's head (or of one snapshot): its own objects, from the object map."""
    rows = rbd_json(cluster, "du", cluster.spec(image, snap)).get("images", [])
    return sum(int(r["used_size"]) for r in rows if r.get("snapshot") == snap and r["name"] == image)


def meta(cluster: Cluster, image: str) -> dict[str, str]:
    return rbd_json(cluster, "image-meta", "list", cluster.spec(image)) or {}


def cluster_df(cluster: Cluster) -> dict:
    return _json(_run(cluster, "ceph", ["df", "--format", "json"], "inspect"))


def osd_stat(cluster: Cluster) -> dict:
    return _json(_run(cluster, "ceph", ["osd", "dump", "--format", "json"], "inspect"))


# -- writes (each one storage step) ----------------------------------------------------------------


def create(cluster: Cluster, image: str, size: int) -> None:
    _run(
        cluster,
        "rbd",
        ["create", "--image-format", "2", "--size", f"{int(size)}B", cluster.spec(image)],
        "metadata",
    )


def remove(cluster: Cluster, image: str) -> None:
    _run(cluster, "rbd", ["rm", "--no-progress", cluster.spec(image)], "copy")


def rename(cluster: Cluster, source: str, target: str) -> None:
    _run(cluster, "rbd", ["rename", cluster.spec(source), cluster.spec(target)], "metadata")


def resize(cluster: Cluster, image: str, size: int) -> None:
    _run(
        cluster,
        "rbd",
        ["resize", "--no-progress", "--size", f"{int(size)}B", cluster.spec(image)],
        "metadata",
    )


def set_meta(cluster: Cluster, image: str, key: str, value: str) -> None:
    """Set an image's metadata key; an empty value removes the key (RBD refuses empty values)."""
    if value:
        _run(cluster, "rbd", ["image-meta", "set", cluster.spec(image), key, value], "metadata")
    elif key in meta(cluster, image):
        _run(cluster, "rbd", ["image-meta", "remove", cluster.spec(image), key], "metadata")


def snap_create(cluster: Cluster, image: str, snap: str) -> None:
    _run(cluster, "rbd", ["snap", "create", "--no-progress", cluster.spec(image, snap)], "metadata")


def snap_remove(cluster: Cluster, image: str, snap: str) -> None:
    _run(cluster, "rbd", ["snap", "rm", "--no-progress", cluster.spec(image, snap)], "metadata")


def snap_protect(cluster: Cluster, image: str, snap: str) -> None:
    _run(cluster, "rbd", ["snap", "protect", cluster.spec(image, snap)], "metadata")


def snap_unprotect(cluster: Cluster, image: str, snap: str) -> None:
    _run(cluster, "rbd", ["snap", "unprotect", cluster.spec(image, snap)], "metadata")


def snap_rollback(cluster: Cluster, image: str, snap: str) -> None:
    _run(cluster, "rbd", ["snap", "rollback", "--no-progress", cluster.spec(image, snap)], "copy")


def clone(cluster: Cluster, image: str, snap: str, target: Cluster, name: str) -> None:
    _run(cluster, "rbd", ["clone", cluster.spec(image, snap), target.spec(name)], "metadata")


def flatten(cluster: Cluster, image: str) -> None:
    _run(cluster, "rbd", ["flatten", "--no-progress", cluster.spec(image)], "copy")


def copy(source: str, target: str, *, fmt: str, out_fmt: str, compress: bool = False, progress=None) -> None:
    """Copy guest-visible content with qemu-img (`rbd:` names and files alike); qemu creates the target."""
    qemu.convert(source, target, fmt=fmt, out_fmt=out_fmt, compress=compress, progress=progress)
