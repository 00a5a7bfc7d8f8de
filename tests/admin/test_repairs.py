"""Repair screens through the admin: previews change nothing, apply calls the service, permissions hold."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from tests.admin.storage import build_tree, head_path, new_volume, plant_orphan, pool_named
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Volume
from volumes.services.volumes import volume_create


@pytest.fixture
def disks(topology):
    return pool_named(topology, "disks")


def stuck_operation(volume, *, kind=OperationKind.SNAPSHOT_CREATE, live=False) -> Operation:
    """A running operation whose worker died (lease expired), or one still alive."""
    expires = timezone.now() + (timedelta(minutes=5) if live else -timedelta(minutes=5))
    return Operation.objects.create(
        kind=kind,
        state=OperationState.RUNNING,
        volume=volume,
        target_type="volume",
        target_uuid=volume.uuid,
        owner="dead-worker",
        lease_expires_at=expires,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# -- permissions ------------------------------------------------------------------------------------


def test_repair_screens_need_the_repair_permission(client, viewer_user, repair_user, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    urls = [
        reverse("admin:volumes_volume_reset_state", args=[volume.pk]),
        reverse("admin:volumes_volume_force_delete", args=[volume.pk]),
        reverse("admin:volumes_volume_refresh_usage") + f"?volume={volume.pk}",
        reverse("admin:volumes_pool_reconcile") + f"?pool={disks.uuid}",
        reverse("admin:core_operation_retry"),
    ]
    client.force_login(viewer_user)
    assert [client.get(url).status_code for url in urls] == [403] * 5
    assert client.post(urls[3], {"pool": str(disks.uuid), "apply": "1"}).status_code == 403
    page = client.get(reverse("admin:volumes_volume_change", args=[volume.pk])).content.decode()
    assert "reset-state" not in page
    changelist = client.get(reverse("admin:volumes_pool_changelist")).content.decode()
    assert "reconcile_action" not in changelist

    client.force_login(repair_user)
    assert [client.get(url).status_code for url in urls] == [200] * 5
    changelist = client.get(reverse("admin:volumes_pool_changelist")).content.decode()
    assert "reconcile_action" in changelist


def test_pool_action_leads_to_the_reconcile_preview(admin_client, topology, disks):
    orphan = plant_orphan(disks)
    response = admin_client.post(
        reverse("admin:volumes_pool_changelist"),
        {"action": "reconcile_action", "_selected_action": [disks.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:volumes_pool_reconcile") + f"?pool={disks.uuid}"
    preview = admin_client.get(response["Location"]).content.decode()
    assert f'data-name="{orphan.relative_to(disks.path)}"' in preview and "dry run" in preview
    assert orphan.exists()
    applied = admin_client.post(
        reverse("admin:volumes_pool_reconcile"), {"pool": str(disks.uuid), "apply": "1"}
    )
    assert "Reconcile fixed 1 finding(s); 0 remain." in messages_of(applied)
    assert not orphan.exists()


# -- reset state ------------------------------------------------------------------------------------


def test_reset_state_proposes_what_the_files_support_and_cancels_dead_operations(
    admin_client, topology, disks
):
    volume = new_volume(topology, pool=disks, name="v")
    build_tree(volume, [("s1", None)], head_on="s1")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.SNAPSHOTTING)
    dead = stuck_operation(volume)
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])

    preview = admin_client.get(url)
    html = preview.content.decode()
    proposal = preview.context["proposal"]
    assert (proposal.current_state, proposal.proposed_state, proposal.blocked) == (
        EventState.SNAPSHOTTING,
        EventState.AVAILABLE,
        "",
    )
    assert proposal.stale_operations == [str(dead.uuid)]
    assert 'id="ss-proposed-state">available<' in html
    assert Volume.objects.get(pk=volume.pk).state == EventState.SNAPSHOTTING  # preview changed nothing

    response = admin_client.post(
        url, {"expected_from": EventState.SNAPSHOTTING, "to_state": EventState.AVAILABLE}
    )
    assert response.status_code == 302
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE
    dead.refresh_from_db()
    assert dead.state == OperationState.CANCELLED and dead.finished is not None
    event = AuditEvent.objects.get(volume=volume, action="volume.reset_state")
    assert (event.actor, event.from_state, event.to_state) == (
        "console:admin",
        "7 (snapshotting)",
        "0 (available)",
    )


def test_reset_state_proposes_error_when_the_image_is_gone(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.CREATING)
    os.unlink(head_path(volume))
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])
    proposal = admin_client.get(url).context["proposal"]
    assert proposal.proposed_state == EventState.ERROR
    assert proposal.reasons[0] == "the volume's image does not exist"
    admin_client.post(url, {"expected_from": EventState.CREATING, "to_state": EventState.ERROR})
    assert Volume.objects.get(pk=volume.pk).state == EventState.ERROR


def test_reset_state_refuses_while_an_operation_is_alive(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.SNAPSHOTTING)
    live = stuck_operation(volume, live=True)
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])
    preview = admin_client.get(url)
    assert str(live.uuid) in preview.context["proposal"].blocked
    assert 'id="ss-apply"' not in preview.content.decode()
    response = admin_client.post(
        url, {"expected_from": EventState.SNAPSHOTTING, "to_state": EventState.AVAILABLE}, follow=True
    )
    assert any("scode 4500" in m for m in messages_of(response))
    assert Volume.objects.get(pk=volume.pk).state == EventState.SNAPSHOTTING


def test_reset_state_refuses_when_the_files_changed_after_the_preview(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.FLATTENING)
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])
    assert admin_client.get(url).context["proposal"].proposed_state == EventState.AVAILABLE
    os.unlink(head_path(volume))  # meanwhile the image disappears
    response = admin_client.post(
        url, {"expected_from": EventState.FLATTENING, "to_state": EventState.AVAILABLE}, follow=True
    )
    assert any("scode 4501" in m and "changed since the preview" in m for m in messages_of(response))
    assert Volume.objects.get(pk=volume.pk).state == EventState.FLATTENING


def test_reset_of_a_deleting_volume_without_files_finishes_the_deletion(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.DELETING)
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])
    assert "use force delete" in admin_client.get(url).context["proposal"].blocked  # its image is still there
    os.unlink(head_path(volume))
    assert admin_client.get(url).context["proposal"].proposed_state == EventState.DELETED
    admin_client.post(url, {"expected_from": EventState.DELETING, "to_state": EventState.DELETED})
    assert Volume.objects.get(pk=volume.pk).state == EventState.DELETED


# -- force delete -----------------------------------------------------------------------------------


def test_force_delete_removes_a_stuck_volume_and_its_layers(
    admin_client, topology, disks, django_capture_on_commit_callbacks
):
    volume = new_volume(topology, pool=disks, name="v")
    snapshots = build_tree(volume, [("s1", None), ("s2", "s1")], head_on="s2")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.ROLLING_BACK)
    dead = stuck_operation(volume, kind=OperationKind.SNAPSHOT_ROLLBACK)
    url = reverse("admin:volumes_volume_force_delete", args=[volume.pk])
    plan = admin_client.get(url).context["plan"]
    layers = [s.layer_name for s in snapshots.values()]
    assert plan.files == [volume.image_name, *layers] and plan.blocked == ""

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"expected_state": EventState.ROLLING_BACK})
    assert response.status_code == 302
    volume.refresh_from_db()
    assert volume.state == EventState.DELETED
    for name in [volume.image_name, *layers]:
        assert not (Path(disks.path) / name).exists(), name
    dead.refresh_from_db()
    assert dead.state == OperationState.CANCELLED
    delete = Operation.objects.get(volume=volume, kind=OperationKind.VOLUME_DELETE)
    assert (delete.state, delete.params["forced_from"]) == (OperationState.SUCCEEDED, EventState.ROLLING_BACK)
    assert set(volume.snapshots.values_list("status", flat=True)) == {SnapshotStatus.DELETING}


def test_force_delete_never_removes_layers_that_linked_clones_read(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    snapshots = build_tree(volume, [("s1", None)], head_on="s1")
    clone = Volume.objects.create(
        name="clone",
        tenant=volume.tenant,
        namespace=volume.namespace,
        cluster=volume.cluster,
        pool=disks,
        volume_type="block",
        capacity=volume.capacity,
        snap_cap=0,
        state=EventState.AVAILABLE,
        parent_snapshot=snapshots["s1"],
        source_volume=volume,
    )
    url = reverse("admin:volumes_volume_force_delete", args=[volume.pk])
    assert str(clone.uuid) in admin_client.get(url).context["plan"].blocked
    response = admin_client.post(url, {"expected_state": EventState.AVAILABLE}, follow=True)
    assert any("scode 4500" in m and "linked clones" in m for m in messages_of(response))
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE
    assert (Path(disks.path) / snapshots["s1"].layer_name).exists()


# -- refresh usage ----------------------------------------------------------------------------------


def test_refresh_usage_preview_then_write(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    real = volume.used
    Volume.objects.filter(pk=volume.pk).update(used=3)
    url = reverse("admin:volumes_volume_refresh_usage") + f"?pool={disks.uuid}"
    report = admin_client.get(url).context["report"]
    assert [(c.field, c.old, c.new) for c in report.changes] == [("used", 3, real)]
    assert Volume.objects.get(pk=volume.pk).used == 3
    admin_client.post(reverse("admin:volumes_volume_refresh_usage"), {"pool": str(disks.uuid), "apply": "1"})
    assert Volume.objects.get(pk=volume.pk).used == real
    assert AuditEvent.objects.filter(
        volume=volume, action="usage.refresh", message=f"used 3 -> {real}"
    ).exists()


# -- retry ------------------------------------------------------------------------------------------


def test_retry_of_a_failed_create_queues_it_again(
    admin_client, topology, disks, settings, django_capture_on_commit_callbacks
):
    settings.SHARESTORE_QEMU_IMG = "/nonexistent/qemu-img"
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        volume = volume_create(
            actor="platform",
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=disks,
            name="unlucky",
            volume_type="block",
            snap_capacity=0,
            capacity=64 << 20,
        )
    failed = Operation.objects.get(volume=volume)
    volume.refresh_from_db()
    assert (failed.state, volume.state) == (OperationState.FAILED, EventState.ERROR)
    settings.SHARESTORE_QEMU_IMG = "qemu-img"

    changelist = admin_client.post(
        reverse("admin:core_operation_changelist"),
        {"action": "retry_action", "_selected_action": [failed.pk]},
    )
    preview = admin_client.get(changelist["Location"])
    assert preview.context["rows"] == [(failed, "")]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:core_operation_retry"), {"operation": failed.pk, "apply": "1"})
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE and os.path.isfile(head_path(volume))
    retried = Operation.objects.filter(volume=volume).exclude(pk=failed.pk).get()
    assert (retried.state, retried.params["retry_of"]) == (OperationState.SUCCEEDED, str(failed.uuid))
    # Not twice: the failed one is no longer the latest, and the volume is no longer in error.
    assert (
        admin_client.get(changelist["Location"]).context["rows"][0][1]
        == "a newer operation exists for the same object"
    )


def test_retry_is_refused_for_kinds_without_a_safe_retry(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    failed = Operation.objects.create(
        kind=OperationKind.SNAPSHOT_ROLLBACK,
        state=OperationState.FAILED,
        volume=volume,
        target_type="volume",
        target_uuid=volume.uuid,
        error_scode=5001,
        error_message="storage operation failed: boom",
    )
    url = reverse("admin:core_operation_retry") + f"?operation={failed.pk}"
    assert admin_client.get(url).context["rows"] == [
        (failed, "no safe retry is defined for roll back to snapshot")
    ]
    response = admin_client.post(
        reverse("admin:core_operation_retry"), {"operation": failed.pk, "apply": "1"}, follow=True
    )
    assert any("scode 4009" in m for m in messages_of(response))
    assert Operation.objects.filter(volume=volume).count() == 2  # the create and the failed rollback only
