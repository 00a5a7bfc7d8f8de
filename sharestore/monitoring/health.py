"""Liveness and readiness.

`/healthz` answers as long as the process serves requests (no database). `/readyz` runs the
checks below; each returns `Check` results with a name, `ok` and a detail, and the view answers
200 when all are ok, 503 otherwise, with every result in the body.

Each check is a plain function. The pool check is the volumes app's own (`pool_marker_problem`:
the directory, its writability and its identity marker), installed at ready time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from django.apps import apps
from django.db import connections


@dataclass(frozen=True)
class Check:
    """One readiness check's outcome."""

    name: str
    ok: bool
    detail: str


def check_database() -> list[Check]:
    """The default database answers a query."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return [Check("database", False, f"{type(exc).__name__}: {exc}")]
    return [Check("database", True, "reachable")]


def live_worker_hosts() -> set[str]:
    """Host names of the django-q2 clusters that reported recently (their stats are kept in the
    shared cache that Q_CLUSTER["cache"] names, with an expiry: a stopped cluster drops out)."""
    from django_q.conf import Conf
    from django_q.status import Stat

    return {stat.host for stat in Stat.get_all() if str(stat.status) != str(Conf.STOPPED)}


def _active_pools():
    Pool = apps.get_model("volumes", "Pool")
    return Pool.objects.exclude(status="maintenance").prefetch_related("mounts__host").order_by("name")


def check_pool_workers() -> list[Check]:
    """Each pool has a live worker on one of the hosts that mount it.

    Until hosts carry their machine's identity (placement work), a Host row whose name matches no
    live cluster means host identity is not configured: then any live worker counts."""
    try:
        hosts = live_worker_hosts()
    except Exception as exc:  # noqa: BLE001
        return [Check("workers", False, f"cannot read worker status: {type(exc).__name__}: {exc}")]
    if not hosts:
        return [Check("workers", False, "no live worker (is `manage.py qcluster` running?)")]
    results = []
    Host = apps.get_model("volumes", "Host")
    identity_configured = Host.objects.filter(name__in=hosts).exists()
    for pool in _active_pools():
        mount_hosts = {mount.host.name for mount in pool.mounts.all()}
        if identity_configured and mount_hosts:
            live = sorted(mount_hosts & hosts)
            ok = bool(live)
            detail = (
                f"live on {', '.join(live)}" if ok else f"no live worker on {', '.join(sorted(mount_hosts))}"
            )
        else:
            ok, detail = True, f"live worker on {', '.join(sorted(hosts))} (host identity not configured)"
        results.append(Check(f"workers:{pool.name}", ok, detail))
    return results or [Check("workers", True, f"live on {', '.join(sorted(hosts))}")]


# How a pool is judged here (its directory present and writable, carrying its own identity marker):
# the volumes app installs its pool service's check at ready time, so core never imports it.
_pool_problem: Callable[[object], str] | None = None


def set_pool_problem(problem: Callable[[object], str]) -> None:
    """Install `problem(pool) -> ""` (fine) or the reason the pool cannot be used on this host."""
    global _pool_problem
    _pool_problem = problem


def check_pool_storage() -> list[Check]:
    """Each pool's storage is usable from this host: present, writable and carrying its own identity."""
    if _pool_problem is None:
        return [Check("pools", False, "no pool check is installed (the volumes app is not loaded)")]
    results = []
    for pool in _active_pools():
        problem = _pool_problem(pool)
        results.append(
            Check(f"pool:{pool.name}", not problem, problem or f"{pool.path} present, writable, its own")
        )
    return results


CHECKS = [check_database, check_pool_workers, check_pool_storage]


def readiness() -> tuple[bool, list[dict]]:
    results: list[Check] = []
    for check in CHECKS:
        results.extend(check())
        if check is check_database and not results[-1].ok:
            break  # every later check needs the database
    return all(r.ok for r in results), [asdict(r) for r in results]
