"""Cancel in a real browser: an operator finds a running full clone (copied by a real `qcluster`
worker, slowed by qemu-img's own rate limit), opens the cancel preview, reads what is running and how
far it is, confirms, and the copy stops: the operation ends cancelled and no partial file remains in
the pool. An operator without `core.cancel_operation` is offered no cancel and is refused (403)."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from tests.admin.test_browser import browser_page, pytestmark, shot  # noqa: F401
from tests.helpers import POOL_DISKS
from tests.services.test_cancel import copying, ended, slow_qemu_img, source_snapshot
from tests.services.test_hosts_real import partials, scope_of, wait_for, workers  # noqa: F401
from volumes.choices import EventState
from volumes.models import Volume
from volumes.services import clones


def log_in(page, base, username, password):
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")


def test_an_operator_cancels_a_running_full_clone_and_no_partial_remains(
    live_server, browser_page, workers, topology, tmp_path
):
    page, base = browser_page, live_server.url
    workers.start(
        "w",
        SHARESTORE_QEMU_IMG=slow_qemu_img(tmp_path),
        SHARESTORE_LEASE_SECONDS="6",
        SHARESTORE_HEARTBEAT_SECONDS="1",
    )
    users = get_user_model()
    users.objects.create_superuser("admin", "", "admin-pw")
    viewer = users.objects.create_user("viewer", "", "viewer-pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operation"))
    scope = scope_of(POOL_DISKS)
    pool_dir = scope["pool"].path
    source, snapshot = source_snapshot(scope)
    clone = clones.clone_create(
        actor="t",
        source=source,
        snapshot=snapshot,
        tenant=scope["tenant"],
        pool=scope["pool"],
        name="big-copy",
        linked=False,
    )
    operation = Operation.objects.get(target_uuid=clone.uuid, kind=OperationKind.CLONE_FULL)
    assert copying(operation, pool_dir), Operation.objects.filter(pk=operation.pk).values()

    # Without the permission: the operation's page offers no cancel, and the URL answers 403.
    log_in(page, base, "viewer", "viewer-pw")
    page.goto(f"{base}/admin/core/operation/{operation.pk}/change/")
    assert page.locator("#ss-cancel").count() == 0
    assert page.goto(f"{base}/admin/core/operation/{operation.pk}/cancel/").status == 403
    page.context.clear_cookies()

    # The operator finds the running copy in the operations list and opens its cancel preview.
    log_in(page, base, "admin", "admin-pw")
    page.goto(f"{base}/admin/core/operation/?state__exact=running")
    row = page.locator("#result_list tbody tr", has_text="big-copy")
    assert row.count() == 1
    row.locator("a.ss-cancel").click()
    page.wait_for_selector(".ss-cancel-preview")
    assert page.locator("#ss-cancel-uuid").inner_text() == str(operation.uuid)
    assert " of " in page.locator("#ss-cancel-bytes").inner_text()
    assert "removes the partial file" in page.locator(".ss-preview-note").inner_text()
    shot(page, "cancel-1-preview")
    # Nothing changed by the preview.
    assert Operation.objects.get(pk=operation.pk).cancel_requested_at is None

    page.click("#ss-apply")
    page.wait_for_selector(".messagelist")
    assert "stops the copy" in page.locator(".messagelist").inner_text()
    assert page.url.endswith(f"/admin/core/operation/{operation.pk}/change/")

    final = wait_for(lambda: ended(operation.pk), 60)
    assert final is not None and final.state == OperationState.CANCELLED
    page.reload()
    assert page.locator("#ss-cancel").count() == 0  # nothing to cancel any more
    shot(page, "cancel-2-cancelled")

    # The copy's partial file is gone, no image of the clone was published, the clone is not usable.
    assert partials(pool_dir) == []
    names = [name for _d, _s, files in os.walk(pool_dir) for name in files]
    assert not any(os.path.basename(clone.image_name) in name for name in names), names
    assert Volume.objects.get(pk=clone.pk).state == EventState.ERROR
    assert AuditEvent.objects.get(action="operation.cancel", operation=operation).actor == "console:admin"
