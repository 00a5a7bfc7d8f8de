"""The worker agent: one thread in every `qcluster` process that, every lease/3 seconds, sweeps
expired leases (so a dead worker's operation is taken over within lease + lease/3 + the broker's poll
interval, 40 s at the defaults) and runs the beats other apps register (the host's liveness row, the
pools' marker health).

Why a thread and not a django-q2 schedule: schedules have minute granularity (a one-minute sweep
puts takeover at up to lease + 60 s + the scheduler's own 30 s cycle); the one-minute `sweep_task`
schedule stays, for queued operations nobody picked up. Every host sweeps: the claim's compare-and-set
lets one attempt win, so concurrent sweeps only cost a few duplicate task rows that end at once.

Started by `CoreConfig.ready()` in the `qcluster` process only (before django-q2 forks its
sentinel and workers: the thread stays in the parent, which lives as long as the cluster).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)

_beats: list[Callable[[], None]] = []
_started = threading.Event()


def register_beat(beat: Callable[[], None]) -> None:
    """Run `beat()` on every agent cycle (in the agent's thread, with its own DB connection)."""
    if beat not in _beats:
        _beats.append(beat)


def cycle() -> None:
    """One agent cycle: the registered beats, then the sweep of expired leases."""
    from sharestore.core.services.operations import operations_sweep, operations_waiting_dispatch

    for beat in tuple(_beats):
        try:
            beat()
        except Exception:  # noqa: BLE001 - one failing beat must not stop the others
            logger.exception("agent beat %s failed", getattr(beat, "__name__", beat))
            connection.close()
    try:
        operations_waiting_dispatch()
    except Exception:  # noqa: BLE001
        logger.exception("agent: dispatch of waiting operations failed")
        connection.close()
    try:
        taken = operations_sweep(queued=False)
        if taken:
            logger.info("agent: re-enqueued %d operation(s) whose lease expired", len(taken))
    except Exception:  # noqa: BLE001 - the database is away: next cycle
        logger.exception("agent sweep failed")
        connection.close()


def _loop(stop: threading.Event) -> None:
    from sharestore.core.services.operations import heartbeat_seconds

    # A moment for the other apps' ready() to register their beats (this starts in core's).
    stop.wait(0.5)
    while True:
        cycle()
        if stop.wait(heartbeat_seconds()):
            break
    connection.close()


def start() -> threading.Event | None:
    """Start the agent thread once per process; returns the event that stops it."""
    if _started.is_set():
        return None
    _started.set()
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop,), name="sharestore-agent", daemon=True).start()
    return stop
