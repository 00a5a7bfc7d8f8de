"""Honest capacity in the console: percentages above 100 % as they are, warning and critical
thresholds, over-committed health, a confirmation before capacity drops below what is committed,
sizes with units in the forms, and a clear message for overcommit 0."""

from __future__ import annotations

import os

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import translation

from backups.choices import BackupStatus
from backups.models import Backup, BackupPoint
from sharestore.core.sizes import SizeError, parse_size, size_text
from sharestore.core.templatetags.console_tags import bar
from tests.admin.storage import MiB, new_volume, pool_named
from tests.admin.test_pools_admin import pool_form
from volumes.models import Pool

GiB = 1 << 30


def pool_edit_form(pool: Pool, **overrides) -> dict:
    values = {
        "name": pool.name,
        "path": pool.path,
        "pool_type": pool.pool_type,
        "driver": pool.driver,
        "capacity": str(pool.capacity),
        "overcommit_ratio": str(pool.overcommit_ratio),
        "status": pool.status,
    }
    return pool_form({"cluster": pool.cluster}, **{**values, **overrides})


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    return {k: [str(e) for e in v] for k, v in response.context["adminform"].form.errors.items()}


# -- sizes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1099511627776", 1 << 40),
        ("500G", 500 * GiB),
        ("2T", 2 << 40),
        ("1.5TiB", 3 << 39),
        ("512 MiB", 512 * MiB),
        ("1k", 1024),
        ("100B", 100),
        (" 3g ", 3 * GiB),
    ],
)
def test_sizes_parse_with_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "12Q", "1.5", "1,5G", "ten", "1e9", "9999999E"])
def test_sizes_that_are_not_sizes_are_refused(text):
    with pytest.raises(SizeError):
        parse_size(text)


def test_a_size_is_shown_back_in_the_shortest_exact_unit():
    assert [size_text(v) for v in (2 << 40, 500 * GiB, 1000, 3 << 39)] == [
        "2TiB",
        "500GiB",
        "1000",
        "1536GiB",
    ]
    assert all(parse_size(size_text(v)) == v for v in (2 << 40, 500 * GiB, 1000, 3 << 39, 7))


def test_pool_form_takes_human_units_and_refuses_nonsense(admin_client, topology, data_dir):
    directory = data_dir / "fast"
    directory.mkdir()
    url = reverse("admin:volumes_pool_add")
    errors = form_errors(admin_client.post(url, pool_form(topology, path=str(directory), capacity="12Q")))
    assert errors["capacity"] == [
        "Enter a size in bytes or with a unit: 500G, 2T, 1.5TiB (K, M, G, T, P are multiples of 1024)."
    ]
    assert not Pool.objects.filter(name="fast").exists()
    response = admin_client.post(url, pool_form(topology, path=str(directory), capacity="2T"))
    assert response.status_code == 302
    pool = Pool.objects.get(name="fast")
    assert pool.capacity == 2 << 40
    # The edit form shows it back in the same words.
    html = admin_client.get(reverse("admin:volumes_pool_change", args=[pool.pk])).content.decode()
    assert 'name="capacity" value="2TiB"' in html


def test_pool_form_without_capacity_takes_the_filesystems_size(admin_client, topology, data_dir):
    directory = data_dir / "whole"
    directory.mkdir()
    stat = os.statvfs(directory)
    response = admin_client.post(
        reverse("admin:volumes_pool_add"), pool_form(topology, name="whole", path=str(directory), capacity="")
    )
    assert response.status_code == 302
    assert Pool.objects.get(name="whole").capacity == stat.f_blocks * stat.f_frsize


def test_backup_point_form_takes_human_units(admin_client, topology, data_dir):
    directory = data_dir / "bp"
    directory.mkdir()
    base = {
        "name": "bp",
        "cluster": topology["cluster"].pk,
        "tenant": "",
        "btype": "local",
        "status": "healthy",
    }
    url = reverse("admin:backups_backuppoint_add")
    errors = form_errors(admin_client.post(url, {**base, "path": str(directory), "capacity": "lots"}))
    assert "capacity" in errors and not BackupPoint.objects.filter(name="bp").exists()
    assert admin_client.post(url, {**base, "path": str(directory), "capacity": "500G"}).status_code == 302
    assert BackupPoint.objects.get(name="bp").capacity == 500 * GiB


# -- percentages and thresholds ------------------------------------------------------------------------


def test_bar_shows_percentages_above_100_and_colours_by_threshold(settings):
    assert "(1210%)" in bar(int(12.1 * GiB), GiB) and "ss-bar-over" in bar(int(12.1 * GiB), GiB)
    assert 'style="width: 100.0%"' in bar(int(12.1 * GiB), GiB)  # the fill stops at the end
    assert "ss-bar-low" in bar(79, 100) and "ss-bar-mid" in bar(80, 100) and "ss-bar-high" in bar(95, 100)
    assert "ss-bar-over" not in bar(100, 100)
    assert "(∞%)" in bar(5, 0) and "(0%)" in bar(0, 0)
    settings.SHARESTORE_CAPACITY_WARNING_PERCENT = 50
    settings.SHARESTORE_CAPACITY_CRITICAL_PERCENT = 60
    assert "ss-bar-mid" in bar(50, 100) and "ss-bar-high" in bar(60, 100) and "ss-bar-low" in bar(49, 100)


@pytest.fixture
def committed_pool(topology):
    """The disks pool holding two real volumes of 640 MiB (1.25 GiB committed)."""
    disks = pool_named(topology, "disks")
    new_volume(topology, pool=disks, name="a", capacity=640 * MiB, data=False)
    new_volume(topology, pool=disks, name="b", capacity=640 * MiB, data=False)
    return disks


