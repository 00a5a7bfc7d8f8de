"""The console in a real browser (Debian's Chromium driven by Playwright): log in, filter volumes by
pool, open a volume's page and see its tree, preview reconcile on a pool with an orphan file and a
missing image, apply the fix and see the result. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from sharestore.core.models import AuditEvent
from tests.admin.storage import build_tree, head_path, new_volume, plant_orphan, pool_named
from volumes.choices import EventState
from volumes.models import Volume
from volumes.services import demo

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
    ),
]


@pytest.fixture
def browser_page(tmp_path, monkeypatch):
    """A headless Chromium page with a fresh profile and no background network traffic."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test still touches the ORM
    # between browser steps, which Django refuses in a thread with a running loop unless told.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    profile = tmp_path / "chromium-profile"
    # Django keeps one connection per context; Playwright's greenlets give the test body another
    # one. Close them on both sides, or PostgreSQL refuses to drop the test database at the end.
    connections.close_all()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
            locale="en-US",
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(15000)
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        finally:
            context.close()
            connections.close_all()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


@pytest.fixture
def incident(transactional_db, data_dir):
    """Demo topology, a volume with a snapshot tree, one whose image was lost, an orphan file."""
    topology = demo.demo_topology_seed(data_dir=data_dir)
    get_user_model().objects.create_superuser("admin", "", "admin-pw")
    disks, bbb = pool_named(topology, "disks"), pool_named(topology, "bbb")
    tree = new_volume(topology, pool=disks, name="web-data")
    build_tree(tree, [("s1", None), ("s2", "s1"), ("s3", "s1")], head_on="s3")
    lost = new_volume(topology, pool=disks, name="db-data")
    new_volume(topology, pool=bbb, name="elsewhere")
    os.unlink(head_path(lost))
    orphan = plant_orphan(disks)
    return {"disks": disks, "tree": tree, "lost": lost, "orphan": orphan}


def test_operator_finds_and_fixes_an_orphan_and_a_missing_image(live_server, browser_page, incident):
    page, base = browser_page, live_server.url
    disks, lost, orphan = incident["disks"], incident["lost"], incident["orphan"]
    # Only this test's own pictures (console-<n>-<step>.png): other browser tests write theirs into
    # the same folder, at the same time under pytest-xdist.
    if ARTIFACTS.exists():
        for old in ARTIFACTS.glob("console-[0-9]-*.png"):
            old.unlink()

    # Log in.
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")
    assert page.locator("#site-name").inner_text() == "sharestore console"
    shot(page, "1-index")

    # Filter volumes by pool.
    page.click("#ss-nav >> text=Volumes")
    page.locator("#changelist-filter details[data-filter-title='pool'] a", has_text="disks").click()
    page.wait_for_url(f"**pool__id__exact={disks.pk}**")
    names = sorted(page.locator("#result_list tbody th a").all_inner_texts())
    assert names == ["db-data", "web-data"]
    shot(page, "2-volumes-by-pool")

    # The volume's page shows its tree, with head under s3.
    page.click("#result_list >> text=web-data")
    page.wait_for_selector("#ss-tree")
    tree = page.locator("#ss-tree")
    assert tree.locator("li[data-node]").evaluate_all("nodes => nodes.map(n => n.dataset.node)") == [
        "s1",
        "s2",
        "s3",
        "head",
    ]
    assert tree.locator("li[data-node='s3'] > ul > li[data-node='head']").count() == 1
    assert tree.locator("li[data-node='s1'] > ul > li[data-node='s2']").count() == 1
    shot(page, "3-volume-tree")

    # Reconcile the pool: the dry run lists both incidents and changes nothing.
    page.click("#ss-nav >> text=Pools")
    page.locator("#result_list tr", has_text="disks").locator("input.action-select").check()
    page.select_option("select[name=action]", "reconcile_action")
    page.click("button[name=index]")
    page.wait_for_selector(".ss-report")
    orphan_name = str(orphan.relative_to(disks.path))
    assert page.locator(f".ss-finding[data-kind='orphan_file'][data-name='{orphan_name}']").count() == 1
    assert page.locator(f".ss-finding[data-kind='missing_file'][data-name='{lost.image_name}']").count() == 1
    assert page.locator("#ss-apply").get_attribute("value") == "Apply fixes (2 findings)"
    assert orphan.exists() and Volume.objects.get(pk=lost.pk).state == EventState.AVAILABLE
    shot(page, "4-reconcile-preview")

    # Apply: the orphan is removed, the volume without an image is marked error.
    page.click("#ss-apply")
    page.wait_for_selector(".messagelist")
    assert "Reconcile fixed 2 finding(s); 0 remain." in page.locator(".messagelist").inner_text()
    assert page.locator(".ss-finding .ss-fixed").count() == 2
    assert not orphan.exists()
    assert Volume.objects.get(pk=lost.pk).state == EventState.ERROR
    assert AuditEvent.objects.filter(
        volume=lost, action="reconcile.missing_image", actor="console:admin"
    ).exists()
    shot(page, "5-reconcile-fixed")

    # In Chinese, through the switch: the volume now reads as error.
    page.goto(f"{base}/admin/volumes/volume/{lost.pk}/change/")
    page.select_option("#ss-language-select", "zh-hans")
    page.wait_for_selector("html[lang='zh-hans']")
    assert "快照树" in page.locator("#ss-tree h2").inner_text()
    assert "错误" in page.locator(".field-state").inner_text()
    # The audited action (reconcile.missing_image) in words, from sharestore/error_words.py.
    assert "记录缺失的镜像" in page.locator("#ss-timeline").inner_text()
    shot(page, "6-volume-zh")
