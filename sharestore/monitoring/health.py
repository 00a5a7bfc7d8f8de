"""Liveness and readiness.

`/healthz` answers as long as the process serves requests (no database). `/readyz` runs the
checks below; each returns `Check` results with a name, `ok` and a detail, and the view answers
200 when all are ok, 503 otherwise, with every result in the body.

Each check is a plain function so that others can be swapped in: the pool identity marker check
(`check_pool_identity`) and the per-host worker check are meant to be replaced by the placement
service's "live worker per pool" and "pool marker ok" when it lands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.apps import apps
from django.db import connections

from sharestore import errors


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
            detail = f"live on {', '.join(live)}" if ok else f"no live worker on {', '.join(sorted(mount_hosts))}"
        else:
            ok, detail = True, f"live worker on {', '.join(sorted(hosts))} (host identity not configured)"
        results.append(Check(f"workers:{pool.name}", ok, detail))
    return results or [Check("workers", True, f"live on {', '.join(sorted(hosts))}")]


def check_pool_directories() -> list[Check]:
    """Each pool's storage is reachable here and writable (its driver's `check_available`)."""
    from volumes.drivers import get_driver

    results = []
    for pool in _active_pools():
        try:
            get_driver(pool.driver, pool.path).check_available()
        except errors.PoolUnavailable as exc:
            results.append(Check(f"pool:{pool.name}", False, f"{pool.path}: {exc.params.get('reason', '')}"))
        else:
            results.append(Check(f"pool:{pool.name}", True, f"{pool.path} present and writable"))
    return results


def check_pool_identity() -> list[Check]:
    """Each pool directory carries its own identity marker. Placeholder: the multi-host work
    plugs its marker check in here (a pool mounted where another pool's marker is)."""
    return []


CHECKS = [check_database, check_pool_workers, check_pool_directories, check_pool_identity]


def readiness() -> tuple[bool, list[dict]]:
    results: list[Check] = []
    for check in CHECKS:
        results.extend(check())
        if check is check_database and not results[-1].ok:
            break  # every later check needs the database
    return all(r.ok for r in results), [asdict(r) for r in results]
