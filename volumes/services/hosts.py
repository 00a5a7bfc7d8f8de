"""Storage hosts: which host a worker runs on, their liveness, and where an operation may run.

A worker started with `SHARESTORE_HOST=<Host name or UUID>` runs on that host: its `qcluster`
listens on the django-q2 queue `host-<SHARESTORE_HOST>` (settings.Q_CLUSTER['cluster_name']), and its
agent (`sharestore.core.agent`) writes the Host row's `queue` and `last_seen` every heartbeat. The
pools a host mounts are its PoolMount rows. An operation is sent to the queue of a live host that
mounts every pool it touches (`operation_route`); with no such host it waits, visibly, and fails with
NoLiveHost after SHARESTORE_HOST_WAIT_SECONDS. With no worker running under SHARESTORE_HOST (one
machine, the embedded default) every operation goes to the default queue, as before.
"""

from __future__ import annotations

import logging
import uuid as uuid_lib
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sharestore.core.models import Operation
from sharestore.core.services.placement import Route
from volumes.models import Host, Pool, PoolMount, Volume

logger = logging.getLogger(__name__)
WAITING_PREFIX = "waiting for a host that mounts pool"


def host_setting() -> str:
    return (getattr(settings, "SHARESTORE_HOST", "") or "").strip()


def host_queue_name(value: str | None = None) -> str:
    return f"host-{value if value is not None else host_setting()}"


def current_host() -> Host | None:
    """The Host row this process runs on (SHARESTORE_HOST, a name or a UUID), or None when unset."""
    value = host_setting()
    if not value:
        return None
    try:
        return Host.objects.filter(uuid=uuid_lib.UUID(value)).first()
    except ValueError:
        return Host.objects.filter(name=value).order_by("pk").first()


def live_seconds() -> float:
    return float(getattr(settings, "SHARESTORE_HOST_LIVE_SECONDS", 0) or settings.SHARESTORE_LEASE_SECONDS)


def live_hosts():
    """Hosts whose storage worker wrote its heartbeat within SHARESTORE_HOST_LIVE_SECONDS."""
    return Host.objects.exclude(queue="").filter(
        last_seen__gte=timezone.now() - timedelta(seconds=live_seconds())
    )


def host_beat() -> None:
    """Agent beat: publish this host's liveness and queue (nothing when SHARESTORE_HOST is unset)."""
    value = host_setting()
    if not value:
        return
    host = current_host()
    if host is None:
        logger.error("SHARESTORE_HOST=%s names no Host row: this worker receives no operations", value)
        return
    Host.objects.filter(pk=host.pk).update(queue=host_queue_name(value), last_seen=timezone.now())


def pools_beat() -> None:
    """Agent beat: check the identity marker of the pools this host mounts (every pool when
    SHARESTORE_HOST is unset) and show it in the pools' status."""
    from volumes.services.pools import pools_health_refresh

    host = current_host() if host_setting() else None
    pools = Pool.objects.all()
    if host is not None:
        pools = pools.filter(mounts__host=host)
    elif host_setting():
        return
    pools_health_refresh(
        actor=f"worker {host_setting() or 'default'}", pools=pools.exclude(status="maintenance")
    )


def operation_pools(operation: Operation) -> list[Pool]:
    """Every pool an operation touches: its volume's pool and, for a clone, the source's pool."""
    pool_ids = set()
    if operation.volume_id:
        pool_ids.update(Volume.objects.filter(pk=operation.volume_id).values_list("pool_id", flat=True))
    source = (operation.params or {}).get("source_volume")
    if source:
        pool_ids.update(Volume.objects.filter(uuid=source).values_list("pool_id", flat=True))
    return list(Pool.objects.filter(pk__in=pool_ids).order_by("name"))


def hosts_for_pools(pools: list[Pool]):
    """Live hosts that mount every one of `pools`."""
    hosts = live_hosts()
    for pool in pools:
        hosts = hosts.filter(pk__in=PoolMount.objects.filter(pool=pool).values("host_id"))
    return hosts


def pool_has_live_worker(pool: Pool) -> bool:
    """Whether a live storage worker mounts the pool (for health endpoints such as /readyz).
    True in the embedded mode, where no worker runs under SHARESTORE_HOST."""
    if not Host.objects.exclude(queue="").exists():
        return True
    return hosts_for_pools([pool]).exists()


def this_host_mounts(operation: Operation) -> bool:
    """Whether this worker's host mounts every pool of the operation (always, without SHARESTORE_HOST)."""
    if not host_setting():
        return True
    host = current_host()
    if host is None:
        return False
    mounted = set(PoolMount.objects.filter(host=host).values_list("pool_id", flat=True))
    return all(pool.pk in mounted for pool in operation_pools(operation))


def operation_route(operation: Operation) -> Route:
    """Where to send the operation: the default queue (no hosts), a live host's queue, or wait."""
    if not Host.objects.exclude(queue="").exists():
        return Route(queue=None)
    pools = operation_pools(operation)
    hosts = list(hosts_for_pools(pools).order_by("last_seen"))
    if hosts:
        # Spread by operation: the same operation goes to the same host while it stays live.
        return Route(queue=hosts[operation.pk % len(hosts)].queue)
    unreachable = [p for p in pools if not hosts_for_pools([p]).exists()] or pools
    names = ", ".join(p.name for p in unreachable) or "(none)"
    return Route(
        queue=None, waiting=f"{WAITING_PREFIX} {names}", pool=str(unreachable[0].uuid) if unreachable else ""
    )


def operation_preflight(operation: Operation) -> None:
    """Before every attempt: each pool the operation touches holds its own identity marker here."""
    from volumes.services.volumes import pool_driver

    for pool in operation_pools(operation):
        pool_driver(pool).check_available()
