"""Stale and failed work in the console: a running operation whose lease expired is marked, with the
time the sweeper takes it over, and can be filtered; reset state refuses until the sweep has had its
chance; a takeover is audited; a failed full clone shows its cause in the list and is retried as a new
operation with the same parameters, whose copy compares equal to the source snapshot."""

from __future__ import annotations

import os
import stat
from datetime import UTC, timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.timezone import localtime

from backups.choices import BackupStatus
from backups.models import Backup
from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.console import error_cause
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.services import leases
from sharestore.core.services.operations import OperationHandler, heartbeat_seconds, operation_run
from tests.admin.storage import build_tree, new_volume, pool_named, write_pattern
from tests.helpers import identical, run_tasks
from tests.services.test_backups import (  # noqa: F401 - point: a fixture
    backup,
    backup_file,
    head_path,
    layer_path,
    make_volume,
    point,
    restore,
    snap,
    write,
)
from volumes.choices import EventState
from volumes.models import Volume
from volumes.services import clones, repair
from volumes.services.snapshots import snapshot_create
from volumes.services.volumes import pool_driver


@pytest.fixture
def disks(topology):
    return pool_named(topology, "disks")


def running(volume, *, expired_seconds_ago: float, owner: str = "dead-worker") -> Operation:
    """A running operation whose lease expired `expired_seconds_ago` (negative: still held)."""
    return Operation.objects.create(
        kind=OperationKind.SNAPSHOT_CREATE,
        state=OperationState.RUNNING,
        volume=volume,
        target_type="volume",
        target_uuid=volume.uuid,
        owner=owner,
        attempts=1,
        started=timezone.now() - timedelta(minutes=2),
        lease_expires_at=timezone.now() - timedelta(seconds=expired_seconds_ago),
    )


def lease_cell(html: str, operation: Operation) -> str:
    """What the list shows in the lease place of the operation's state cell."""
    start = html.index(f'data-ss-op="{operation.pk}" data-ss-field="lease">')
    return html[start : html.index("</td>", start)]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# -- the marker, its takeover time and the filter ------------------------------------------------------


def test_expired_lease_is_marked_with_its_takeover_time_and_filtered(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    expired = running(volume, expired_seconds_ago=2)
    held = running(volume, expired_seconds_ago=-60, owner="live-worker")
    url = reverse("admin:core_operation_changelist")

    html = admin_client.get(url).content.decode()
    assert "lease expired" in lease_cell(html, expired)
    assert "lease expired" not in lease_cell(html, held)
    # The sweep runs every heartbeat interval in each worker's agent; the broker delivers within its poll.
    takeover = expired.lease_expires_at + timedelta(seconds=heartbeat_seconds() + settings.Q_CLUSTER["poll"])
    assert leases.expected_takeover_at(expired.lease_expires_at) == takeover
    assert f"takeover expected by {localtime(takeover):%H:%M:%S}" in html

    filtered = admin_client.get(url + "?lease=expired")
    assert [o.pk for o in filtered.context["cl"].result_list] == [expired.pk]
    everything = admin_client.get(url + "?state__exact=running").context["cl"].result_list
    assert [o.pk for o in everything] == [held.pk, expired.pk]

    # A takeover long overdue says so (no worker took it: is any running?).
    Operation.objects.filter(pk=expired.pk).update(lease_expires_at=timezone.now() - timedelta(hours=1))
    assert "takeover overdue since" in admin_client.get(url + "?lease=expired").content.decode()


# -- reset state waits for the sweep -----------------------------------------------------------------


def test_reset_state_refuses_until_the_sweep_had_its_chance(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    build_tree(volume, [("s1", None)], head_on="s1")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.SNAPSHOTTING)
    operation = running(volume, expired_seconds_ago=1)
    url = reverse("admin:volumes_volume_reset_state", args=[volume.pk])
    window_end = leases.takeover_window_end(operation.lease_expires_at)
    assert window_end == operation.lease_expires_at + timedelta(
        seconds=leases.sweep_interval_seconds() + leases.takeover_margin_seconds()
    )
    retry_at = window_end.astimezone(UTC).isoformat(timespec="seconds")

    preview = admin_client.get(url)
    proposal = preview.context["proposal"]
    assert (proposal.awaiting_operation, proposal.retry_at) == (str(operation.uuid), retry_at)
    html = preview.content.decode()
    assert 'id="ss-awaiting-takeover"' in html and f"Try again after {retry_at}" in html
    assert 'id="ss-apply"' not in html

    # The service refuses too (the form could have been posted from an older preview).
    with pytest.raises(errors.RepairAwaitingTakeover) as refused:
        repair.reset_state(
            actor="test", volume=volume, expected_from=EventState.SNAPSHOTTING, to_state=EventState.AVAILABLE
        )
    assert refused.value.scode == 4740 and refused.value.params["retry_at"] == retry_at
    assert "retry after" in refused.value.render_message() and "请在" in refused.value.render_message_cn()
    response = admin_client.post(
        url, {"expected_from": EventState.SNAPSHOTTING, "to_state": EventState.AVAILABLE}
    )
    assert any(m.startswith("scode 4740:") for m in messages_of(response))
    operation.refresh_from_db()
    assert operation.state == OperationState.RUNNING
    assert Volume.objects.get(pk=volume.pk).state == EventState.SNAPSHOTTING

    # Once the window has passed without a takeover (no worker alive), the reset goes ahead.
    gone = leases.sweep_interval_seconds() + leases.takeover_margin_seconds() + 1
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=gone)
    )
    assert admin_client.get(url).context["proposal"].retry_at == ""
    response = admin_client.post(
        url, {"expected_from": EventState.SNAPSHOTTING, "to_state": EventState.AVAILABLE}
    )
    assert response.status_code == 302
    assert Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE
    operation.refresh_from_db()
    assert operation.state == OperationState.CANCELLED


