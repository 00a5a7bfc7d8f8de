"""`operation/cancel` (extension) on real images: a queued full clone is cancelled (whole answer, the
clone left `error`, its reservation released), a finished copy and a kind that is no copy answer 409
with their scodes, an unknown or another tenant's operation answers 404 like a missing one, bad input
answers its scode, and every refusal changes nothing."""

from __future__ import annotations

import json
import os

import pytest
from rest_framework.test import APIClient

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services.space import reserved_bytes, reserved_on
from sharestore.core.services.tokens import token_create
from tests.helpers import CLUSTER, POOL_DISKS, TENANT, assert_error, qemu_io, run_tasks, storage_state
from volumes.choices import EventState
from volumes.models import Namespace, Pool, Snapshot, Tenant, Volume
from volumes.services import clones
from volumes.services.snapshots import snapshot_create
from volumes.services.volumes import volume_create

MiB = 1 << 20
UNKNOWN = "00000000-0000-4000-8000-000000000000"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def source(topology):
    """A volume with data and a snapshot of it."""
    pool = Pool.objects.get(uuid=POOL_DISKS)
    with run_tasks():
        volume = volume_create(
            actor="t",
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=pool,
            name="src",
            volume_type="block",
            capacity=16 * MiB,
            snap_capacity=1 << 40,
        )
    qemu_io(os.path.join(pool.path, volume.image_name), "qcow2", "write -P 5 0 2M")
    with run_tasks():
        snapshot = snapshot_create(actor="t", volume=Volume.objects.get(pk=volume.pk), name="s0")
    return Volume.objects.get(pk=volume.pk), Snapshot.objects.get(pk=snapshot.pk)


def queued_clone(source, name="copy") -> tuple[Volume, Operation]:
    """A full clone whose task has not run (this test never lets its transaction's callbacks run)."""
    volume, snapshot = source
    clone = clones.clone_create(
        actor="t",
        source=volume,
        snapshot=snapshot,
        tenant=volume.tenant,
        pool=volume.pool,
        name=name,
        linked=False,
    )
    return clone, Operation.objects.get(target_uuid=clone.uuid, kind=OperationKind.CLONE_FULL)


def body(operation_uuid, tenant=TENANT) -> dict:
    return {"tenant": tenant, "cluster_uuid": CLUSTER, "operation_uuid": str(operation_uuid)}


def test_cancel_of_a_queued_full_clone_answers_the_cancelled_operation(api, source):
    clone, operation = queued_clone(source)
    on = reserved_on("pool", POOL_DISKS)
    assert operation.state == OperationState.QUEUED and reserved_bytes(on) > 0

    status, answer = api.post("operation/cancel", body(operation.uuid))

    assert status == 200, answer
    operation.refresh_from_db()
    assert answer == {
        "scode": 0,
        "desc": "",
        "message": "success",
        "message_cn": "成功",
        "stack": None,
        "data": {
            "operation": {
                "UUID": str(operation.uuid),
                "Kind": "clone.full",
                "State": "cancelled",
                "Phase": "",
                "Progress": 0.0,
                "BytesDone": 0,
                "BytesTotal": operation.bytes_total,
                "TargetType": "volume",
                "TargetUUID": str(clone.uuid),
                "VolumeUUID": str(clone.uuid),
                "CancelRequestedAt": int(operation.cancel_requested_at.timestamp()),
                "CancelRequestedBy": "token:test-platform",
                "Ctime": int(operation.created.timestamp()),
                "Finished": int(operation.finished.timestamp()),
            },
            "cluster_uuid": CLUSTER,
            "cluster_name": operation.volume.cluster.name,
            "cluster_mode": operation.volume.cluster.mode,
            "tenant": TENANT,
            "tenant_name": operation.volume.tenant.name,
        },
    }
    assert Volume.objects.get(pk=clone.pk).state == EventState.ERROR
    assert reserved_bytes(on) == 0
    assert (
        AuditEvent.objects.get(action="operation.cancel", operation=operation).actor == "token:test-platform"
    )

    # The clone's progress now answers the cancellation, as it answers a failure.
    status, progress = api.get(
        "clone/progress", {"tenant": TENANT, "cluster_uuid": CLUSTER, "volume_uuid": str(clone.uuid)}
    )
    assert_error(status, progress, 409, 4720)

    # Asked again: it has ended (409 / 4722), and nothing changes.
    before = storage_state(os.path.dirname(Pool.objects.get(uuid=POOL_DISKS).path))
    status, again = api.post("operation/cancel", body(operation.uuid))
    assert_error(status, again, 409, 4722)
    assert "cancelled" in again["message"] and "已经结束" in again["message_cn"]
    assert storage_state(os.path.dirname(Pool.objects.get(uuid=POOL_DISKS).path)) == before


def test_a_kind_that_is_no_copy_is_refused_and_unknown_operations_answer_404(api, source):
    snapshot_op = Operation.objects.filter(kind=OperationKind.SNAPSHOT_CREATE).latest("pk")
    data_dir = os.path.dirname(Pool.objects.get(uuid=POOL_DISKS).path)
    before = storage_state(data_dir)

    status, answer = api.post("operation/cancel", body(snapshot_op.uuid))
    assert_error(status, answer, 409, 4721)
    assert "create snapshot" in answer["message"] and "创建快照" in answer["message_cn"]

    status, answer = api.post("operation/cancel", body(UNKNOWN))
    assert_error(status, answer, 404, 3008)

    status, answer = api.post("operation/cancel", {"tenant": TENANT, "cluster_uuid": CLUSTER})
    assert_error(status, answer, 400, 1002)
    status, answer = api.post("operation/cancel", body("not-a-uuid"))
    assert_error(status, answer, 400, 1001)
    assert storage_state(data_dir) == before


def test_tenant_tokens_reach_only_their_own_operations(api, source, django_capture_on_commit_callbacks):
    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    clone, operation = queued_clone(source)
    theirs = APIClient()
    theirs.credentials(HTTP_AUTHORIZATION=f"Token {token_create(name='other', tenant=other)[1]}")
    ours = APIClient()
    ours.credentials(HTTP_AUTHORIZATION=f"Token {token_create(name='ours', tenant=clone.tenant)[1]}")

    def post(client, payload):
        response = client.generic(
            "POST", "/v1/volume/share/operation/cancel", json.dumps(payload), content_type="application/json"
        )
        return response.status_code, json.loads(response.content)

    # Another tenant's token: naming our tenant is 3002; naming its own, our operation is missing (3008).
    assert_error(*post(theirs, body(operation.uuid)), 404, 3002)
    assert_error(*post(theirs, body(operation.uuid, tenant=OTHER_TENANT)), 404, 3008)
    assert Operation.objects.get(pk=operation.pk).state == OperationState.QUEUED
    assert not AuditEvent.objects.filter(action="operation.cancel").exists()

    # Our own tenant's token cancels it.
    with django_capture_on_commit_callbacks(execute=True):
        status, answer = post(ours, body(operation.uuid))
    assert status == 200 and answer["data"]["operation"]["State"] == "cancelled", answer
    assert answer["data"]["operation"]["CancelRequestedBy"] == "token:ours"
    assert Operation.objects.get(pk=operation.pk).state == OperationState.CANCELLED
