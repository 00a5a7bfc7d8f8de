"""Every console changelist renders, and in a number of queries that does not grow with its rows."""

from __future__ import annotations

import uuid as uuid_lib

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backups import models as backup_models
from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import ApiToken, AuditEvent, Operation
from tests.helpers import schedules_as_migrated
from volumes.choices import EventState, SnapshotStatus
from volumes.models import (
    Cluster,
    Host,
    Namespace,
    Pool,
    PoolMount,
    Snapshot,
    Tenant,
    TenantQuota,
    Volume,
    VolumeAttachment,
    Zone,
)

CONSOLE_APPS = ("volumes", "backups")


def add_rows(count: int, data_dir) -> None:
    """`count` rows of every console model, each related to others so every column has something to show."""
    for index in range(count):
        tag = uuid_lib.uuid4().hex[:8]
        zone = Zone.objects.create(name=f"zone-{tag}")
        cluster = Cluster.objects.create(name=f"cluster-{tag}", zone=zone)
        host = Host.objects.create(name=f"host-{tag}", cluster=cluster)
        tenant = Tenant.objects.create(name=f"tenant-{tag}")
        namespace = Namespace.objects.create(tenant=tenant)
        TenantQuota.objects.create(tenant=tenant, max_volumes=index, max_backups=index)
        pool = Pool.objects.create(
            name=f"pool-{tag}", cluster=cluster, zone=zone, path=str(data_dir / tag), capacity=1 << 40
        )
        pool.tenants.add(tenant)
        PoolMount.objects.create(pool=pool, host=host, mount_path=f"/mnt/{tag}")
        volume = Volume.objects.create(
            name=f"vol-{tag}",
            tenant=tenant,
            namespace=namespace,
            cluster=cluster,
            pool=pool,
            volume_type="block",
            capacity=1 << 30,
            snap_cap=1 << 31,
            state=EventState.AVAILABLE,
            used=index,
        )
        parent = Snapshot.objects.create(
            volume=volume,
            name="s1",
            status=SnapshotStatus.AVAILABLE,
            layer_name=f"snapshots/{volume.uuid}/a.qcow2",
        )
        child = Snapshot.objects.create(
            volume=volume, name="s2", parent=parent, layer_name=f"snapshots/{volume.uuid}/b.qcow2"
        )
        Volume.objects.filter(pk=volume.pk).update(current_snapshot=child)
        Volume.objects.create(
            name=f"clone-{tag}",
            tenant=tenant,
            namespace=namespace,
            cluster=cluster,
            pool=pool,
            volume_type="block",
            capacity=1 << 30,
            snap_cap=0,
            state=EventState.CLONING,
            source_volume=volume,
            parent_snapshot=parent,
        )
        VolumeAttachment.objects.create(volume=volume, vm_uuid=uuid_lib.uuid4(), vm_name=f"vm-{tag}")
        operation = Operation.objects.create(
            kind=OperationKind.VOLUME_CREATE,
            state=OperationState.FAILED,
            volume=volume,
            target_type="volume",
            target_uuid=volume.uuid,
            progress=40,
            bytes_done=10,
            bytes_total=100,
            error_scode=5001,
            error_message="storage operation failed: qemu-img create exited 1",
            owner="w1",
        )
        AuditEvent.objects.create(
            actor="test",
            action="volume.create",
            object_type="volume",
            object_uuid=volume.uuid,
            volume=volume,
            operation=operation,
            from_state="1 (creating)",
            to_state="0 (available)",
        )
        ApiToken.objects.create(
            name=f"token-{tag}", key_prefix=tag, key_hash=uuid_lib.uuid4().hex * 2, tenant=tenant
        )
        point = BackupPoint.objects.create(
            name=f"bp-{tag}",
            cluster=cluster,
            tenant=tenant,
            path=str(data_dir / f"bp-{tag}"),
            capacity=1 << 40,
        )
        full = Backup.objects.create(
            name=f"full-{tag}",
            backup_point=point,
            tenant=tenant,
            cluster=cluster,
            volume=volume,
            volume_uuid=volume.uuid,
            volume_capacity=volume.capacity,
            volume_type="block",
            snapshot=parent,
            snapshot_uuid=parent.uuid,
            snapshot_name="s1",
            status=BackupStatus.COMPLETED,
            size=1000,
        )
        incremental = Backup.objects.create(
            name=f"incr-{tag}",
            backup_point=point,
            tenant=tenant,
            cluster=cluster,
            volume=volume,
            volume_uuid=volume.uuid,
            volume_capacity=volume.capacity,
            volume_type="block",
            snapshot=child,
            snapshot_uuid=child.uuid,
            snapshot_name="s2",
            status=BackupStatus.COMPLETED,
            size=10,
            base=full,
        )
        verification = getattr(backup_models, "BackupVerification", None)
        if verification is not None:
            verification.objects.create(
                backup=incremental, result="failed", scode=5001, message="storage operation failed: x"
            )


