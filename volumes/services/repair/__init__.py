"""Operator repairs, one module each: reconcile the database with the files (`reconcile`), reset a
stuck state (`reset_state`), force delete (`force_delete`), refresh usage (`usage`) and retry a
failed operation (`retry`); `findings` holds the report types, `common` what several share.

Each repair is one service function that the console (admin) and `manage.py` call, and each has a
read-only preview: `reconcile(fix=False)`, `reset_state_preview`, `force_delete_preview`,
`refresh_usage(dry_run=True)`, `operation_retry_check`. The apply step inspects again and acts on
what it finds then, never on the stale preview: a reset or a force delete compares-and-sets from
the state the operator saw and refuses (RepairPreviewStale) if the files now tell another story.

Reading images here is metadata only (`qemu-img info` and `check -U`): fast enough for a preview
page. Removing a volume's files always runs in the ordinary delete task, never in the request.
Reconcile never rewrites a backing chain: that is data surgery it only reports.

Importing the package registers the pool reconcile scope and the volume retries; the names below are
the entry points the console, the commands and the API call.
"""

from volumes.services.repair.findings import DEFAULT_GRACE_SECONDS
from volumes.services.repair.force_delete import force_delete, force_delete_preview
from volumes.services.repair.reconcile import pool_targets, reconcile
from volumes.services.repair.reset_state import reset_state, reset_state_preview
from volumes.services.repair.retry import operation_retry, operation_retry_check
from volumes.services.repair.usage import refresh_usage, volume_usage_refresh

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "force_delete",
    "force_delete_preview",
    "operation_retry",
    "operation_retry_check",
    "pool_targets",
    "reconcile",
    "refresh_usage",
    "reset_state",
    "reset_state_preview",
    "volume_usage_refresh",
]
