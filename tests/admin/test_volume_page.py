"""The per-volume page: snapshot tree with head, linked clones, backups, operations and the timeline."""

from __future__ import annotations

import re
import uuid as uuid_lib

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backups.choices import BackupStatus
from backups.models import Backup
from backups.services.points import backup_point_create
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from sharestore.core.services.state import transition
from tests.admin.storage import build_tree, new_volume, pool_named
from volumes.choices import EventState
from volumes.models import Volume


def tree_items(html: str) -> list[str]:
    """The tree as rendered: each node's name in document order, nesting shown by depth markers."""
    section = html.split('id="ss-tree"', 1)[1].split('id="ss-clones"', 1)[0]
    items, depth = [], 0
    for token in re.finditer(r"<ul[^>]*>|</ul>|<li[^>]*data-node=\"([^\"]+)\"", section):
        text = token.group(0)
        if text.startswith("<ul"):
            depth += 1
        elif text == "</ul>":
            depth -= 1
        else:
            items.append("  " * (depth - 1) + token.group(1))
    return items


def test_volume_page_shows_tree_clones_backups_operations_and_timeline(admin_client, topology, data_dir):
    disks = pool_named(topology, "disks")
    volume = new_volume(topology, pool=disks, name="web-data")
    snapshots = build_tree(volume, [("s1", None), ("s2", "s1"), ("s3", "s1"), ("s4", "s3")], head_on="s2")
    clone = Volume.objects.create(
        name="web-clone",
        tenant=volume.tenant,
        namespace=volume.namespace,
        cluster=volume.cluster,
        pool=disks,
        volume_type="block",
        capacity=volume.capacity,
        snap_cap=0,
        state=EventState.AVAILABLE,
        source_volume=volume,
        parent_snapshot=snapshots["s3"],
    )
    point_dir = data_dir / "bp"
    point_dir.mkdir()
    point = backup_point_create(
        name="nightly", cluster=topology["cluster"], path=str(point_dir), capacity=1 << 40
    )
    Backup.objects.create(
        name="before-upgrade",
        backup_point=point,
        tenant=volume.tenant,
        cluster=volume.cluster,
        volume=volume,
        volume_uuid=volume.uuid,
        volume_capacity=volume.capacity,
        volume_type="block",
        snapshot=snapshots["s2"],
        snapshot_uuid=snapshots["s2"].uuid,
        snapshot_name="s2",
        status=BackupStatus.COMPLETED,
        size=4096,
    )
    Operation.objects.create(
        kind=OperationKind.SNAPSHOT_CREATE,
        state=OperationState.FAILED,
        volume=volume,
        target_type="snapshot",
        target_uuid=uuid_lib.uuid4(),
        error_scode=5004,
        error_message=f"no space left on {disks.path}",
        error_params={"where": disks.path},
    )
    transition(
        volume,
        allowed=[EventState.AVAILABLE],
        to=EventState.SNAPSHOTTING,
        action="snapshot.create",
        actor="platform:alice",
    )

    url = reverse("admin:volumes_volume_change", args=[volume.pk])
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    html = response.content.decode()

    assert response.status_code == 200
    assert tree_items(html) == ["s1", "  s2", "    head", "  s3", "    s4"]
    assert f'href="/admin/volumes/volume/{clone.pk}/change/">web-clone</a>' in html
    assert "1 linked clone" in html  # on s3
    assert "before-upgrade" in html and "nightly" in html
    assert f"5004: no space left on {disks.path}" in html
    timeline = html.split('id="ss-timeline"', 1)[1]
    assert "platform:alice" in timeline and "snapshot.create" in timeline
    assert "0 (available) → 7 (snapshotting)" in timeline
    assert "volume.create.finish" in timeline
    # Repair buttons for a superuser.
    assert f'href="/admin/volumes/volume/{volume.pk}/reset-state/"' in html
    assert len(queries) < 40, len(queries)


def test_volume_page_in_chinese_shows_catalogue_message_cn(admin_client, topology):
    disks = pool_named(topology, "disks")
    volume = new_volume(topology, pool=disks, name="v")
    Operation.objects.create(
        kind=OperationKind.VOLUME_DELETE,
        state=OperationState.FAILED,
        volume=volume,
        target_type="volume",
        target_uuid=volume.uuid,
        error_scode=4001,
        error_message=f"volume {volume.uuid} is 5 (deleting): cannot delete now",
        error_params={
            "kind": "volume",
            "uuid": str(volume.uuid),
            "state": "5 (deleting)",
            "action": "delete",
        },
    )
    html = admin_client.get(
        reverse("admin:volumes_volume_change", args=[volume.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert f"4001: 卷 {volume.uuid} 当前状态为 5（删除中），现在无法执行删除" in html
    assert "快照树" in html  # "Snapshot tree"
