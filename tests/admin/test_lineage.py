"""Lineage in the console: a full clone keeps the snapshot it was made from, a restored volume links to
its backup, the volumes list has a source column and an origin filter, deleted volumes are hidden
until asked for. Real clones and restores (qemu-img on images in the test's pools)."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps
from django.urls import reverse

from backups.choices import BackupStatus
from backups.services.create import backup_add
from backups.services.points import backup_point_create
from backups.services.restore import backup_restore
from tests.admin.storage import new_volume, pool_named
from tests.helpers import run_tasks
from volumes.choices import EventState
from volumes.models import Volume
from volumes.services import clones
from volumes.services.snapshots import snapshot_create

LIST = "admin:volumes_volume_changelist"


def listed(client, query: str = "") -> list[str]:
    html = client.get(reverse(LIST) + query).content.decode()
    return sorted(re.findall(r'<th class="field-name"><a href="[^"]+">([^<]+)</a>', html))


def clone(source, snapshot, name, *, linked, pool=None) -> Volume:
    with run_tasks():
        volume = clones.clone_create(
            actor="test",
            source=source,
            snapshot=snapshot,
            tenant=source.tenant,
            pool=pool or source.pool,
            name=name,
            linked=linked,
        )
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE, volume.get_state_display()
    return volume


@pytest.fixture
def family(topology):
    """A source volume with snapshot s1, a full clone of s1 in the other pool and a linked clone of it."""
    disks, bbb = pool_named(topology, "disks"), pool_named(topology, "bbb")
    source = new_volume(topology, pool=disks, name="src")
    with run_tasks():
        snapshot = snapshot_create(actor="test", volume=source, name="s1")
    snapshot.refresh_from_db()
    source.refresh_from_db()
    full = clone(source, snapshot, "full-copy", linked=False, pool=bbb)
    linked = clone(source, snapshot, "thin-copy", linked=True)
    return {"source": source, "snapshot": snapshot, "full": full, "linked": linked, "topology": topology}


def test_a_full_clone_keeps_its_source_snapshot(admin_client, family):
    full, linked, snapshot = family["full"], family["linked"], family["snapshot"]
    assert (full.source_volume_id, full.parent_snapshot_id) == (family["source"].pk, None)
    assert full.clone_source_snapshot_id == snapshot.pk
    assert (linked.parent_snapshot_id, linked.clone_source_snapshot_id) == (snapshot.pk, snapshot.pk)
    page = admin_client.get(reverse("admin:volumes_volume_change", args=[full.pk])).content.decode()
    assert re.search(r"field-clone_source_snapshot.*?s1", page, re.S)


def test_source_column_and_origin_filter(admin_client, family):
    html = admin_client.get(reverse(LIST)).content.decode()
    full_row = html[
        html.index(f'<th class="field-name"><a href="/admin/volumes/volume/{family["full"].pk}/') :
    ]
    full_row = full_row.split("</tr>")[0]
    assert "src@s1" in full_row and ">full<" in full_row
    assert reverse("admin:volumes_volume_change", args=[family["source"].pk]) in full_row
    assert listed(admin_client, "?origin=full") == ["full-copy"]
    assert listed(admin_client, "?origin=linked") == ["thin-copy"]
    assert listed(admin_client, "?origin=none") == ["src"]
    # From the source's page: the volumes cloned from it.
    page = admin_client.get(
        reverse("admin:volumes_volume_change", args=[family["source"].pk])
    ).content.decode()
    query = f"?source_volume__id__exact={family['source'].pk}&deleted=show"
    assert query.replace("&", "&amp;") in page
    assert listed(admin_client, query) == ["full-copy", "thin-copy"]


def test_deleted_volumes_are_hidden_until_asked_for(admin_client, family):
    Volume.objects.filter(pk=family["linked"].pk).update(state=EventState.DELETED)
    assert listed(admin_client) == ["full-copy", "src"]
    assert listed(admin_client, "?deleted=show") == ["full-copy", "src", "thin-copy"]
    assert listed(admin_client, "?deleted=only") == ["thin-copy"]
    assert listed(admin_client, f"?state__exact={EventState.DELETED.value}") == ["thin-copy"]


def test_a_restored_volume_links_to_its_backup(admin_client, family, data_dir):
    topology, source, snapshot = family["topology"], family["source"], family["snapshot"]
    directory = data_dir / "bp"
    directory.mkdir()
    point = backup_point_create(name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40)
    with run_tasks():
        backup = backup_add(
            actor="test", volume=source, snapshot=snapshot, backup_point=point, name="nightly"
        )
    backup.refresh_from_db()
    assert backup.status == BackupStatus.COMPLETED
    with run_tasks():
        restored = backup_restore(
            actor="test",
            backup=backup,
            tenant=topology["tenant"],
            cluster=topology["cluster"],
            pool=pool_named(topology, "disks"),
            name="back-again",
        )
    restored.refresh_from_db()
    assert restored.state == EventState.AVAILABLE
    assert restored.restored_from_backup_uuid == backup.uuid

    page = admin_client.get(reverse("admin:volumes_volume_change", args=[restored.pk])).content.decode()
    link = f'<a href="{reverse("admin:backups_backup_change", args=[backup.pk])}" id="ss-restored-from">nightly</a>'
    assert link in page
    assert listed(admin_client, "?origin=restored") == ["back-again"]
    html = admin_client.get(reverse(LIST) + "?origin=restored").content.decode()
    assert f"?q={backup.uuid}" in html and str(backup.uuid)[:8] in html

    # A backup that is no longer recorded: the UUID stays, said plainly.
    type(backup).objects.filter(pk=backup.pk).update(status=BackupStatus.DELETED)
    type(backup).objects.filter(pk=backup.pk).delete()
    page = admin_client.get(reverse("admin:volumes_volume_change", args=[restored.pk])).content.decode()
    assert f"{backup.uuid} (the backup is no longer recorded)" in page


def test_the_migration_fills_lineage_of_existing_clones_from_their_operations(family):
    """Rows made before the fields existed: 0012.s data step reads the clone operations back."""
    migration = importlib.import_module("volumes.migrations.0012_clone_source_snapshot")
    full, linked, snapshot = family["full"], family["linked"], family["snapshot"]
    Volume.objects.filter(pk__in=[full.pk, linked.pk]).update(clone_source_snapshot=None)
    migration.fill_lineage(apps, None)
    refilled = Volume.objects.filter(pk__in=[full.pk, linked.pk]).values_list(
        "clone_source_snapshot", flat=True
    )
    assert list(refilled) == [snapshot.pk, snapshot.pk]
    assert Volume.objects.get(pk=family["source"].pk).clone_source_snapshot_id is None
