"""Pools and backup points in the console: add and edit with the directory checked, usage bars."""

from __future__ import annotations

import os
import uuid

import pytest
from django.urls import reverse

from backups.models import BackupPoint
from sharestore.core.models import AuditEvent
from tests.admin.storage import new_volume, pool_named
from volumes.models import Pool, PoolMount


def pool_form(topology, **overrides) -> dict:
    data = {
        "name": "fast",
        "cluster": topology["cluster"].pk,
        "zone": "",
        "pool_type": "disk",
        "driver": "qcow2-dir",
        "path": "",
        "capacity": str(1 << 40),
        "overcommit_ratio": "1.5",
        "status": "healthy",
        "mounts-TOTAL_FORMS": "0",
        "mounts-INITIAL_FORMS": "0",
        "mounts-MIN_NUM_FORMS": "0",
        "mounts-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_add_pool_rejects_a_missing_directory_and_accepts_a_real_one(admin_client, topology, data_dir):
    url = reverse("admin:volumes_pool_add")
    missing = data_dir / "nowhere"
    response = admin_client.post(url, pool_form(topology, path=str(missing)))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["path"] == [
        f"invalid parameter path: directory {missing} does not exist"
    ]
    assert not Pool.objects.filter(name="fast").exists()

    response = admin_client.post(url, pool_form(topology, path="relative/dir"))
    assert response.context["adminform"].form.errors["path"] == [
        "invalid parameter path: must be an absolute directory path"
    ]

    directory = data_dir / "fast"
    directory.mkdir()
    response = admin_client.post(url, pool_form(topology, path=str(directory)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    pool = Pool.objects.get(name="fast")
    assert (pool.path, pool.zone, str(pool.overcommit_ratio)) == (
        str(directory),
        topology["cluster"].zone,
        "1.50",
    )
    assert list(PoolMount.objects.filter(pool=pool).values_list("host__uuid", "mount_path")) == [
        (uuid.UUID(str(topology["host"].uuid)), str(directory))
    ]
    assert AuditEvent.objects.get(action="pool.create", object_uuid=pool.uuid).actor == "console:admin"


def test_add_pool_rejects_a_duplicate_name_in_the_cluster(admin_client, topology, data_dir):
    directory = data_dir / "other"
    directory.mkdir()
    response = admin_client.post(
        reverse("admin:volumes_pool_add"), pool_form(topology, name="disks", path=str(directory))
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "disks" in str(errors) and Pool.objects.filter(name="disks").count() == 1


def test_edit_pool_path_must_hold_its_volumes(admin_client, topology, data_dir):
    disks = pool_named(topology, "disks")
    new_volume(topology, pool=disks, name="v", data=False)
    empty = data_dir / "empty"
    empty.mkdir()
    url = reverse("admin:volumes_pool_change", args=[disks.pk])
    form = pool_form(
        topology, name="disks", path=str(empty), capacity=str(disks.capacity), overcommit_ratio="1"
    )
    form.update({"mounts-TOTAL_FORMS": "0"})
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "1 volume image(s) of this pool are not in" in str(
        response.context["adminform"].form.errors["path"]
    )

    # Same data seen through another mount of the same directory: accepted.
    alias = data_dir / "alias"
    os.symlink(disks.path, alias)
    moved = data_dir / "moved"
    os.rename(disks.path, moved)
    os.unlink(alias)
    form["path"] = str(moved)
    form["capacity"] = str(2 << 40)
    form["status"] = "maintenance"
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    disks.refresh_from_db()
    assert (disks.path, disks.capacity, disks.status) == (str(moved), 2 << 40, "maintenance")
    status_event = AuditEvent.objects.get(action="pool.status", object_uuid=disks.uuid)
    assert (status_event.from_state, status_event.to_state) == ("healthy", "maintenance")


def test_pool_page_shows_usage_bars(admin_client, topology):
    disks = pool_named(topology, "disks")
    new_volume(topology, pool=disks, name="v")
    html = admin_client.get(reverse("admin:volumes_pool_change", args=[disks.pk])).content.decode()
    assert "64.0 MiB / 1.0 TiB (0%)" in html  # committed
    assert "filesystem used / size" in html


def test_backup_point_add_and_edit_are_validated(admin_client, topology, data_dir):
    url = reverse("admin:backups_backuppoint_add")
    base = {
        "name": "bp1",
        "cluster": topology["cluster"].pk,
        "tenant": "",
        "btype": "local",
        "capacity": str(1 << 40),
        "status": "healthy",
    }
    response = admin_client.post(url, {**base, "path": str(data_dir / "missing")})
    assert response.status_code == 200
    assert f"directory {data_dir / 'missing'} does not exist" in str(
        response.context["adminform"].form.errors["path"]
    )
    directory = data_dir / "bp1"
    directory.mkdir()
    response = admin_client.post(url, {**base, "path": str(directory)})
    assert response.status_code == 302
    point = BackupPoint.objects.get(name="bp1")
    assert point.path == str(directory)

    change = reverse("admin:backups_backuppoint_change", args=[point.pk])
    response = admin_client.post(change, {**base, "path": str(data_dir / "gone"), "capacity": "5"})
    assert f"directory {data_dir / 'gone'} does not exist" in str(
        response.context["adminform"].form.errors["path"]
    )
    response = admin_client.post(
        change, {**base, "path": str(directory), "capacity": "5", "status": "unavailable"}
    )
    assert response.status_code == 302
    point.refresh_from_db()
    assert (point.capacity, point.status) == (5, "unavailable")
    html = admin_client.get(change).content.decode()
    assert "0 B / 5 B (0%)" in html


@pytest.mark.parametrize("user_fixture", ["viewer_user"])
def test_pool_forms_are_read_only_without_change_permission(client, request, topology, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    disks = pool_named(topology, "disks")
    assert client.get(reverse("admin:volumes_pool_add")).status_code == 403
    html = client.get(reverse("admin:volumes_pool_change", args=[disks.pk])).content.decode()
    assert 'name="path"' not in html and disks.path in html