# -- the takeover is audited --------------------------------------------------------------------------


def test_a_takeover_writes_an_audit_event_naming_both_owners(topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    operation = running(volume, expired_seconds_ago=5, owner="host-a:123:deadbeef")
    seen = []
    handler = OperationHandler(
        run=lambda op, reporter: seen.append(op.owner), succeed=lambda op: None, fail=lambda op, e: None
    )

    operation_run(operation.pk, handler)

    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED and operation.attempts == 2
    new_owner = seen[0]
    assert new_owner != "host-a:123:deadbeef"
    event = AuditEvent.objects.get(operation=operation, action="operation.takeover")
    assert event.actor == f"worker {new_owner}"
    assert "host-a:123:deadbeef" in event.message and new_owner in event.message
    assert event.volume_id == volume.pk


# -- a failed full clone: its cause in the list, and retry ------------------------------------------


class RefusingConvert:
    """A qemu-img whose `convert` fails as a filesystem that forbids writing would, while `refusing`
    (fault injection: a flag file the wrapper reads); every other subcommand is the real one."""

    def __init__(self, tmp_path, real: str):
        self.real, self.flag = real, tmp_path / "refuse-convert"
        self.path = tmp_path / "qemu-img-eperm"
        self.path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = convert ] && [ -e {self.flag} ]; then\n'
            "  for last; do :; done\n"
            "  echo \"qemu-img: Could not create '$last': Operation not permitted\" >&2\n"
            "  exit 1\n"
            "fi\n"
            f'exec {real} "$@"\n'
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    @property
    def refusing(self) -> bool:
        return self.flag.exists()

    @refusing.setter
    def refusing(self, value: bool) -> None:
        if value:
            self.flag.touch()
        else:
            self.flag.unlink(missing_ok=True)


@pytest.fixture
def refusing_convert(tmp_path, settings):
    wrapper = RefusingConvert(tmp_path, settings.SHARESTORE_QEMU_IMG)
    settings.SHARESTORE_QEMU_IMG = str(wrapper.path)
    wrapper.refusing = True
    return wrapper


def test_error_cause_is_the_meaningful_line():
    assert (
        error_cause("qemu-img: Could not open '/p/x.qcow2': Operation not permitted\n")
        == "Operation not permitted"
    )
    assert error_cause("warning: x\nqemu-img: error while writing at byte 0: No space left on device") == (
        "No space left on device"
    )
    assert error_cause("qemu-img: Image is not in qcow2 format") == "Image is not in qcow2 format"
    assert error_cause("") == ""


