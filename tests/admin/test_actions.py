"""The console's everyday actions through the Django test client: each preview renders and changes
nothing; confirming calls the API's service and its task (run inline) leaves real storage results
(compared with qemu-img); a missing permission answers 403 naming it; bad input is a form error and
changes nothing."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from backups.choices import BackupStatus
from backups.models import Backup, BackupVerification
from backups.services.points import backup_point_create
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import ApiToken, AuditEvent, Operation
from sharestore.core.services.tokens import token_authenticate, token_hash
from tests.admin.storage import MiB, head_path, new_volume, pool_named, write_pattern
from tests.conftest import pattern_matches
from tests.helpers import identical, run_tasks, storage_state
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Snapshot, Volume
from volumes.services.snapshots import snapshot_create


@pytest.fixture
def disks(topology):
    return pool_named(topology, "disks")


@pytest.fixture
def volume(topology, disks):
    """A volume with data (0x11 at 0) and one snapshot `s1` taken through the service."""
    volume = new_volume(topology, pool=disks, name="web-data")
    take(volume, "s1")
    return volume


@pytest.fixture
def point(topology, data_dir):
    directory = data_dir / "backup-point"
    directory.mkdir()
    return backup_point_create(
        name="nightly", cluster=topology["cluster"], path=str(directory), capacity=1 << 40
    )


def take(volume: Volume, name: str) -> Snapshot:
    with run_tasks():
        snapshot = snapshot_create(actor="test", volume=volume, name=name)
    snapshot.refresh_from_db()
    volume.refresh_from_db()
    assert snapshot.status == SnapshotStatus.AVAILABLE and volume.state == EventState.AVAILABLE
    return snapshot


def layer_path(snapshot: Snapshot) -> str:
    return os.path.join(snapshot.volume.pool.path, snapshot.layer_name)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def confirm(client, capture, url: str, data: dict, *, follow=True):
    """POST the confirm form, running the tasks its transaction enqueues."""
    with capture(execute=True):
        return client.post(url, data, follow=follow)


def form_errors(response) -> str:
    form = response.context["form"]
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


# -- snapshots -----------------------------------------------------------------------------------------


def test_snapshot_preview_shows_the_tree_position_and_confirm_takes_it(
    admin_client, volume, django_capture_on_commit_callbacks
):
    url = reverse("admin:volumes_volume_snapshot", args=[volume.pk])
    assert admin_client.get(url).status_code == 200
    before = Snapshot.objects.count()
    preview = admin_client.get(url, {"preview": "1", "name": "s2", "desc": "before upgrade"})
    html = preview.content.decode()
    assert 'id="ss-apply"' in html
    assert "s1 › head" in html and "s1 › s2 › head" in html
    assert Snapshot.objects.count() == before  # the preview changed nothing

    response = confirm(admin_client, django_capture_on_commit_callbacks, url, {"name": "s2", "desc": "x"})
    assert response.redirect_chain[-1][0] == reverse("admin:volumes_volume_change", args=[volume.pk])
    snapshot = Snapshot.objects.get(volume=volume, name="s2")
    assert snapshot.status == SnapshotStatus.AVAILABLE and os.path.exists(layer_path(snapshot))
    operation = Operation.objects.get(target_uuid=snapshot.uuid, kind=OperationKind.SNAPSHOT_CREATE)
    assert operation.state == OperationState.SUCCEEDED and operation.requested_by == "console:admin"
    assert any("Snapshot s2 of web-data" in m for m in messages_of(response))


def test_a_refused_snapshot_shows_the_service_error_on_the_form_and_changes_nothing(
    admin_client, volume, data_dir, django_capture_on_commit_callbacks
):
    url = reverse("admin:volumes_volume_snapshot", args=[volume.pk])
    before = storage_state(data_dir)
    response = confirm(admin_client, django_capture_on_commit_callbacks, url, {"name": "s1"})
    assert response.status_code == 200
    assert "already has a snapshot named 's1'" in form_errors(response)
    assert 'id="ss-apply"' not in response.content.decode()
    assert storage_state(data_dir) == before

    # The same refusal in Chinese for a Chinese reader.
    admin_client.post(reverse("set_language"), {"language": "zh-hans", "next": url})
    response = confirm(admin_client, django_capture_on_commit_callbacks, url, {"name": "s1"})
    assert "已存在名为 's1' 的快照" in form_errors(response)
    assert storage_state(data_dir) == before


def test_rollback_preview_counts_what_is_lost_and_confirm_restores_the_data(
    admin_client, volume, django_capture_on_commit_callbacks
):
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    write_pattern(head_path(volume), 0, MiB, 0x77)  # written after s1
    url = reverse("admin:volumes_volume_rollback", args=[volume.pk])
    preview = admin_client.get(url, {"preview": "1", "snapshot": str(s1.uuid)})
    assert preview.status_code == 200 and 'id="ss-lost"' in preview.content.decode()
    assert preview.context["preview"]["lost_bytes"] == volume.used
    assert pattern_matches(head_path(volume), "qcow2", 0, MiB, 0x77)

    response = confirm(
        admin_client,
        django_capture_on_commit_callbacks,
        url,
        {"snapshot": str(s1.uuid), "snapshot_first": ""},
    )
    assert any("Rollback of web-data" in m for m in messages_of(response))
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE and volume.current_snapshot_id == s1.pk
    assert pattern_matches(head_path(volume), "qcow2", 0, MiB, 0x11)


def test_rollback_of_an_unknown_snapshot_is_a_form_error(admin_client, volume, data_dir):
    url = reverse("admin:volumes_volume_rollback", args=[volume.pk])
    before = storage_state(data_dir)
    response = admin_client.post(url, {"snapshot": "8c1f2b0e-5a4d-4c11-9b7e-2f0d3c4b5a69"})
    assert response.status_code == 200 and "snapshot" in response.context["form"].errors
    assert storage_state(data_dir) == before


def test_delete_snapshot_preview_names_its_readers_and_confirm_deletes_it(
    admin_client, volume, django_capture_on_commit_callbacks
):
    s2 = take(volume, "s2")
    url = reverse("admin:volumes_volume_delete_snapshot", args=[volume.pk])
    preview = admin_client.get(url, {"preview": "1", "snapshot": str(s2.uuid)})
    assert preview.context["preview"]["head_on_it"] is True
    assert preview.context["preview"]["clones"] == [] and 'id="ss-blocked"' not in preview.content.decode()

    confirm(admin_client, django_capture_on_commit_callbacks, url, {"snapshot": str(s2.uuid)})
    assert not Snapshot.objects.filter(pk=s2.pk).exists()
    assert not os.path.exists(layer_path(s2))
    assert pattern_matches(head_path(volume), "qcow2", 0, MiB, 0x11)


# -- clones --------------------------------------------------------------------------------------------


def test_full_clone_preview_shows_bytes_and_room_and_the_clone_equals_the_snapshot(
    admin_client, topology, volume, django_capture_on_commit_callbacks
):
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    bbb = pool_named(topology, "bbb")
    url = reverse("admin:volumes_volume_clone", args=[volume.pk])
    data = {
        "snapshot": str(s1.uuid),
        "kind": "full",
        "name": "web-copy",
        "tenant": str(volume.tenant.uuid),
        "pool": str(bbb.uuid),
    }
    preview = admin_client.get(url, {"preview": "1", **data})
    shown = preview.context["preview"]
    assert shown["copy_bytes"] == min(s1.size, volume.capacity) and shown["copy_bytes"] > 0
    assert shown["room"]["pool"] == bbb and shown["room"]["fs_free"] > 0
    assert not Volume.objects.filter(name="web-copy").exists()

    response = confirm(admin_client, django_capture_on_commit_callbacks, url, data)
    clone = Volume.objects.get(name="web-copy")
    assert response.redirect_chain[-1][0] == reverse("admin:volumes_volume_change", args=[clone.pk])
    assert clone.state == EventState.AVAILABLE and clone.pool == bbb and clone.parent_snapshot_id is None
    assert identical(layer_path(s1), head_path(clone))
    operation = Operation.objects.get(volume=clone, kind=OperationKind.CLONE_FULL)
    assert operation.state == OperationState.SUCCEEDED and operation.requested_by == "console:admin"


def test_linked_clone_is_an_overlay_on_the_snapshot(
    admin_client, disks, volume, django_capture_on_commit_callbacks
):
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    url = reverse("admin:volumes_volume_clone", args=[volume.pk])
    data = {
        "snapshot": str(s1.uuid),
        "kind": "linked",
        "name": "web-linked",
        "tenant": str(volume.tenant.uuid),
        "pool": str(disks.uuid),
    }
    assert admin_client.get(url, {"preview": "1", **data}).context["preview"]["copy_bytes"] == 0
    confirm(admin_client, django_capture_on_commit_callbacks, url, data)
    clone = Volume.objects.get(name="web-linked")
    assert clone.state == EventState.AVAILABLE and clone.parent_snapshot_id == s1.pk
    assert identical(layer_path(s1), head_path(clone))


def test_a_clone_with_a_taken_name_is_refused_on_the_form(
    admin_client, disks, volume, data_dir, django_capture_on_commit_callbacks
):
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    url = reverse("admin:volumes_volume_clone", args=[volume.pk])
    before = storage_state(data_dir)
    data = {
        "snapshot": str(s1.uuid),
        "kind": "full",
        "name": "web-data",
        "tenant": str(volume.tenant.uuid),
        "pool": str(disks.uuid),
    }
    response = confirm(admin_client, django_capture_on_commit_callbacks, url, data)
    assert response.status_code == 200 and "web-data" in form_errors(response)
    assert storage_state(data_dir) == before


# -- backups -------------------------------------------------------------------------------------------


def test_backup_restore_verify_and_protect_from_the_console(
    admin_client, topology, volume, point, django_capture_on_commit_callbacks
):
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    url = reverse("admin:backups_backup_create")
    data = {
        "volume": volume.pk,
        "snapshot": str(s1.uuid),
        "backup_point": str(point.uuid),
        "name": "b1",
        "desc": "",
        "compress": "",
        "full": "",
        "protected": "",
    }
    preview = admin_client.get(url, {"preview": "1", **data})
    shown = preview.context["preview"]
    assert shown["base"] is None and shown["estimate"] >= s1.size and shown["room"]["free"] == 1 << 40
    assert not Backup.objects.exists()
    confirm(admin_client, django_capture_on_commit_callbacks, url, data)
    backup = Backup.objects.get(name="b1")
    assert backup.status == BackupStatus.COMPLETED and backup.size > 0

    # Restore into a new volume in the other pool: same content as the snapshot.
    bbb = pool_named(topology, "bbb")
    url = reverse("admin:backups_backup_restore", args=[backup.pk])
    data = {"name": "web-restored", "tenant": str(volume.tenant.uuid), "pool": str(bbb.uuid)}
    shown = admin_client.get(url, {"preview": "1", **data}).context["preview"]
    assert shown["copy_bytes"] == volume.capacity and shown["chain_bytes"] == backup.size
    confirm(admin_client, django_capture_on_commit_callbacks, url, data)
    restored = Volume.objects.get(name="web-restored")
    assert restored.state == EventState.AVAILABLE and restored.pool == bbb
    assert identical(layer_path(s1), head_path(restored))

    # Verify: queued on a worker (run on commit here) and records an ok verification.
    url = reverse("admin:backups_backup_verify", args=[backup.pk])
    assert admin_client.get(url, {"preview": "1"}).context["preview"]["read_bytes"] == backup.size
    response = confirm(admin_client, django_capture_on_commit_callbacks, url, {})
    verification = BackupVerification.objects.get(backup=backup)
    assert verification.result == "ok" and verification.actor == "console:admin"
    assert any("Verification of backup b1 is queued" in m for m in messages_of(response))

    # Protect, then unprotect.
    url = reverse("admin:backups_backup_protect", args=[backup.pk])
    assert admin_client.get(url, {"preview": "1", "protected": "1"}).context["preview"]["protect"] is True
    confirm(admin_client, django_capture_on_commit_callbacks, url, {"protected": "1"})
    backup.refresh_from_db()
    assert backup.protected
    assert AuditEvent.objects.filter(action="backup.protect", actor="console:admin").count() == 1
    confirm(admin_client, django_capture_on_commit_callbacks, url, {"protected": "0"})
    backup.refresh_from_db()
    assert not backup.protected


def test_a_backup_being_deleted_cannot_be_protected(admin_client, volume, point, data_dir):
    backup = Backup.objects.create(
        name="going",
        backup_point=point,
        tenant=volume.tenant,
        cluster=volume.cluster,
        volume=volume,
        volume_uuid=volume.uuid,
        volume_capacity=volume.capacity,
        volume_type="block",
        snapshot_uuid=volume.current_snapshot.uuid,
        snapshot_name="s1",
        status=BackupStatus.DELETING,
    )
    events = AuditEvent.objects.count()
    response = admin_client.post(
        reverse("admin:backups_backup_protect", args=[backup.pk]), {"protected": "1"}
    )
    assert response.status_code == 200 and "BackupDeleting" in form_errors(response)
    backup.refresh_from_db()
    assert not backup.protected and AuditEvent.objects.count() == events


def test_a_backup_to_an_unknown_point_is_a_form_error_and_a_missing_backup_404(
    admin_client, volume, point, data_dir
):
    url = reverse("admin:backups_backup_restore", args=[0])
    assert admin_client.get(url).status_code == 404
    before = storage_state(data_dir)
    s1 = Snapshot.objects.get(volume=volume, name="s1")
    url = reverse("admin:backups_backup_create")
    response = admin_client.post(
        url, {"volume": volume.pk, "snapshot": str(s1.uuid), "backup_point": "nope", "name": "b"}
    )
    assert response.status_code == 200 and "backup_point" in response.context["form"].errors
    assert storage_state(data_dir) == before and not Backup.objects.exists()


# -- tokens --------------------------------------------------------------------------------------------


def test_token_issue_shows_the_key_once_and_stores_its_hash_then_revoke(admin_client, topology):
    url = reverse("admin:core_apitoken_issue")
    preview = admin_client.get(url, {"preview": "1", "name": "ci", "tenant": str(topology["tenant"].uuid)})
    assert (
        'id="ss-token-scope"' in preview.content.decode() and not ApiToken.objects.filter(name="ci").exists()
    )

    response = admin_client.post(
        url, {"name": "ci", "tenant": str(topology["tenant"].uuid), "expires_at": ""}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = response.context["key"]
    token = ApiToken.objects.get(name="ci")
    assert key in response.content.decode()
    assert token.key_hash == token_hash(key) and token.tenant == topology["tenant"]
    assert not ApiToken.objects.filter(key_hash=key).exists() and token.key_prefix == key[:8]
    assert token_authenticate(key) == token
    # The token's page never shows the key again.
    page = admin_client.get(reverse("admin:core_apitoken_change", args=[token.pk])).content.decode()
    assert key not in page and "ss-act-revoke-token" in page

    url = reverse("admin:core_apitoken_revoke", args=[token.pk])
    assert 'id="ss-revoked"' in admin_client.get(url, {"preview": "1"}).content.decode()
    response = admin_client.post(url, {}, follow=True)
    token.refresh_from_db()
    assert token.revoked_at is not None and token_authenticate(key) is None
    assert any("revoked" in m for m in messages_of(response))


def test_token_issue_needs_a_name(admin_client, topology):
    response = admin_client.post(reverse("admin:core_apitoken_issue"), {"name": ""})
    assert response.status_code == 200 and "name" in response.context["form"].errors
    assert not ApiToken.objects.exists()


# -- permissions ---------------------------------------------------------------------------------------


def action_urls(volume, backup, token) -> dict[str, str]:
    return {
        "volumes.snapshot_volume": reverse("admin:volumes_volume_snapshot", args=[volume.pk]),
        "volumes.rollback_volume": reverse("admin:volumes_volume_rollback", args=[volume.pk]),
        "volumes.clone_volume": reverse("admin:volumes_volume_clone", args=[volume.pk]),
        "backups.backup_volume": reverse("admin:backups_backup_create") + f"?volume={volume.pk}",
        "backups.restore_backup": reverse("admin:backups_backup_restore", args=[backup.pk]),
        "backups.verify_backup": reverse("admin:backups_backup_verify", args=[backup.pk]),
        "backups.protect_backup": reverse("admin:backups_backup_protect", args=[backup.pk]),
        "core.issue_token": reverse("admin:core_apitoken_issue"),
        "core.revoke_token": reverse("admin:core_apitoken_revoke", args=[token.pk]),
    }


def test_each_action_needs_its_permission_and_the_403_names_it(client, volume, point, data_dir):
    backup = Backup.objects.create(
        name="b",
        backup_point=point,
        tenant=volume.tenant,
        cluster=volume.cluster,
        volume=volume,
        volume_uuid=volume.uuid,
        volume_capacity=volume.capacity,
        volume_type="block",
        snapshot_uuid=volume.current_snapshot.uuid,
        snapshot_name="s1",
        status=BackupStatus.COMPLETED,
    )
    token = ApiToken.objects.create(name="t", key_prefix="abc", key_hash="0" * 64)
    user = get_user_model().objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(user)
    urls = action_urls(volume, backup, token)
    before = storage_state(data_dir)
    for permission, url in urls.items():
        response = client.get(url)
        assert response.status_code == 403, permission
        assert permission in response.content.decode(), permission
        assert client.post(url, {"name": "x", "protected": "1"}).status_code == 403
    assert (
        storage_state(data_dir) == before and not ApiToken.objects.filter(revoked_at__isnull=False).exists()
    )
    # The delete-snapshot page shares the snapshot permission.
    denied = client.get(reverse("admin:volumes_volume_delete_snapshot", args=[volume.pk]))
    assert denied.status_code == 403 and "volumes.snapshot_volume" in denied.content.decode()
    # In Chinese, the permission's name is translated.
    zh = client.get(urls["volumes.clone_volume"], HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "volumes.clone_volume" in zh and "克隆" in zh

    # Granted one by one: that page opens, the others stay closed.
    for permission, url in urls.items():
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
        user = get_user_model().objects.get(pk=user.pk)  # a fresh permission cache
        client.force_login(user)
        assert client.get(url).status_code == 200, permission
    assert client.get(reverse("admin:volumes_volume_delete_snapshot", args=[volume.pk])).status_code == 200
