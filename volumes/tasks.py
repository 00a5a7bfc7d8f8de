"""Scheduled django-q2 tasks of the volumes app: refresh usage, and a reconcile report.

The volumes' operations run through the one task entry (`sharestore.core.tasks.operation_task`).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

SCHEDULE_ACTOR = "schedule"


def refresh_usage_task() -> int:
    """Scheduled: re-measure every volume's allocated bytes (metadata only); returns values written."""
    from volumes.services.repair.usage import refresh_usage

    report = refresh_usage(actor=SCHEDULE_ACTOR)
    if report.errors:
        logger.warning("usage refresh: %s error(s)", len(report.errors))
    return len(report.changes)


def reconcile_report_task() -> int:
    """Scheduled: reconcile every pool and backup point as a report only (never fixes: an operator
    reads it on the console's reconcile screen or runs `manage.py reconcile --fix`); returns the
    number of findings, each logged."""
    from volumes.services.repair.reconcile import reconcile

    findings = 0
    for report in reconcile(actor=SCHEDULE_ACTOR, fix=False):
        if report.error:
            logger.warning("reconcile report: %s %s unreadable: %s", report.scope, report.name, report.error)
        for finding in report.findings:
            findings += 1
            logger.warning("reconcile report: %s %s: %s", report.scope, report.name, finding)
    logger.info("reconcile report: %s finding(s)", findings)
    return findings