def test_failed_full_clone_shows_its_cause_and_retry_makes_the_clone(
    admin_client, topology, disks, refusing_convert
):
    source = new_volume(topology, pool=disks, name="src")
    write_pattern(os.path.join(disks.path, source.image_name), 2 * 1024 * 1024, 1024 * 1024, 0x5A)
    with run_tasks(), transaction.atomic():
        snapshot = snapshot_create(actor="test", volume=source, name="s1")
    snapshot.refresh_from_db()
    with run_tasks(), transaction.atomic():
        clone = clones.clone_create(
            actor="test",
            source=source,
            snapshot=snapshot,
            tenant=source.tenant,
            pool=disks,
            name="copy",
            linked=False,
        )
    clone.refresh_from_db()
    failed = Operation.objects.get(target_uuid=clone.uuid)
    assert (clone.state, failed.state, failed.kind) == (
        EventState.ERROR,
        OperationState.FAILED,
        OperationKind.CLONE_FULL,
    )
    assert "convert exited 1" in failed.error_message

    listing = admin_client.get(
        reverse("admin:core_operation_changelist") + "?state__exact=failed"
    ).content.decode()
    assert "convert exited 1" in listing
    assert '<span class="ss-cause">cause: Operation not permitted</span>' in listing
    retry_url = reverse("admin:core_operation_retry") + f"?operation={failed.pk}"
    assert f'<a class="ss-retry" href="{retry_url}">retry…</a>' in listing

    # The preview says it can be retried; applying it (run inline) copies the snapshot for real.
    preview = admin_client.get(retry_url)
    assert preview.context["retryable"] == 1
    refusing_convert.refusing = False  # the filesystem lets us write again
    with run_tasks():
        response = admin_client.post(
            reverse("admin:core_operation_retry"), {"operation": failed.pk, "apply": "1"}
        )
    assert response.status_code == 302
    retried = Operation.objects.exclude(pk=failed.pk).get(target_uuid=clone.uuid)
    assert retried.kind == failed.kind and retried.volume_id == failed.volume_id
    assert {k: v for k, v in retried.params.items() if k not in ("retry_of", "used")} == {
        k: v for k, v in failed.params.items() if k != "used"
    }
    assert retried.params["retry_of"] == str(failed.uuid)
    assert retried.state == OperationState.SUCCEEDED, retried.error_message
    clone.refresh_from_db()
    assert clone.state == EventState.AVAILABLE
    driver = pool_driver(disks)
    assert identical(driver.path(clone.image_name), driver.path(snapshot.layer_name))
    assert AuditEvent.objects.filter(
        action="operation.retry", operation=failed, actor="console:admin"
    ).exists()
    # The failed row stays as history, and cannot be retried twice.
    failed.refresh_from_db()
    assert failed.state == OperationState.FAILED
    assert repair.operation_retry_check(failed) == "a newer operation exists for the same object"


