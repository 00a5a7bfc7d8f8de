"""Every everyday console action in a real browser (Debian's Chromium driven by Playwright, DEBUG
off): from the volume, backup or token page, fill the form, preview (nothing changes), confirm, and
find the storage result real. Screenshots of each preview and result go to test-artifacts/."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from backups.choices import BackupStatus
from backups.models import Backup, BackupVerification
from backups.services.create import backup_add
from backups.services.points import backup_point_create
from sharestore.core.models import ApiToken
from sharestore.core.services.tokens import token_authenticate, token_create
from tests.admin.storage import MiB, head_path, new_volume, pool_named, write_pattern
from tests.admin.test_browser import CHROMIUM, shot
from tests.admin.test_browser import browser_page as browser_page  # noqa: F401 (the fixture)
from tests.conftest import pattern_matches
from tests.helpers import identical
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Snapshot, Volume
from volumes.services import demo
from volumes.services.snapshots import snapshot_create

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
    ),
]


@pytest.fixture
def scene(transactional_db, data_dir):
    """The demo topology, an operator, a volume with data and a snapshot s1, a backup point."""
    topology = demo.demo_topology_seed(data_dir=data_dir)
    get_user_model().objects.create_superuser("admin", "", "admin-pw")
    volume = new_volume(topology, pool=pool_named(topology, "disks"), name="web-data")
    snapshot_create(actor="test", volume=volume, name="s1")  # its task ran at the commit
    volume.refresh_from_db()
    directory = data_dir / "backup-point"
    directory.mkdir()
    point = backup_point_create(
        name="nightly", cluster=topology["cluster"], path=str(directory), capacity=1 << 40
    )
    return {"topology": topology, "volume": volume, "s1": s1_of(volume), "point": point}


def s1_of(volume: Volume) -> Snapshot:
    snapshot = Snapshot.objects.get(volume=volume, name="s1")
    assert snapshot.status == SnapshotStatus.AVAILABLE
    return snapshot


def layer_path(snapshot: Snapshot) -> str:
    return os.path.join(snapshot.volume.pool.path, snapshot.layer_name)


def completed_backup(scene) -> Backup:
    backup = backup_add(
        actor="test", volume=scene["volume"], snapshot=scene["s1"], backup_point=scene["point"], name="b1"
    )
    backup.refresh_from_db()
    assert backup.status == BackupStatus.COMPLETED
    return backup


def login(page, base: str, user: str = "admin", password: str = "admin-pw") -> None:
    page.goto(f"{base}/admin/")
    page.fill("#id_username", user)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")


def preview_and_confirm(page, name: str) -> None:
    """Ask for the preview (nothing changes), screenshot it, confirm, screenshot the result."""
    if page.locator("#ss-preview-result").count() == 0:
        page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator(".errorlist").count() == 0, page.locator(".errorlist").all_inner_texts()
    shot(page, f"action-{name}-preview")
    page.click("#ss-apply")
    page.wait_for_load_state()
    shot(page, f"action-{name}-done")


def success_text(page) -> str:
    page.wait_for_selector(".messagelist .success")
    return page.locator(".messagelist").inner_text()


def volume_page(page, base, volume) -> None:
    page.goto(f"{base}/admin/volumes/volume/{volume.pk}/change/")
    page.wait_for_selector("#ss-tree")


def test_debug_is_off():
    assert settings.DEBUG is False


def test_take_a_snapshot(live_server, browser_page, scene):  # noqa: F811
    page, volume = browser_page, scene["volume"]
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-snapshot")
    page.fill("#id_name", "s2")
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-new-snapshot").inner_text() == "s2: s1 › s2 › head"
    assert not Snapshot.objects.filter(name="s2").exists()
    preview_and_confirm(page, "snapshot")
    assert "Snapshot s2 of web-data" in success_text(page)
    s2 = Snapshot.objects.get(volume=volume, name="s2")
    assert s2.status == SnapshotStatus.AVAILABLE and os.path.exists(layer_path(s2))
    assert page.locator("#ss-tree li[data-node='s2']").count() == 1


def test_roll_back_from_the_tree(live_server, browser_page, scene):  # noqa: F811
    page, volume = browser_page, scene["volume"]
    write_pattern(head_path(volume), 0, MiB, 0x77)
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.locator("[data-actions='s1'] a", has_text="roll back").click()
    page.wait_for_selector("#ss-preview-result")
    assert "written in the active layer" in page.locator("#ss-lost").inner_text()
    assert pattern_matches(head_path(volume), "qcow2", 0, MiB, 0x77)
    preview_and_confirm(page, "rollback")
    assert "Rollback of web-data" in success_text(page)
    volume.refresh_from_db()
    assert volume.state == EventState.AVAILABLE and volume.current_snapshot == scene["s1"]
    assert pattern_matches(head_path(volume), "qcow2", 0, MiB, 0x11)


def test_delete_a_snapshot(live_server, browser_page, scene):  # noqa: F811
    page, volume = browser_page, scene["volume"]
    s2 = snapshot_create(actor="test", volume=volume, name="s2")
    s2.refresh_from_db()
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-delete-snapshot")
    page.select_option("#id_snapshot", label="s2")
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-apply").get_attribute("value") == "Delete snapshot s2"
    assert os.path.exists(layer_path(s2))
    preview_and_confirm(page, "delete-snapshot")
    success_text(page)
    assert not Snapshot.objects.filter(pk=s2.pk).exists() and not os.path.exists(layer_path(s2))


def test_linked_clone(live_server, browser_page, scene):  # noqa: F811
    page, volume, s1 = browser_page, scene["volume"], scene["s1"]
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-linked-clone")
    page.select_option("#id_snapshot", label="s1")
    page.fill("#id_name", "web-linked")
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert "constant time" in page.locator("#ss-copy-bytes").inner_text()
    preview_and_confirm(page, "linked-clone")
    assert "Clone web-linked of web-data" in success_text(page)
    clone = Volume.objects.get(name="web-linked")
    assert clone.state == EventState.AVAILABLE and clone.parent_snapshot == s1
    assert identical(layer_path(s1), head_path(clone))


def test_full_clone(live_server, browser_page, scene):  # noqa: F811
    page, volume, s1 = browser_page, scene["volume"], scene["s1"]
    bbb = pool_named(scene["topology"], "bbb")
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-full-clone")
    page.select_option("#id_snapshot", label="s1")
    page.fill("#id_name", "web-copy")
    page.select_option("#id_pool", label=bbb.name)
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-copy-bytes").inner_text().startswith("up to ")
    assert bbb.name in page.locator("#ss-preview-result").inner_text()
    preview_and_confirm(page, "full-clone")
    assert "Clone web-copy of web-data" in success_text(page)
    clone = Volume.objects.get(name="web-copy")
    assert clone.state == EventState.AVAILABLE and clone.pool == bbb and clone.parent_snapshot is None
    assert identical(layer_path(s1), head_path(clone))


def test_back_up_a_snapshot(live_server, browser_page, scene):  # noqa: F811
    page, volume = browser_page, scene["volume"]
    login(page, live_server.url)
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-backup")
    page.select_option("#id_snapshot", label="s1")
    page.select_option("#id_backup_point", label="nightly")
    page.fill("#id_name", "b1")
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-backup-kind").inner_text() == "full"
    assert not Backup.objects.exists()
    preview_and_confirm(page, "backup")
    assert "Backup b1 of web-data" in success_text(page)
    backup = Backup.objects.get(name="b1")
    assert backup.status == BackupStatus.COMPLETED and backup.size > 0


def test_restore_a_backup(live_server, browser_page, scene):  # noqa: F811
    page, s1 = browser_page, scene["s1"]
    backup = completed_backup(scene)
    bbb = pool_named(scene["topology"], "bbb")
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/backups/backup/{backup.pk}/change/")
    page.click("#ss-act-restore")
    page.fill("#id_name", "web-restored")
    page.select_option("#id_pool", label=bbb.name)
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert "b1" in page.locator("#ss-chain").inner_text()
    preview_and_confirm(page, "restore")
    assert "Restore of backup b1 into web-restored" in success_text(page)
    restored = Volume.objects.get(name="web-restored")
    assert restored.state == EventState.AVAILABLE and restored.pool == bbb
    assert identical(layer_path(s1), head_path(restored))


def test_verify_a_backup(live_server, browser_page, scene):  # noqa: F811
    page = browser_page
    backup = completed_backup(scene)
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/backups/backup/{backup.pk}/change/")
    page.click("#ss-act-verify")
    page.wait_for_selector("#ss-preview-result")
    assert not BackupVerification.objects.exists()
    preview_and_confirm(page, "verify")
    assert "Verification of backup b1 is queued" in success_text(page)
    assert BackupVerification.objects.get(backup=backup).result == "ok"


def test_protect_and_unprotect_a_backup(live_server, browser_page, scene):  # noqa: F811
    page = browser_page
    backup = completed_backup(scene)
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/backups/backup/{backup.pk}/change/")
    page.click("#ss-act-protect")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-protected-now").inner_text() == "not protected"
    preview_and_confirm(page, "protect")
    assert "Backup b1 is protected." in success_text(page)
    backup.refresh_from_db()
    assert backup.protected
    assert page.locator("#ss-act-protect").text_content().strip() == "Unprotect…"
    page.click("#ss-act-protect")
    preview_and_confirm(page, "unprotect")
    assert "no longer protected" in success_text(page)
    backup.refresh_from_db()
    assert not backup.protected


def test_issue_a_token_shown_once(live_server, browser_page, scene):  # noqa: F811
    page = browser_page
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/core/apitoken/")
    page.click("#ss-act-issue-token")
    page.fill("#id_name", "ci-runner")
    page.select_option("#id_tenant", label=scene["topology"]["tenant"].name)
    page.click("#ss-preview")
    page.wait_for_selector("#ss-preview-result")
    assert "only" in page.locator("#ss-token-scope").inner_text()
    assert not ApiToken.objects.filter(name="ci-runner").exists()
    preview_and_confirm(page, "issue-token")
    key = page.locator("#ss-token-key").inner_text()
    token = ApiToken.objects.get(name="ci-runner")
    assert token_authenticate(key) == token and key not in (token.key_hash, token.key_prefix)
    page.click("#ss-token-page")
    page.wait_for_selector("#ss-act-revoke-token")
    assert key not in page.content()


def test_revoke_a_token(live_server, browser_page, scene):  # noqa: F811
    page = browser_page
    token, key = token_create(name="leaked")
    login(page, live_server.url)
    page.goto(f"{live_server.url}/admin/core/apitoken/{token.pk}/change/")
    page.click("#ss-act-revoke-token")
    page.wait_for_selector("#ss-preview-result")
    assert page.locator("#ss-revoked").inner_text() == "not yet"
    preview_and_confirm(page, "revoke-token")
    assert "is revoked" in success_text(page)
    assert token_authenticate(key) is None
    assert page.locator("#ss-act-revoke-token").count() == 0


def test_a_missing_permission_is_named_on_the_403_page(live_server, browser_page, scene):  # noqa: F811
    page, volume = browser_page, scene["volume"]
    clerk = get_user_model().objects.create_user("clerk", password="clerk-pw", is_staff=True)
    clerk.user_permissions.set(
        Permission.objects.filter(content_type__app_label="volumes", codename__in=["view_volume"])
    )
    login(page, live_server.url, "clerk", "clerk-pw")
    volume_page(page, live_server.url, volume)
    page.click("#ss-act-full-clone")
    page.wait_for_selector("#ss-denied")
    assert "volumes.clone_volume" in page.locator("#ss-denied").inner_text()
    shot(page, "action-denied")
    page.goto(f"{live_server.url}/admin/volumes/volume/{volume.pk}/actions/clone/")
    page.select_option("#ss-language-select", "zh-hans")
    page.wait_for_selector("html[lang='zh-hans']")
    assert "可以克隆卷" in page.locator("#ss-denied").inner_text()
    shot(page, "action-denied-zh")
