"""When an operation whose lease expired is taken over, read from the sweep's own settings.

A running attempt renews its lease every `heartbeat_seconds()`; every `qcluster` agent sweeps expired
leases at that same interval (`sharestore.core.agent`) and re-enqueues them through the broker, which
a worker polls every `Q_CLUSTER["poll"]` seconds. So an operation whose lease expired at T is taken
over by T + one sweep interval + the broker's poll, if any worker is alive (the minutely `sweep_task`
schedule is the backstop when no agent runs). Until the sweep has had its chance, nobody may conclude
that the work is dead: the reset-state repair refuses during `takeover_window_end` (T + one sweep
interval + a margin, SHARESTORE_TAKEOVER_MARGIN_SECONDS, default one more sweep interval).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from sharestore.core.choices import OperationState
from sharestore.core.services.operations import heartbeat_seconds


def sweep_interval_seconds() -> float:
    """How often the agents sweep expired leases (the heartbeat interval, a third of the lease)."""
    return heartbeat_seconds()


def broker_poll_seconds() -> float:
    return float(getattr(settings, "Q_CLUSTER", {}).get("poll", 0.2) or 0.2)


def takeover_margin_seconds() -> float:
    """What the reset-state refusal adds after the sweep: the broker's delivery and the claim."""
    configured = getattr(settings, "SHARESTORE_TAKEOVER_MARGIN_SECONDS", None)
    return float(configured) if configured is not None else sweep_interval_seconds()


def lease_expired(operation, now: datetime | None = None) -> bool:
    return bool(
        operation.state == OperationState.RUNNING
        and operation.lease_expires_at
        and operation.lease_expires_at < (now or timezone.now())
    )


def expected_takeover_at(lease_expires_at: datetime) -> datetime:
    """When the sweep re-enqueues an operation whose lease expired at `lease_expires_at` and a live
    worker claims it: the next agent sweep plus the broker's poll."""
    return lease_expires_at + timedelta(seconds=sweep_interval_seconds() + broker_poll_seconds())


def takeover_window_end(lease_expires_at: datetime) -> datetime:
    """Until when an expired lease means "the sweep has not had its chance yet", not "dead"."""
    return lease_expires_at + timedelta(seconds=sweep_interval_seconds() + takeover_margin_seconds())


def awaiting_takeover(operation, now: datetime | None = None) -> bool:
    """The operation's lease expired, but the sweep may still give it to a live worker."""
    now = now or timezone.now()
    return lease_expired(operation, now) and now < takeover_window_end(operation.lease_expires_at)
