"""A call that would rewrite snapshot layers a backup or a clone reads (docs/api.md, "Back-to-back
calls"): a long copy is named at once (4105, or 4005 for a volume delete) with its operation's UUID,
kind in words and progress; a short step (a linked clone being linked) is waited for, then named
(4010) if it outlasts the wait. Real qcow2 images; requests really commit (transactional tests)."""

from __future__ import annotations

import pytest

from backups.services.points import backup_point_create
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from tests.api.test_snapshot_api import example, new_volume
from tests.api.test_waits import answered_then_run, no_dispatch, run_queued  # noqa: F401
from tests.conftest import pattern_matches
from tests.contract import EXAMPLES
from tests.helpers import POOL_DISKS, assert_error, qemu_io, scoped
from volumes.choices import EventState
from volumes.models import Volume

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1 << 20
BACKUP_POINT = EXAMPLES["backup/add"]["request"]["backup_point_uuid"]


@pytest.fixture
def volume(api, no_dispatch, settings, topology, data_dir):  # noqa: F811
    """A volume with snapshots a (0xaa in its first MiB) and b (0xbb over it), a backup point beside."""
    settings.SHARESTORE_SHORT_STEP_WAIT_SECONDS = 0
    directory = data_dir / "backup" / f"bp-{BACKUP_POINT}"
    directory.mkdir(parents=True)
    backup_point_create(
        name="bp", cluster=topology["cluster"], path=str(directory), capacity=1 << 40, uuid=BACKUP_POINT
    )
    volume = answered_then_run(new_volume(api))
    head = next(iter(volume["AccessPath"].values()))
    snapshots = {}
    for name, byte in (("a", "0xaa"), ("b", "0xbb")):
        qemu_io(head, "qcow2", f"write -P {byte} 0 1M")
        _, body = answered_then_run(
            api.post(
                "snapshot/create", example("snapshot/create", volume_uuid=volume["UUID"], snapshot_name=name)
            )
        )
        snapshots[name] = body["data"]["snapshot"]["UUID"]
    qemu_io(head, "qcow2", "write -P 0xcc 0 1M")
    return {**volume, "head": head, "snapshots": snapshots}


def rollback(api, volume, name):
    return api.post(
        "snapshot/rollback",
        example("snapshot/rollback", volume_uuid=volume["UUID"], snapshot_uuid=volume["snapshots"][name]),
    )


def started(api, endpoint: str, body: dict, kind: str, progress: float) -> Operation:
    """Accept a long copy; its operation is left queued, `progress` percent done as if it copied."""
    status, answer = api.post(endpoint, body)
    assert (status, answer["scode"]) == (200, 0), answer
    operation = Operation.objects.get(kind=kind, state=OperationState.QUEUED)
    Operation.objects.filter(pk=operation.pk).update(progress=progress)
    return operation


def backup_of(volume, name):
    return example(
        "backup/add",
        volume_uuid=volume["UUID"],
        snapshot_uuid=volume["snapshots"][name],
        backup_point_uuid=BACKUP_POINT,
    )


def clone_of(volume, name, *, linked: bool, into: str):
    return example(
        "clone",
        volume_uuid=volume["UUID"],
        volume_name=volume["Name"],
        clone_dst_pool_uuid=POOL_DISKS,
        clone_dst_vol_name=into,
        snapshot_uuid=volume["snapshots"][name],
        is_link=linked,
    )


