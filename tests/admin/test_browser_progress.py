"""Live progress in a real browser (Chromium): while a copy runs, its bar, bytes and state move on the
operations list and on the volume's page without a reload, from the console's own polling script; the
polling stops once nothing runs. The test plays the worker: between polls it writes the operation's
progress as the runner's reporter does (a controlled update, no timed assertion)."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from tests.admin.storage import new_volume, pool_named
from tests.admin.test_browser import CHROMIUM, browser_page, shot  # noqa: F401 - browser_page: a fixture
from volumes.services import demo

MiB = 1 << 20

pytestmark = [pytest.mark.browser]


@pytest.fixture
def copying(transactional_db, data_dir):
    """A volume being cloned: its full-clone operation is running under a live lease at 10 %."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (make test installs it)")
    topology = demo.demo_topology_seed(data_dir=data_dir)
    get_user_model().objects.create_superuser("admin", "", "admin-pw")
    volume = new_volume(topology, pool=pool_named(topology, "disks"), name="clone-target")
    operation = Operation.objects.create(
        kind=OperationKind.CLONE_FULL,
        state=OperationState.RUNNING,
        volume=volume,
        target_type="volume",
        target_uuid=volume.uuid,
        owner="worker-1",
        attempts=1,
        phase="copying",
        progress=10.0,
        bytes_done=40 * MiB,
        bytes_total=400 * MiB,
        started=timezone.now() - timedelta(seconds=20),
        lease_expires_at=timezone.now() + timedelta(minutes=10),
    )
    return volume, operation


def report(operation: Operation, *, percent: float, done: int, **extra) -> None:
    """What the runner's Reporter writes for a running attempt."""
    Operation.objects.filter(pk=operation.pk).update(progress=percent, bytes_done=done, **extra)


def cell(page, operation, field):
    return page.locator(f'[data-ss-op="{operation.pk}"][data-ss-field="{field}"]').first


def wait_text(page, operation, field, text):
    page.wait_for_function(
        "([sel, text]) => { const el = document.querySelector(sel); return el && el.textContent.includes(text); }",
        arg=[f'[data-ss-op="{operation.pk}"][data-ss-field="{field}"]', text],
    )


def test_the_bar_moves_without_a_reload_and_polling_stops_when_done(live_server, browser_page, copying):
    page, base = browser_page, live_server.url
    volume, operation = copying
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")

    # The operations list: the server rendered 10 %, throughput and time left (works without JS too).
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "progress.json" in request.url else None)
    page.goto(f"{base}/admin/core/operation/?state__exact=running")
    assert cell(page, operation, "progress").inner_text() == "10%"
    assert cell(page, operation, "bytes").inner_text() == "40.0 MiB / 400.0 MiB"
    assert cell(page, operation, "throughput").inner_text().endswith("MiB/s")
    assert cell(page, operation, "eta").inner_text() != "-"
    # Every script comes from the console itself (no CDN, no external script).
    sources = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert any(src.endswith("/static/core/progress.js") for src in sources)
    assert all(src.startswith(base) for src in sources)
    assert page.locator("html").get_attribute("data-ss-polling") == "on"
    page.evaluate("window.ssNotReloaded = true")

    report(operation, percent=60.0, done=240 * MiB, phase="copying 1 of 1")
    wait_text(page, operation, "progress", "60%")
    assert page.evaluate("window.ssNotReloaded") is True
    assert cell(page, operation, "bytes").inner_text() == "240.0 MiB / 400.0 MiB"
    assert cell(page, operation, "phase").inner_text() == "copying 1 of 1"
    width = page.eval_on_selector(
        f'[data-ss-op="{operation.pk}"][data-ss-field="progress"] .ss-bar-fill', "el => el.style.width"
    )
    assert width == "60%"  # the browser normalises the width JS set (60.0%)
    assert polls and all(f"ids={operation.pk}" in url for url in polls)
    shot(page, "progress-list")

    # The volume's page polls the same view.
    page.goto(f"{base}/admin/volumes/volume/{volume.pk}/change/")
    assert cell(page, operation, "progress").inner_text() == "60%"
    page.evaluate("window.ssNotReloaded = true")
    report(operation, percent=85.0, done=340 * MiB)
    wait_text(page, operation, "progress", "85%")
    assert cell(page, operation, "bytes").inner_text() == "340.0 MiB / 400.0 MiB"

    # The copy ends: the state changes in place and the polling stops.
    report(
        operation,
        percent=100.0,
        done=400 * MiB,
        state=OperationState.SUCCEEDED,
        phase="done",
        finished=timezone.now(),
        lease_expires_at=None,
    )
    wait_text(page, operation, "state", "succeeded")
    assert page.evaluate("window.ssNotReloaded") is True
    assert cell(page, operation, "state").get_attribute("data-ss-active") == ""
    assert cell(page, operation, "eta").inner_text() == "-"
    shot(page, "progress-volume")
    page.wait_for_selector("html[data-ss-polling='stopped']", state="attached")
    settled = len(polls)
    # Nothing is scheduled any more: another look at the page makes no request.
    page.evaluate("document.body.offsetHeight")
    assert len(polls) == settled
