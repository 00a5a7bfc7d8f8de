"""Fault injection for tests with real workers: pause at a named point, silently (no progress).

Enabled only by the environment variable SHARESTORE_FAULT_PAUSE, which tests set on the `qcluster`
processes they start: `point:seconds[,point:seconds]`, e.g. `publish:45` sleeps 45 s just before each
file is published (a silent step longer than the lease). Points: `run` (an attempt starts its
handler), `publish` (before a rename into place). Unset, `pause` costs one dict lookup.
"""

from __future__ import annotations

import logging
import os
import time

logger = logging.getLogger(__name__)
ENV = "SHARESTORE_FAULT_PAUSE"


def _points() -> dict[str, float]:
    spec = os.environ.get(ENV, "")
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition(":")
        points[name] = float(seconds or 0)
    return points


def pause(point: str) -> None:
    if ENV not in os.environ:
        return
    seconds = _points().get(point)
    if seconds:
        logger.warning("fault injection: pausing %.1f s at %s", seconds, point)
        time.sleep(seconds)