def test_capacity_below_committed_asks_for_confirmation_then_warns(admin_client, committed_pool):
    disks = committed_pool
    url = reverse("admin:volumes_pool_change", args=[disks.pk])
    errors = form_errors(admin_client.post(url, pool_edit_form(disks, capacity="1G", overcommit_ratio="1")))
    assert errors["capacity"] == [
        "Capacity x overcommit (1.0 GiB) is below what the pool's live volumes already promise "
        "(1.2 GiB): tick the confirmation to save it anyway."
    ]
    disks.refresh_from_db()
    assert disks.capacity == 1 << 40  # nothing changed

    response = admin_client.post(
        url, pool_edit_form(disks, capacity="1G", overcommit_ratio="1", confirm_capacity="on")
    )
    assert response.status_code == 302
    disks.refresh_from_db()
    assert disks.capacity == GiB
    warnings = [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert [str(m) for m in warnings] == [
        "Pool disks: capacity x overcommit (1.0 GiB) is below what is committed (1.2 GiB); new volumes "
        "and clones are refused until that changes."
    ]

    # The list says so: 125 % (not capped), red and striped, and over-committed instead of healthy.
    html = admin_client.get(reverse("admin:volumes_pool_changelist")).content.decode()
    row = html[html.index(f'<th class="field-name"><a href="/admin/volumes/pool/{disks.pk}/change/') :].split(
        "</tr>"
    )[0]
    assert "1.2 GiB / 1.0 GiB (125%)" in row
    assert "ss-bar-high ss-bar-over" in row
    assert "over-committed" in row and "healthy" not in row
    page = admin_client.get(url).content.decode()
    assert "over-committed by" in page and "filesystem free (what the disk really has)" in page


def test_a_higher_overcommit_makes_the_same_capacity_acceptable(admin_client, committed_pool):
    disks = committed_pool
    url = reverse("admin:volumes_pool_change", args=[disks.pk])
    response = admin_client.post(url, pool_edit_form(disks, capacity="1G", overcommit_ratio="2"))
    assert response.status_code == 302
    assert not [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    html = admin_client.get(reverse("admin:volumes_pool_changelist")).content.decode()
    row = html[html.index(f'<th class="field-name"><a href="/admin/volumes/pool/{disks.pk}/change/') :].split(
        "</tr>"
    )[0]
    assert "1.2 GiB / 2.0 GiB (62%)" in row and "healthy" in row and "ss-bar-low" in row


def test_backup_point_capacity_below_its_backups_asks_for_confirmation(admin_client, topology, data_dir):
    directory = data_dir / "bp"
    directory.mkdir()
    point = BackupPoint.objects.create(
        name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40
    )
    Backup.objects.create(
        name="b1",
        backup_point=point,
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        volume_uuid="00000000-0000-0000-0000-000000000001",
        volume_capacity=GiB,
        volume_type="block",
        snapshot_uuid="00000000-0000-0000-0000-000000000002",
        snapshot_name="s",
        status=BackupStatus.COMPLETED,
        size=2 * GiB,
    )
    url = reverse("admin:backups_backuppoint_change", args=[point.pk])
    base = {
        "name": "bp",
        "cluster": topology["cluster"].pk,
        "tenant": "",
        "btype": "local",
        "status": "healthy",
    }
    errors = form_errors(admin_client.post(url, {**base, "path": str(directory), "capacity": "1G"}))
    assert "below what the backups already occupy (2.0 GiB)" in errors["capacity"][0]
    point.refresh_from_db()
    assert point.capacity == 1 << 40
    response = admin_client.post(
        url, {**base, "path": str(directory), "capacity": "1G", "confirm_capacity": "on"}
    )
    assert response.status_code == 302
    point.refresh_from_db()
    assert point.capacity == GiB
    html = admin_client.get(reverse("admin:backups_backuppoint_changelist")).content.decode()
    assert "2.0 GiB / 1.0 GiB (200%)" in html and "over capacity" in html


# -- overcommit 0 ------------------------------------------------------------------------------------

OVERCOMMIT_MESSAGE = (
    "The overcommit ratio must be greater than 0: 1 lets volumes promise exactly the capacity, 1.5 half "
    "as much again."
)


def test_overcommit_zero_gets_a_clear_message_not_a_constraint_name(admin_client, topology, data_dir):
    directory = data_dir / "zero"
    directory.mkdir()
    errors = form_errors(
        admin_client.post(
            reverse("admin:volumes_pool_add"), pool_form(topology, path=str(directory), overcommit_ratio="0")
        )
    )
    assert errors == {"overcommit_ratio": [OVERCOMMIT_MESSAGE]}
    disks = pool_named(topology, "disks")
    # With another field refused too (the service never got to the ratio), still no constraint name.
    response = admin_client.post(
        reverse("admin:volumes_pool_change", args=[disks.pk]),
        pool_edit_form(disks, overcommit_ratio="0", capacity="-5"),
    )
    errors = form_errors(response)
    assert errors["overcommit_ratio"] == [OVERCOMMIT_MESSAGE]
    assert "Constraint" not in response.content.decode() and "__all__" not in errors
    disks.refresh_from_db()
    assert str(disks.overcommit_ratio) == "1.00"


def test_overcommit_zero_message_is_translated(admin_client, topology, data_dir):
    directory = data_dir / "zero"
    directory.mkdir()
    with translation.override("zh-hans"):
        response = admin_client.post(
            reverse("admin:volumes_pool_add"),
            pool_form(topology, path=str(directory), overcommit_ratio="0"),
            HTTP_ACCEPT_LANGUAGE="zh-hans",
        )
        errors = form_errors(response)
    assert errors["overcommit_ratio"] and errors["overcommit_ratio"] != [OVERCOMMIT_MESSAGE]
    assert "超分" in errors["overcommit_ratio"][0]
