"""Helpers shared by tests (importable: `from tests.helpers import ...`)."""

import os

from django.test import TestCase

from sharestore.core.models import AuditEvent, Operation
from tests.conftest import (  # noqa: F401
    CLUSTER,
    HOST,
    POOL_BBB,
    POOL_DISKS,
    TENANT,
    image_info,
    pattern_matches,
    qemu_img,
    qemu_io,
    scoped,
)
from volumes.models import Snapshot, Volume


def success_envelope(data) -> dict:
    """The whole body of a successful API response carrying `data`."""
    return {"scode": 0, "desc": "", "message": "success", "message_cn": "成功", "stack": None, "data": data}


def assert_error(status, body, expected_status, expected_scode):
    """An error response: the status and scode expected, the envelope's keys, both languages' messages."""
    assert (status, body["scode"]) == (expected_status, expected_scode), body
    assert set(body) == {"scode", "desc", "message", "message_cn", "stack", "data"}
    assert body["data"] is None and body["stack"] is None
    assert body["message"] and body["message_cn"] and body["message"] != body["message_cn"]


def storage_state(data_dir) -> tuple:
    """Rows and files a refused request must leave as they were (compare before and after)."""
    files = sorted(
        os.path.relpath(os.path.join(d, f), data_dir) for d, _, fs in os.walk(data_dir) for f in fs
    )
    return (
        tuple(
            Volume.objects.order_by("pk").values_list(
                "pk", "state", "name", "current_snapshot_id", "parent_snapshot_id", "modified"
            )
        ),
        tuple(Snapshot.objects.order_by("pk").values_list("pk", "name", "status", "parent_id", "modified")),
        Operation.objects.count(),
        AuditEvent.objects.count(),
        tuple(files),
    )


def identical(a: str, b: str) -> bool:
    """Whether two qcow2 images show the same guest content (`qemu-img compare`; -U: read while open)."""
    result = qemu_img("compare", "-U", "-f", "qcow2", "-F", "qcow2", a, b, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def run_tasks():
    """Run what the enclosed transaction enqueues when it commits (the tests' sync django-q2)."""
    return TestCase.captureOnCommitCallbacks(execute=True)


# The data migrations that write django-q2's schedules, in the order `migrate` applies them.
_SCHEDULE_MIGRATIONS = (
    ("volumes.migrations.0002_sweep_schedule", "add_schedule"),
    ("sharestore.core.migrations.0002_error_params_task_entry", "rename_sweep"),
    ("volumes.migrations.0006_usage_reconcile_schedules", "add_schedules"),
    ("backups.migrations.0003_backup_schedules", "add_schedules"),
)


def schedules_as_migrated() -> None:
    """Write the schedules again through the migrations' own functions (each an update_or_create):
    a transactional test run earlier in the same process flushes every table, and under pytest-xdist
    that order is not Django's (plain test cases before transactional ones)."""
    import importlib

    from django.apps import apps

    for module, function in _SCHEDULE_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, None)
