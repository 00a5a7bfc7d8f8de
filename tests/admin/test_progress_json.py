"""progress.json: the live figures the console's polling script reads (state, phase, percent, bytes,
throughput, time left, lease), in a constant number of queries, for staff who may view operations."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services import leases

MiB = 1 << 20
URL = "admin:core_operation_progress"


def operation(state=OperationState.RUNNING, **fields) -> Operation:
    values = {
        "kind": OperationKind.CLONE_FULL,
        "state": state,
        "target_type": "volume",
        "target_uuid": "8c1f2b0e-5a4d-4c11-9b7e-2f0d3c4b5a69",
        "owner": "w",
        "lease_expires_at": timezone.now() + timedelta(minutes=5),
        **fields,
    }
    return Operation.objects.create(**values)


def progress(client, *ops):
    return client.get(reverse(URL) + "?ids=" + ",".join(str(o.pk) for o in ops))


def test_fields_of_a_running_a_queued_a_failed_and_a_stale_operation(admin_client):
    started = timezone.now() - timedelta(seconds=40)
    copying = operation(
        phase="copying", progress=25.0, bytes_done=100 * MiB, bytes_total=400 * MiB, started=started
    )
    queued = operation(OperationState.QUEUED, lease_expires_at=None)
    failed = operation(
        OperationState.FAILED,
        bytes_done=10 * MiB,
        started=started,
        finished=started + timedelta(seconds=10),
        lease_expires_at=None,
    )
    stale = operation(
        phase="copying", started=started, lease_expires_at=timezone.now() - timedelta(seconds=3)
    )

    response = progress(admin_client, copying, queued, failed, stale)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    now = datetime.fromisoformat(body["now"])
    by_id = {entry["id"]: entry for entry in body["operations"]}
    assert body["running"] is True and set(by_id) == {copying.pk, queued.pk, failed.pk, stale.pk}

    entry = by_id[copying.pk]
    rate = 100 * MiB / (now - started).total_seconds()
    assert {k: entry[k] for k in ("state", "phase", "progress", "bytes_done", "bytes_total", "active")} == {
        "state": "running",
        "phase": "copying",
        "progress": 25.0,
        "bytes_done": 100 * MiB,
        "bytes_total": 400 * MiB,
        "active": True,
    }
    assert entry["throughput"] == round(rate)
    assert entry["eta_seconds"] == round(300 * MiB / rate)
    assert entry["bytes_text"] == "100.0 MiB / 400.0 MiB"
    assert entry["throughput_text"] == f"{rate / MiB:.1f} MiB/s"
    assert entry["lease_expired"] is False and entry["takeover_at"] is None

    assert (
        by_id[queued.pk]["throughput"],
        by_id[queued.pk]["eta_seconds"],
        by_id[queued.pk]["eta_text"],
    ) == (
        None,
        None,
        "-",
    )
    # A finished copy keeps its average rate; nothing is left to wait for.
    assert by_id[failed.pk]["throughput"] == round(10 * MiB / 10)
    assert (by_id[failed.pk]["eta_seconds"], by_id[failed.pk]["active"]) == (None, False)

    stale_entry = by_id[stale.pk]
    assert stale_entry["lease_expired"] is True
    assert stale_entry["takeover_at"] == leases.expected_takeover_at(stale.lease_expires_at).isoformat()
    assert "lease expired" in stale_entry["lease_html"]


def test_running_is_false_once_nothing_is_active(admin_client):
    done = operation(OperationState.SUCCEEDED, progress=100.0, lease_expires_at=None)
    body = progress(admin_client, done).json()
    assert body["running"] is False and body["operations"][0]["state_label"] == "succeeded"
    # Ids that are not numbers are ignored, not an error.
    empty = admin_client.get(reverse(URL) + "?ids=x,,-1").json()
    assert (empty["running"], empty["operations"]) == (False, [])


def test_query_count_does_not_grow_with_the_number_of_operations(admin_client):
    few = [operation(bytes_done=i * MiB, bytes_total=64 * MiB) for i in range(3)]
    many = few + [operation(bytes_done=i * MiB, bytes_total=64 * MiB) for i in range(27)]
    progress(admin_client, *few)  # the session and user are cached alike after a first request
    with CaptureQueriesContext(connection) as three:
        assert len(progress(admin_client, *few).json()["operations"]) == 3
    with CaptureQueriesContext(connection) as thirty:
        assert len(progress(admin_client, *many).json()["operations"]) == 30
    assert len(three.captured_queries) == len(thirty.captured_queries)
    operation_queries = [q for q in thirty.captured_queries if "volumes_operation" in q["sql"]]
    assert len(operation_queries) == 1


@pytest.mark.django_db
def test_permission(client, viewer_user):
    op = operation()
    url = reverse(URL) + f"?ids={op.pk}"
    # Anonymous: to the login page, nothing answered.
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    # Staff without the permission to view operations: refused.
    staff = get_user_model().objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    # Not staff at all: the admin's login page.
    plain = get_user_model().objects.create_user("plain", password="pw")
    client.force_login(plain)
    assert client.get(url).status_code == 302
    client.force_login(viewer_user)
    response = client.get(url)
    assert response.status_code == 200 and response.json()["operations"][0]["id"] == op.pk