def test_markers_columns_and_refusal_read_in_chinese(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    build_tree(volume, [("s1", None)], head_on="s1")
    Volume.objects.filter(pk=volume.pk).update(state=EventState.SNAPSHOTTING)
    running(volume, expired_seconds_ago=1)
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
    listing = admin_client.get(reverse("admin:core_operation_changelist"), **zh).content.decode()
    for words in ("租约已过期", "预计在", "吞吐量", "剩余时间", "租约"):
        assert words in listing, words
    preview = admin_client.get(reverse("admin:volumes_volume_reset_state", args=[volume.pk]), **zh)
    assert "暂不可行：操作" in preview.content.decode()
    page = admin_client.get(reverse("admin:volumes_volume_change", args=[volume.pk]), **zh).content.decode()
    assert "租约已过期" in page and "吞吐量" in page


def test_failed_restore_is_retried_from_the_same_backup(admin_client, topology, point, refusing_convert):
    scope = {
        "tenant": topology["tenant"],
        "cluster": topology["cluster"],
        "pool": pool_named(topology, "disks"),
    }
    refusing_convert.refusing = False
    source = make_volume(scope, "src")
    write(source, "write -P 0x6b 1M 2M")
    snapshot = snap(source, "s1")
    made = backup(source, snapshot, point)
    assert made.status == BackupStatus.COMPLETED

    refusing_convert.refusing = True
    restored = restore(made, scope, "restored")
    failed = Operation.objects.get(target_uuid=restored.uuid)
    assert (restored.state, failed.state, failed.kind) == (
        EventState.ERROR,
        OperationState.FAILED,
        OperationKind.BACKUP_RESTORE,
    )
    listing = admin_client.get(
        reverse("admin:core_operation_changelist") + "?state__exact=failed"
    ).content.decode()
    assert "cause: Operation not permitted" in listing
    assert repair.operation_retry_check(failed) == ""

    refusing_convert.refusing = False
    with run_tasks():
        response = admin_client.post(
            reverse("admin:core_operation_retry"), {"operation": failed.pk, "apply": "1"}
        )
    assert response.status_code == 302
    retried = Operation.objects.exclude(pk=failed.pk).get(target_uuid=restored.uuid)
    assert retried.state == OperationState.SUCCEEDED, retried.error_message
    assert retried.params["backup"] == failed.params["backup"] == str(made.uuid)
    restored.refresh_from_db()
    assert restored.state == EventState.AVAILABLE
    assert identical(head_path(restored), layer_path(snapshot))


def test_a_restore_whose_backup_is_gone_is_not_retried(topology, point, refusing_convert):
    scope = {
        "tenant": topology["tenant"],
        "cluster": topology["cluster"],
        "pool": pool_named(topology, "disks"),
    }
    refusing_convert.refusing = False
    source = make_volume(scope, "src")
    made = backup(source, snap(source, "s1"), point)
    refusing_convert.refusing = True
    restored = restore(made, scope, "restored")
    failed = Operation.objects.get(target_uuid=restored.uuid)
    Backup.objects.filter(pk=made.pk).update(status=BackupStatus.DELETING)
    assert repair.operation_retry_check(failed).startswith("its backup is ")
    with pytest.raises(errors.OperationNotRetryable):
        repair.operation_retry(actor="test", operation=failed)
    assert Operation.objects.filter(target_uuid=restored.uuid).count() == 1


def test_the_operation_page_shows_the_marker_the_rates_and_the_cause(admin_client, topology, disks):
    volume = new_volume(topology, pool=disks, name="v")
    stale = running(volume, expired_seconds_ago=2)
    Operation.objects.filter(pk=stale.pk).update(
        bytes_done=64 << 20,
        bytes_total=256 << 20,
        error_detail="qemu-img: Could not open 'x': Permission denied",
    )
    html = admin_client.get(reverse("admin:core_operation_change", args=[stale.pk])).content.decode()
    takeover = leases.expected_takeover_at(stale.lease_expires_at)
    assert "lease expired" in html and f"takeover expected by {localtime(takeover):%H:%M:%S}" in html
    assert "/s</span>" in html and "time left" in html.lower()
    assert "Permission denied" in html


def test_failed_backup_is_asked_for_again_with_the_same_parameters(
    admin_client, topology, point, refusing_convert
):
    scope = {
        "tenant": topology["tenant"],
        "cluster": topology["cluster"],
        "pool": pool_named(topology, "disks"),
    }
    refusing_convert.refusing = False
    source = make_volume(scope, "src")
    write(source, "write -P 0x3c 0 1M")
    snapshot = snap(source, "s1")
    refusing_convert.refusing = True
    failed_backup = backup(source, snapshot, point, name="nightly", protected=True)
    assert failed_backup.status == BackupStatus.FAILED
    failed = Operation.objects.get(target_uuid=failed_backup.uuid)
    listing = admin_client.get(
        reverse("admin:core_operation_changelist") + "?state__exact=failed"
    ).content.decode()
    assert "cause: Operation not permitted" in listing
    assert repair.operation_retry_check(failed) == ""

    refusing_convert.refusing = False
    with run_tasks():
        response = admin_client.post(
            reverse("admin:core_operation_retry"), {"operation": failed.pk, "apply": "1"}
        )
    assert response.status_code == 302
    retried = Operation.objects.get(params__retry_of=str(failed.uuid))
    assert retried.kind == OperationKind.BACKUP_CREATE and retried.state == OperationState.SUCCEEDED
    again = Backup.objects.get(uuid=retried.target_uuid)
    assert (again.status, again.name, again.snapshot_id, again.backup_point_id, again.protected) == (
        BackupStatus.COMPLETED,
        "nightly",
        snapshot.pk,
        point.pk,
        True,
    )
    assert identical(backup_file(again), layer_path(snapshot))
    # The failed one stays as history and is not retried twice.
    assert Backup.objects.get(pk=failed_backup.pk).status == BackupStatus.FAILED
    assert repair.operation_retry_check(failed) == "it was retried already"
