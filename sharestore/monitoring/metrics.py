"""Prometheus metrics.

Two kinds of series:

- request latency and counts, observed in the process that served the request. Under gunicorn
  with several workers each process keeps its own; set ``PROMETHEUS_MULTIPROC_DIR`` (an empty,
  writable directory, emptied at each start: the service unit does it) and `/metrics` aggregates
  every worker's files (prometheus-client's multiprocess mode). Without it a scrape sees the
  worker that answered it only.
- everything else (operations by kind and state, queue depth, operation durations, pool and
  backup-point bytes) is read from the database at scrape time by `DatabaseCollector`, with a few
  aggregate queries, so it is the same whichever process answers.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.apps import apps
from django.db.models import Count, ExpressionWrapper, F, Q, Sum
from django.db.models import DurationField as DjangoDurationField
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

REQUEST_LATENCY = Histogram(
    "sharestore_http_request_duration_seconds",
    "Time to answer a request, by URL name and method.",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUESTS = Counter(
    "sharestore_http_requests",
    "Requests answered, by URL name, method and status code.",
    ["endpoint", "method", "status"],
)

# Operation durations (started -> finished), seconds: from a second to a day.
OPERATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class DatabaseCollector:
    """Gauges and the operation-duration histogram, computed from the database on each scrape."""

    def collect(self):
        yield from self._operations()
        yield self._queue_depth()
        yield from self._operation_durations()
        yield from self._pools()
        yield from self._backup_points()

    def _operations(self):
        Operation = apps.get_model("core", "Operation")
        gauge = GaugeMetricFamily(
            "sharestore_operations", "Operations by kind and state.", labels=["kind", "state"]
        )
        for row in Operation.objects.order_by().values("kind", "state").annotate(n=Count("id")):
            gauge.add_metric([row["kind"], row["state"]], row["n"])
        yield gauge

    def _queue_depth(self):
        OrmQ = apps.get_model("django_q", "OrmQ")
        gauge = GaugeMetricFamily("sharestore_queue_depth", "Tasks waiting in django-q2's ORM broker.")
        gauge.add_metric([], OrmQ.objects.count())
        return gauge

    def _operation_durations(self):
        Operation = apps.get_model("core", "Operation")
        duration = ExpressionWrapper(F("finished") - F("started"), output_field=DjangoDurationField())
        buckets = {
            f"le_{i}": Count("id", filter=Q(duration__lte=timedelta(seconds=bound)))
            for i, bound in enumerate(OPERATION_BUCKETS)
        }
        rows = (
            Operation.objects.filter(started__isnull=False, finished__isnull=False)
            .annotate(duration=duration)
            .order_by()
            .values("kind", "state")
            .annotate(total=Count("id"), seconds=Sum("duration"), **buckets)
        )
        family = HistogramMetricFamily(
            "sharestore_operation_duration_seconds",
            "Finished operations' run time (started to finished), by kind and outcome.",
            labels=["kind", "state"],
        )
        for row in rows:
            cumulative = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(OPERATION_BUCKETS)]
            cumulative.append(("+Inf", row["total"]))
            seconds = row["seconds"].total_seconds() if row["seconds"] else 0.0
            family.add_metric([row["kind"], row["state"]], cumulative, seconds)
        yield family

    def _pools(self):
        from volumes.services.pools import pool_usage

        Pool = apps.get_model("volumes", "Pool")
        labels = ["pool", "name"]
        capacity = GaugeMetricFamily(
            "sharestore_pool_capacity_bytes", "Bytes the pool offers.", labels=labels
        )
        allocated = GaugeMetricFamily(
            "sharestore_pool_allocated_bytes", "Sum of its live volumes' capacities.", labels=labels
        )
        used = GaugeMetricFamily(
            "sharestore_pool_used_bytes", "Bytes its volumes' and snapshots' files occupy.", labels=labels
        )
        for pool in Pool.objects.order_by("name"):
            usage = pool_usage(pool, filesystem=False)
            values = [str(pool.uuid), pool.name]
            capacity.add_metric(values, usage.capacity)
            allocated.add_metric(values, usage.committed)
            used.add_metric(values, usage.allocated)
        yield from (capacity, allocated, used)

    def _backup_points(self):
        BackupPoint = apps.get_model("backups", "BackupPoint")
        Backup = apps.get_model("backups", "Backup")
        from backups.choices import SPACE_HOLDING_STATUSES

        labels = ["backup_point", "name"]
        capacity = GaugeMetricFamily(
            "sharestore_backup_point_capacity_bytes", "Bytes the backup point may hold.", labels=labels
        )
        allocated = GaugeMetricFamily(
            "sharestore_backup_point_allocated_bytes",
            "Sum of the capacities of the volumes its live backups copy.",
            labels=labels,
        )
        used = GaugeMetricFamily(
            "sharestore_backup_point_used_bytes", "Bytes its backups occupy as recorded.", labels=labels
        )
        sums = {
            row["backup_point"]: row
            for row in Backup.objects.filter(status__in=SPACE_HOLDING_STATUSES)
            .order_by()
            .values("backup_point")
            .annotate(size=Sum("size"), volume_bytes=Sum("volume_capacity"))
        }
        for point in BackupPoint.objects.order_by("name"):
            row = sums.get(point.pk, {})
            values = [str(point.uuid), point.name]
            capacity.add_metric(values, point.capacity)
            allocated.add_metric(values, row.get("volume_bytes") or 0)
            used.add_metric(values, row.get("size") or 0)
        yield from (capacity, allocated, used)


_DATABASE = CollectorRegistry(auto_describe=False)
_DATABASE.register(DatabaseCollector())


def render() -> tuple[bytes, str]:
    """The exposition text: this process's (or, in multiprocess mode, every worker's) request
    series, then the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests)
    else:
        requests = REGISTRY
    return generate_latest(requests) + generate_latest(_DATABASE), CONTENT_TYPE_LATEST
