"""Space reservations (sharestore.core.services.space): every copy reserves what it will write where it
writes, when it is accepted, and releases it by ending; a copy that does not fit beside the reservations
is refused at once, and two concurrent copies that fit only one at a time give one success and one
clean refusal. The pool's free space is pinned (the filesystem's statvfs); every copy is real."""

from __future__ import annotations

import pytest
from django.test import TestCase
from django.urls import reverse

from backups.services.create import backup_add
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.console import human_bytes
from sharestore.core.models import Operation
from sharestore.core.services.space import reserved_bytes
from tests.helpers import qemu_img, qemu_io
from tests.services.test_backups import backup, make_volume, point, restore, scope, snap, write  # noqa: F401
from tests.services.test_snapshot_concurrency import race, shared_db  # noqa: F401
from volumes.choices import EventState
from volumes.drivers.base import PoolSpace
from volumes.drivers.qcow2 import Qcow2DirectoryDriver
from volumes.models import Volume
from volumes.services.space import pool_reserved
from volumes.services.volumes import volume_create

MiB = 1 << 20


def pin_free(monkeypatch, free: int) -> None:
    """The pools' filesystem reports `free` bytes."""
    monkeypatch.setattr(Qcow2DirectoryDriver, "space", lambda self: PoolSpace(total=1 << 40, free=free))


@pytest.fixture
def source(import_root):
    path = import_root / "data.raw"
    qemu_img("create", "-q", "-f", "raw", str(path), str(32 * MiB))
    qemu_io(path, "raw", f"write -P 0x5a 0 {8 * MiB}")
    return path


def queue_import(scope, source, name, *, execute=False):  # noqa: F811
    with TestCase.captureOnCommitCallbacks(execute=execute) as callbacks:
        volume = volume_create(
            actor="test", name=name, volume_type="block", snap_capacity=0, backing_file=str(source), **scope
        )
    return volume, Operation.objects.get(volume=volume), callbacks


def test_a_queued_copy_holds_its_reservation_until_it_ends(scope, source, monkeypatch):  # noqa: F811
    pool = scope["pool"]
    first, operation, callbacks = queue_import(scope, source, "first")
    needed = operation.reserved_bytes
    assert operation.reserved_on == f"pool:{pool.uuid}" and 8 * MiB <= needed < 32 * MiB
    assert pool_reserved(pool) == needed
    # Half written: the filesystem already shows that half, only the rest stays reserved.
    Operation.objects.filter(pk=operation.pk).update(bytes_done=operation.bytes_total // 2)
    assert pool_reserved(pool) == needed - needed // 2
    Operation.objects.filter(pk=operation.pk).update(bytes_done=0)

    pin_free(monkeypatch, needed + needed // 2)
    with pytest.raises(errors.PoolSpaceShort) as refused:
        queue_import(scope, source, "second")
    assert refused.value.params["reserved"] == needed and refused.value.params["needed"] == needed
    assert not Volume.objects.filter(name="second").exists()
    assert Operation.objects.count() == 1

    # The first copy fails in its task (its source is gone): the reservation goes with it.
    source.rename(source.with_name("moved.raw"))
    for callback in callbacks:
        callback()
    assert Operation.objects.get(pk=operation.pk).state == OperationState.FAILED
    assert Volume.objects.get(pk=first.pk).state == EventState.ERROR
    assert pool_reserved(pool) == 0
    source.with_name("moved.raw").rename(source)
    second, _, _ = queue_import(scope, source, "second", execute=True)
    second.refresh_from_db()
    assert second.state == EventState.AVAILABLE
    assert pool_reserved(pool) == 0


def test_restore_is_refused_at_once_when_the_pool_cannot_hold_it(scope, point, monkeypatch):  # noqa: F811
    volume = make_volume(scope)
    write(volume, f"write -P 7 0 {8 * MiB}")
    done = backup(volume, snap(volume, "s1"), point)
    needed = BackupStore(point.path).restore_needs(done.file_name, done.volume_capacity)
    assert 8 * MiB <= needed < done.volume_capacity
    operations = Operation.objects.count()

    pin_free(monkeypatch, needed - 1)
    with pytest.raises(errors.PoolSpaceShort):
        restore(done, scope, "restored")
    assert not Volume.objects.filter(name="restored").exists()
    assert Operation.objects.count() == operations

    pin_free(monkeypatch, needed)
    restored = restore(done, scope, "restored")
    assert restored.state == EventState.AVAILABLE
    operation = Operation.objects.get(kind=OperationKind.BACKUP_RESTORE)
    assert (operation.reserved_on, operation.reserved_bytes) == (f"pool:{scope['pool'].uuid}", needed)
    assert pool_reserved(scope["pool"]) == 0


def test_a_backup_in_progress_holds_its_reservation_on_the_backup_point(scope, point, monkeypatch):  # noqa: F811
    volumes = [make_volume(scope, name=name) for name in ("a", "b")]
    for volume in volumes:
        write(volume, f"write -P 3 0 {4 * MiB}")
    snapshots = [snap(volume, "s") for volume in volumes]
    with TestCase.captureOnCommitCallbacks(execute=False):
        first = backup_add(actor="t", volume=volumes[0], snapshot=snapshots[0], backup_point=point, name="a")
    operation = Operation.objects.get(target_uuid=first.uuid)
    assert operation.reserved_on == f"backup-point:{point.uuid}" and operation.reserved_bytes == first.size
    assert reserved_bytes(operation.reserved_on) == first.size
    monkeypatch.setattr(BackupStore, "free_bytes", lambda self: first.size + first.size // 2)
    with pytest.raises(errors.BackupPointFull, match="reserved by backups in progress"):
        backup_add(actor="t", volume=volumes[1], snapshot=snapshots[1], backup_point=point, name="b")
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.CANCELLED)
    assert reserved_bytes(operation.reserved_on) == 0
    with TestCase.captureOnCommitCallbacks(execute=False):
        backup_add(actor="t", volume=volumes[1], snapshot=snapshots[1], backup_point=point, name="b")


@pytest.mark.parametrize("attempt", range(2))
def test_two_concurrent_copies_that_fit_only_one_at_a_time(shared_db, scope, source, monkeypatch, attempt):  # noqa: F811
    # What one import needs, measured the way the request measures it.
    needs = Qcow2DirectoryDriver(scope["pool"].path).inspect_import(str(source), [str(source.parent)]).needs
    pin_free(monkeypatch, needs + needs // 2)

    def copy(name):
        return lambda: volume_create(
            actor=name, name=name, volume_type="block", snap_capacity=0, backing_file=str(source), **scope
        )

    outcomes = race(copy(f"one-{attempt}"), copy(f"two-{attempt}"))
    won = [o for o in outcomes if isinstance(o, Volume)]
    lost = [o for o in outcomes if isinstance(o, errors.ServiceError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], errors.PoolSpaceShort) and lost[0].params["reserved"] == needs
    assert list(Volume.objects.values_list("name", flat=True)) == [won[0].name]
    assert Operation.objects.get().reserved_bytes == needs
    assert pool_reserved(scope["pool"]) == needs


def test_the_pool_page_shows_what_copies_reserve(admin_client, scope, source):  # noqa: F811
    _, operation, _ = queue_import(scope, source, "queued")
    html = admin_client.get(reverse("admin:volumes_pool_change", args=[scope["pool"].pk])).content.decode()
    assert "reserved by copies in progress / filesystem free" in html
    assert human_bytes(operation.reserved_bytes) in html