def console_models():
    return sorted(
        (model for model in admin.site._registry if model._meta.app_label in CONSOLE_APPS),
        key=lambda m: m._meta.label,
    )


def changelist_queries(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries), response.content.decode()


def test_every_model_of_the_console_apps_is_registered():
    from django.apps import apps

    models = {m for app in CONSOLE_APPS for m in apps.get_app_config(app).get_models()}
    assert models == set(console_models())


@pytest.mark.parametrize("extra", ["", "?q=vol", "?o=-2"])
def test_changelists_render_in_a_constant_number_of_queries(admin_client, data_dir, extra):
    add_rows(3, data_dir)
    urls = {
        m._meta.label: reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist") + extra
        for m in console_models()
    }
    few = {label: changelist_queries(admin_client, url)[0] for label, url in urls.items()}
    add_rows(27, data_dir)
    many = {}
    for label, url in urls.items():
        count, html = changelist_queries(admin_client, url)
        many[label] = count
    assert many == few
    # And they did show the rows: 30 volumes and 30 clones, first page of 50 (or the 30 matching "vol").
    _, html = changelist_queries(admin_client, urls["volumes.Volume"])
    assert html.count('class="action-select"') == {"": 50, "?q=vol": 30, "?o=-2": 50}[extra]


def test_filtered_changelists_stay_constant_too(admin_client, data_dir):
    add_rows(3, data_dir)
    pool = Pool.objects.first()
    urls = [
        reverse("admin:volumes_volume_changelist") + f"?pool__id__exact={pool.pk}&state__exact=0",
        reverse("admin:core_operation_changelist") + "?state__exact=failed&kind__exact=volume.create",
        reverse("admin:volumes_snapshot_changelist") + f"?volume__pool__id__exact={pool.pk}",
        reverse("admin:backups_backup_changelist") + "?status__exact=BackupCompleted",
    ]
    few = [changelist_queries(admin_client, url)[0] for url in urls]
    add_rows(27, data_dir)
    assert [changelist_queries(admin_client, url)[0] for url in urls] == few


def test_changelist_columns_show_bars_progress_and_counts(admin_client, data_dir):
    add_rows(2, data_dir)
    _, operations = changelist_queries(admin_client, reverse("admin:core_operation_changelist"))
    assert 'class="ss-bar-fill" style="width: 40.0%"' in operations
    assert "10 B / 100 B" in operations and "storage operation failed: qemu-img create exited 1" in operations
    _, pools = changelist_queries(admin_client, reverse("admin:volumes_pool_changelist"))
    # Each pool: two live volumes of 1 GiB committed against 1 TiB.
    assert pools.count("2.0 GiB / 1.0 TiB (0%)") == 2
    _, points = changelist_queries(admin_client, reverse("admin:backups_backuppoint_changelist"))
    assert points.count("1010 B / 1.0 TiB (0%)") == 2


def test_task_queue_admin_is_part_of_the_console(admin_client):
    schedules_as_migrated()
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert (
        'id="ss-task-queue" href="/admin/django_q/"' in index.replace("\n", " ")
        or 'href="/admin/django_q/" id="ss-task-queue"' in index
    )
    for name in ("schedule", "success", "failure", "ormq"):
        response = admin_client.get(reverse(f"admin:django_q_{name}_changelist"))
        assert response.status_code == 200, name
    schedules = admin_client.get(reverse("admin:django_q_schedule_changelist")).content.decode()
    assert "sharestore: sweep expired operations" in schedules


def add_queue_rows(count: int) -> None:
    """Successful and failed tasks, schedules and queued tasks of django-q2."""
    from django.utils import timezone
    from django_q.models import OrmQ, Schedule, Task
    from django_q.signing import SignedPackage

    for _ in range(count):
        for success in (True, False):
            Task.objects.create(
                id=uuid_lib.uuid4().hex,
                name=f"task-{uuid_lib.uuid4().hex}",
                func="sharestore.core.tasks.sweep_task",
                started=timezone.now(),
                stopped=timezone.now(),
                success=success,
            )
        Schedule.objects.create(
            name=f"schedule-{uuid_lib.uuid4().hex}",
            func="sharestore.core.tasks.sweep_task",
            schedule_type="I",
            minutes=5,
        )
        payload = {
            "id": uuid_lib.uuid4().hex,
            "name": "queued",
            "func": "sharestore.core.tasks.sweep_task",
            "args": (),
            "kwargs": {},
        }
        OrmQ.objects.create(key="sharestore", payload=SignedPackage.dumps(payload), lock=timezone.now())


def test_task_queue_changelists_are_constant_too(admin_client):
    urls = [
        reverse(f"admin:django_q_{name}_changelist") for name in ("schedule", "success", "failure", "ormq")
    ]
    add_queue_rows(3)
    few = [changelist_queries(admin_client, url)[0] for url in urls]
    add_queue_rows(27)
    assert [changelist_queries(admin_client, url)[0] for url in urls] == few
