"""django-q2 tasks of the core app: the one entry every operation runs through, and the sweeper.

`operation_task` is a plain function taking a primary key, idempotent: `operation_run` claims the
operation by compare-and-set and does nothing if it is finished, gone or held by a live owner.
"""

from __future__ import annotations

import logging

from sharestore.core.dispatch import handler_for
from sharestore.core.models import Operation
from sharestore.core.services.operations import enqueue, operation_run, operations_sweep
from sharestore.core.services.placement import runs_here

logger = logging.getLogger(__name__)


def operation_task(operation_id: int) -> None:
    """Run the operation with the handler registered for its kind."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None:
        logger.info("operation %s is gone; nothing to do", operation_id)
        return
    if not runs_here(operation):
        # Routed here before a mount changed (or by hand): send it where its pools are mounted.
        logger.warning("operation %s: this host does not mount its pools; re-routing", operation.uuid)
        enqueue(operation, now=True, suffix=":reroute")
        return
    operation_run(operation_id, handler_for(operation.kind))


def sweep_task() -> int:
    """Scheduled: re-enqueue operations whose lease expired, so their handlers finish or roll back."""
    return len(operations_sweep())
