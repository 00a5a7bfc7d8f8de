"""The volumes list fits a 1440 px screen (Chromium): no horizontal scrolling with long names, a full
clone, a restored-looking lineage and a deleted volume hidden by default. Screenshots go to
test-artifacts/ (English and Chinese)."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model

from tests.admin.storage import new_volume, pool_named
from tests.admin.test_browser import CHROMIUM, browser_page, shot  # noqa: F401 (fixture)
from tests.helpers import run_tasks
from volumes.choices import EventState
from volumes.models import Pool, Volume
from volumes.services import clones, demo
from volumes.services.snapshots import snapshot_create

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
    ),
]

WIDTH = 1440


@pytest.fixture
def crowded(transactional_db, data_dir):
    """Volumes with long names in both pools, a snapshot, a full clone of it and a deleted volume."""
    topology = demo.demo_topology_seed(data_dir=data_dir)
    get_user_model().objects.create_superuser("admin", "", "admin-pw")
    disks, bbb = pool_named(topology, "disks"), pool_named(topology, "bbb")
    source = new_volume(topology, pool=disks, name="database-primary-replica-volume-01")
    for index in range(3):
        new_volume(topology, pool=bbb if index % 2 else disks, name=f"web-frontend-data-{index:02d}")
    with run_tasks():
        snapshot = snapshot_create(actor="test", volume=source, name="before-upgrade-2026")
    with run_tasks():
        clone = clones.clone_create(
            actor="test",
            source=source,
            snapshot=snapshot,
            tenant=source.tenant,
            pool=bbb,
            name="database-primary-full-clone",
            linked=False,
        )
    gone = new_volume(topology, pool=disks, name="old-deleted-volume", data=False)
    Volume.objects.filter(pk=gone.pk).update(state=EventState.DELETED)
    return {"clone": Volume.objects.get(pk=clone.pk), "gone": gone, "snapshot": snapshot}


def test_volumes_list_fits_1440_pixels(live_server, browser_page, crowded):  # noqa: F811
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")

    for language, tag in (("en", "en"), ("zh-hans", "zh")):
        if language != "en":
            page.select_option("#ss-language-select", language)
            page.wait_for_selector(f"html[lang='{language}']")
        page.goto(f"{base}/admin/volumes/volume/")
        page.wait_for_selector("#result_list")
        names = page.locator("#result_list tbody th a").all_inner_texts()
        assert "old-deleted-volume" not in names and "database-primary-full-clone" in names
        shot(page, f"volumes-1440-{tag}")
        # Every column is on screen: the page does not scroll sideways.
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= WIDTH, f"{language}: the volumes list is {scroll_width} px wide"
        # ... nor does the list inside its own scrolling box: the last column is in view.
        box = page.locator("#changelist .results")
        assert box.evaluate("b => b.scrollWidth <= b.clientWidth"), box.evaluate(
            "b => [b.scrollWidth, b.clientWidth]"
        )
        last = page.locator("#result_list thead th").last.bounding_box()
        assert last["x"] + last["width"] <= WIDTH
        # State badges stay on one line: as tall as one line of their text.
        heights = page.locator("#result_list .ss-badge").evaluate_all(
            "badges => badges.map(b => b.getClientRects().length)"
        )
        assert heights and set(heights) == {1}
        # The full clone names its source volume and snapshot; the UUID is short with the full one in title.
        clone = crowded["clone"]
        row = page.locator("#result_list tr", has_text="database-primary-full-clone")
        assert (
            "database-primary-replica-volume-01@before-upgrade-2026"
            in row.locator("td.field-source").inner_text()
        )
        uuid_cell = row.locator("td.field-short_uuid .ss-uuid")
        assert (uuid_cell.inner_text(), uuid_cell.get_attribute("title")) == (
            str(clone.uuid)[:8],
            str(clone.uuid),
        )

    # The deleted volume is one filter away.
    page.goto(f"{base}/admin/volumes/volume/?deleted=only")
    assert page.locator("#result_list tbody th a").all_inner_texts() == ["old-deleted-volume"]

    # The pools list at the same width: a pool whose volumes promise twice its capacity says so.
    Pool.objects.filter(name="bbb").update(capacity=64 << 20)
    page.goto(f"{base}/admin/volumes/pool/")
    row = page.locator("#result_list tr", has_text="bbb")
    assert "128.0 MiB / 64.0 MiB (200%)" in row.locator("td.field-committed_bar").inner_text()
    assert row.locator("td.field-committed_bar .ss-bar-high.ss-bar-over").count() == 1
    assert "超额承诺" in row.locator("td.field-status_badge").inner_text()
    shot(page, "pools-1440-zh")
    box = page.locator("#changelist .results")
    assert box.evaluate("b => b.scrollWidth <= b.clientWidth"), box.evaluate(
        "b => [b.scrollWidth, b.clientWidth]"
    )

    # A volume's page: its dozen action buttons wrap onto rows of their own, none laid over the title
    # (English labels are the longer ones: two rows at this width).
    source = Volume.objects.get(name="database-primary-replica-volume-01")
    for language, tag in (("zh-hans", "zh"), ("en", "en")):
        if language == "en":
            page.select_option("#ss-language-select", "en")
            page.wait_for_selector("html[lang='en']")
        page.goto(f"{base}/admin/volumes/volume/{source.pk}/change/")
        page.wait_for_selector(f"html[lang='{language}'] #content > h2")
        headings = page.locator("#content > h1, #content > h2").evaluate_all(
            "hs => hs.map(h => { const r = h.getBoundingClientRect(); return [r.top, r.bottom]; })"
        )
        buttons = page.locator(".object-tools li").evaluate_all(
            "items => items.map(i => { const r = i.getBoundingClientRect(); return [r.top, r.bottom]; })"
        )
        assert len(headings) == 2 and len(buttons) >= 10
        overlapping = [(b, h) for b in buttons for h in headings if b[0] < h[1] and b[1] > h[0]]
        assert not overlapping, (language, headings, buttons)
        shot(page, f"volume-page-1440-{tag}")
