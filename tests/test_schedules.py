"""The django-q2 schedules installed by the migrations, their tasks, and the queue's own commands."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django_q.models import Schedule

from tests.helpers import schedules_as_migrated
from volumes import tasks

EXPECTED = {
    "sharestore: sweep expired operations": "sharestore.core.tasks.sweep_task",
    "sharestore: delete expired backups": "backups.tasks.prune_task",
    "sharestore: verify backups": "backups.tasks.verify_task",
    "sharestore: refresh volume usage": "volumes.tasks.refresh_usage_task",
    "sharestore: reconcile report": "volumes.tasks.reconcile_report_task",
}


@pytest.mark.django_db
def test_every_schedule_installed_and_visible_in_the_admin():
    schedules_as_migrated()
    assert dict(Schedule.objects.values_list("name", "func")) == EXPECTED
    admin = get_user_model().objects.create_superuser("admin", "", "pw")
    client = Client()
    client.force_login(admin)
    page = client.get("/admin/django_q/schedule/").content.decode()
    for name in EXPECTED:
        assert name in page


def test_reconcile_report_reports_and_fixes_nothing(topology, caplog):
    pool = topology["pools"][0]
    orphan = f"{pool.path}/volume/orphan-file"
    import os

    os.makedirs(os.path.dirname(orphan), exist_ok=True)
    with open(orphan, "wb") as handle:
        handle.write(b"x")
    os.utime(orphan, (0, 0))  # older than any grace period
    assert tasks.reconcile_report_task() >= 1
    assert os.path.exists(orphan)
    assert "orphan" in caplog.text


def test_refresh_usage_task_runs(topology):
    assert tasks.refresh_usage_task() == 0


@pytest.mark.django_db
def test_qinfo_runs(capsys):
    # "Blessed is not installed" until blessed is a dependency.
    call_command("qinfo")
    assert "Clusters" in capsys.readouterr().out
