"""Snapshot requests racing each other and attach on a real database (PostgreSQL in CI), and the
snapshot lifecycle through a real `qcluster` worker process on the ORM broker."""

from __future__ import annotations

import os
import threading

import pytest
from django.db import connection, connections

from sharestore import errors
from tests.services.snapshot_support import REGION, content_mismatches, write_regions
from tests.services.test_real_worker import database_url, wait_for, worker  # noqa: F401 (fixture)
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Snapshot, Volume, VolumeAttachment
from volumes.services import snapshots as snaps
from volumes.services.volumes import pool_driver, volume_attach, volume_create

VM = "863b64eb-c8ed-4f25-9af9-9c96b28a7200"


def race(*calls):
    """Run the calls at the same moment, each in its own thread and connection; their outcomes."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def runner(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except errors.ServiceError as error:
            outcomes[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.fixture
def shared_db(transactional_db, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("threads need a database every connection shares (runs on PostgreSQL in CI)")
    from django_q.conf import Conf

    # No worker: only the requests' transactions race; their tasks stay queued.
    monkeypatch.setattr(Conf, "SYNC", False)


def available_volume(topology, name):
    volume = Volume.objects.create(
        name=name,
        tenant=topology["tenant"],
        namespace=topology["tenant"].namespace,
        cluster=topology["cluster"],
        pool=topology["pools"][0],
        volume_type="block",
        capacity=1 << 20,
        snap_cap=1 << 30,
        state=EventState.AVAILABLE,
    )
    pool_driver(volume.pool).create_volume(volume.image_name, 1 << 20)
    return volume


@pytest.mark.parametrize("attempt", range(3))
def test_two_snapshots_at_once_one_wins(shared_db, topology, attempt):
    volume = available_volume(topology, f"race-{attempt}")
    outcomes = race(
        lambda: snaps.snapshot_create(actor="a", volume=volume, name="one"),
        lambda: snaps.snapshot_create(actor="b", volume=volume, name="two"),
    )
    won = [o for o in outcomes if isinstance(o, Snapshot)]
    lost = [o for o in outcomes if isinstance(o, errors.ServiceError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], errors.StateConflict)
    assert Snapshot.objects.filter(volume=volume).count() == 1
    assert Volume.objects.get(pk=volume.pk).state == EventState.SNAPSHOTTING


@pytest.mark.parametrize("attempt", range(3))
def test_attach_and_snapshot_at_once_never_both(shared_db, topology, attempt):
    volume = available_volume(topology, f"attach-race-{attempt}")
    outcomes = race(
        lambda: snaps.snapshot_create(actor="a", volume=volume, name="one"),
        lambda: volume_attach(actor="b", volume=volume, vm_uuid=VM),
    )
    snapshot_won = isinstance(outcomes[0], Snapshot)
    attach_won = isinstance(outcomes[1], Volume)
    assert snapshot_won != attach_won, outcomes
    assert Snapshot.objects.filter(volume=volume).exists() == snapshot_won
    assert VolumeAttachment.objects.filter(volume=volume).exists() == attach_won
    if attach_won:
        assert isinstance(outcomes[0], errors.VolumeAttached)
    else:
        assert isinstance(outcomes[1], errors.StateConflict)


def test_snapshot_lifecycle_through_a_real_worker(worker, topology):  # noqa: F811
    volume = volume_create(
        actor="test",
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        pool=topology["pools"][0],
        name="worker-snap",
        volume_type="block",
        capacity=4 * REGION,
        snap_capacity=1 << 30,
    )
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE)
    volume.refresh_from_db()
    driver = pool_driver(volume.pool)
    head = driver.path(volume.image_name)
    write_regions(head, {0: 1})
    snapshot = snaps.snapshot_create(actor="test", volume=volume, name="s1")
    assert wait_for(lambda: Snapshot.objects.get(pk=snapshot.pk).status == SnapshotStatus.AVAILABLE)
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE)
    write_regions(head, {0: 2, 1: 2})
    snaps.snapshot_rollback(actor="test", volume=Volume.objects.get(pk=volume.pk), snapshot=snapshot)
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE)
    assert content_mismatches({head: [1, 0, 0, 0], driver.path(snapshot.layer_name): [1, 0, 0, 0]}) == []
    snaps.snapshot_delete(actor="test", volume=Volume.objects.get(pk=volume.pk), snapshot=snapshot)
    assert wait_for(lambda: not Snapshot.objects.filter(pk=snapshot.pk).exists())
    assert wait_for(lambda: Volume.objects.get(pk=volume.pk).state == EventState.AVAILABLE)
    assert content_mismatches({head: [1, 0, 0, 0]}) == []
    assert driver.backing_chain(volume.image_name) == [volume.image_name]
    assert not os.path.exists(driver.path(snapshot.layer_name))