def test_a_running_backup_is_named_by_every_rewrite_of_the_layers(api, volume):
    vol, snapshots = volume["UUID"], volume["snapshots"]
    backup = started(api, "backup/add", backup_of(volume, "a"), OperationKind.BACKUP_CREATE, 42.5)
    reader = (
        f"backup {backup.target_uuid} of snapshot 'a' (create backup, operation {backup.uuid}, 42.5% done)"
    )
    reader_cn = f"快照 'a' 的备份 {backup.target_uuid}（创建备份，操作 {backup.uuid}，已完成 42.5%）"

    status, body = rollback(api, volume, "b")
    assert_error(status, body, 409, 4105)
    assert body["message"] == (
        f"volume {vol}: rolling back would rewrite snapshot layers that are being read, "
        f"retry when these finish: {reader}"
    )
    assert body["message_cn"] == f"卷 {vol}：回滚会改写正被读取的快照层，请在以下读取完成后重试：{reader_cn}"

    status, body = api.post(
        "snapshot/delete",
        example("snapshot/delete", volume_uuid=vol, snapshot_uuid=snapshots["b"], snapshot_name="b"),
    )
    assert_error(status, body, 409, 4105)
    assert body["message"].endswith(f"retry when these finish: {reader}")
    assert body["message"].startswith(f"volume {vol}: deleting this snapshot would rewrite")

    status, body = api.post(
        "snapshot/delete",
        example("snapshot/delete", volume_uuid=vol, snapshot_uuid=snapshots["a"], snapshot_name="a"),
    )
    assert_error(status, body, 409, 4103)
    assert body["message"] == (
        f"snapshot {snapshots['a']} (a) is read by running {reader}: "
        "it cannot be deleted while they depend on it"
    )
    assert (
        body["message_cn"] == f"快照 {snapshots['a']}（a）正被 运行中的{reader_cn} 读取，存在依赖时无法删除"
    )

    status, body = api.post("delete", example("delete", volume_uuid=vol, volume_name=volume["Name"]))
    assert_error(status, body, 409, 4005)
    assert body["message"] == f"volume {vol} has dependents that read its snapshots: {reader}"
    assert body["message_cn"] == f"卷 {vol} 的快照仍被依赖：{reader_cn}"
    assert Volume.objects.get(uuid=vol).state == EventState.AVAILABLE

    run_queued()  # the backup, on real storage
    assert Operation.objects.get(pk=backup.pk).state == OperationState.SUCCEEDED
    status, body = rollback(api, volume, "b")
    assert (status, body["scode"]) == (200, 0), body
    run_queued()
    assert pattern_matches(volume["head"], "qcow2", 0, MiB, 0xBB)


def test_a_full_clone_being_copied_is_named_with_its_progress(api, volume):
    copy = started(
        api, "clone", clone_of(volume, "a", linked=False, into="full"), OperationKind.CLONE_FULL, 10.0
    )
    status, body = rollback(api, volume, "a")
    assert_error(status, body, 409, 4105)
    assert body["message"].endswith(
        f"clone {copy.target_uuid} being copied (full clone, operation {copy.uuid}, 10.0% done)"
    )
    assert body["message_cn"].endswith(
        f"正在复制的克隆 {copy.target_uuid}（完整克隆，操作 {copy.uuid}，已完成 10.0%）"
    )
    assert "clone.full" not in body["message"] + body["message_cn"]

    run_queued()  # the copy, then the rollback it held back
    _, body = api.post("get", scoped(volume_uuid=str(copy.target_uuid)))
    assert body["data"]["volume"]["EventState"] == EventState.AVAILABLE
    assert pattern_matches(next(iter(body["data"]["volume"]["AccessPath"].values())), "qcow2", 0, MiB, 0xAA)
    status, body = rollback(api, volume, "a")
    assert (status, body["scode"]) == (200, 0), body
    run_queued()
    assert pattern_matches(volume["head"], "qcow2", 0, MiB, 0xAA)


def test_a_linked_clone_being_linked_is_waited_for_then_named_as_busy(api, volume, settings):
    vol = volume["UUID"]
    settings.SHARESTORE_BUSY_WAIT_SECONDS = 0.2  # no worker runs it: the wait expires
    link = started(
        api, "clone", clone_of(volume, "a", linked=True, into="linked"), OperationKind.CLONE_LINKED, 0
    )
    status, body = rollback(api, volume, "b")
    assert_error(status, body, 409, 4010)
    assert body["message"] == (
        f"volume {vol} is busy: linked clone (operation {link.uuid}) is 0.0% done; "
        "cannot roll back now, retry when it finishes"
    )
    run_queued()  # the link
    status, body = rollback(api, volume, "b")
    assert (status, body["scode"]) == (200, 0), body


def test_a_long_reader_beside_a_short_one_is_answered_at_once_naming_both(api, volume, settings):
    """Waiting for the link would not help while the backup reads: 4105 names both, without the
    4010 a wait for the link alone would end with."""
    settings.SHARESTORE_BUSY_WAIT_SECONDS = 0.2
    link = started(
        api, "clone", clone_of(volume, "a", linked=True, into="linked"), OperationKind.CLONE_LINKED, 0
    )
    backup = started(api, "backup/add", backup_of(volume, "b"), OperationKind.BACKUP_CREATE, 5.0)
    status, body = rollback(api, volume, "a")
    assert_error(status, body, 409, 4105)
    assert f"(create backup, operation {backup.uuid}, 5.0% done)" in body["message"]
    assert f"(linked clone, operation {link.uuid}, 0.0% done)" in body["message"]
    assert f"（链接克隆，操作 {link.uuid}，已完成 0.0%）" in body["message_cn"]
    assert Operation.objects.get(pk=link.pk).state == OperationState.QUEUED
