"""Tenant quotas: each quota refuses at its limit with its own scode and a message saying which quota
and by how much; what is deleted stops counting; two concurrent requests that would each fit alone
cannot both pass (PostgreSQL, one connection per thread)."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from sharestore import errors
from sharestore.core.models import AuditEvent
from sharestore.core.services.tokens import token_create
from tests.conftest import Api
from tests.contract import EXAMPLES
from tests.helpers import POOL_BBB, TENANT, assert_error, run_tasks, scoped, success_envelope
from tests.services.test_backups import (  # noqa: F401 (fixtures)
    VOLUME_BYTES,
    MiB,
    backup,
    make_volume,
    point,
    restore,
    scope,
    snap,
)
from tests.services.test_snapshot_concurrency import available_volume, race, shared_db  # noqa: F401
from volumes.models import Pool, Snapshot, TenantQuota, Volume
from volumes.quota_selectors import tenant_quota
from volumes.services.clones import clone_create
from volumes.services.quotas import quota_set
from volumes.services.snapshots import snapshot_create
from volumes.services.volumes import volume_create, volume_delete


def create(scope, name, capacity=VOLUME_BYTES, pool=None):
    return volume_create(
        actor="test",
        name=name,
        volume_type="block",
        capacity=capacity,
        snap_capacity=1 << 40,
        **{**scope, **({"pool": pool} if pool else {})},
    )


def test_volume_count_quota_refuses_at_the_limit(scope):
    quota_set(actor="test", tenant=scope["tenant"], volumes=2)
    make_volume(scope, "a")
    make_volume(scope, "b")
    with pytest.raises(errors.VolumeQuotaExceeded) as refused:
        create(scope, "c")
    error = refused.value
    assert error.scode == 4650 and error.http_status == 409
    assert error.render_message() == (
        f"tenant {scope['tenant'].uuid} is over its volume count quota: limit 2, 2 in use, "
        "the request needs 1 more (1 over the limit)"
    )
    assert "卷数量配额" in error.render_message_cn() and "超出 1" in error.render_message_cn()
    assert not Volume.objects.filter(name="c").exists()


def test_bytes_quota_says_by_how_much(scope):
    quota_set(actor="test", tenant=scope["tenant"], bytes=VOLUME_BYTES + 16 * MiB)
    make_volume(scope, "a")
    with pytest.raises(errors.CapacityQuotaExceeded) as refused:
        create(scope, "b")
    assert refused.value.scode == 4651
    assert refused.value.params["over"] == 16 * MiB
    assert refused.value.params["used"] == VOLUME_BYTES
    make_volume(scope, "small", capacity=16 * MiB)  # exactly at the limit: accepted
    assert tenant_quota(tenant=scope["tenant"])["bytes"] == {"limit": 48 * MiB, "used": 48 * MiB}


def test_a_deleted_volume_stops_counting_and_null_is_unlimited(scope):
    quota_set(actor="test", tenant=scope["tenant"], volumes=1)
    volume = make_volume(scope, "a")
    with pytest.raises(errors.VolumeQuotaExceeded):
        create(scope, "b")
    with run_tasks():
        volume_delete(actor="test", volume=volume)
    make_volume(scope, "b")
    quota_set(actor="test", tenant=scope["tenant"], volumes=None)
    make_volume(scope, "c")
    assert tenant_quota(tenant=scope["tenant"])["volumes"] == {"limit": None, "used": 2}


def test_clones_and_restores_count_as_new_volumes(scope, point):  # noqa: F811
    source = make_volume(scope, "src")
    s1 = snap(source, "s1")
    b1 = backup(source, s1, point)
    quota_set(actor="test", tenant=scope["tenant"], volumes=1)
    for linked in (True, False):
        with pytest.raises(errors.VolumeQuotaExceeded):
            clone_create(
                actor="test",
                source=source,
                snapshot=s1,
                tenant=scope["tenant"],
                pool=scope["pool"],
                name=f"clone-{linked}",
                linked=linked,
            )
    quota_set(actor="test", tenant=scope["tenant"], volumes=None, bytes=VOLUME_BYTES + MiB)
    with pytest.raises(errors.CapacityQuotaExceeded) as refused:
        restore(b1, scope, "restored")
    assert refused.value.params["over"] == VOLUME_BYTES - MiB
    assert Volume.objects.filter(tenant=scope["tenant"]).count() == 1


def test_snapshot_quota_refuses_at_the_limit(scope):
    quota_set(actor="test", tenant=scope["tenant"], snapshots=1)
    volume = make_volume(scope, "a")
    snap(volume, "s1")
    with pytest.raises(errors.SnapshotQuotaExceeded) as refused:
        snapshot_create(actor="test", volume=volume, name="s2")
    assert refused.value.scode == 4652 and "snapshot count quota: limit 1" in refused.value.render_message()
    assert Snapshot.objects.filter(volume=volume).count() == 1


def test_backup_quota_refuses_at_the_limit(scope, point):  # noqa: F811
    quota_set(actor="test", tenant=scope["tenant"], backups=1)
    volume = make_volume(scope, "a")
    s1 = snap(volume, "s1")
    backup(volume, s1, point, name="b1")
    with pytest.raises(errors.BackupQuotaExceeded) as refused:
        backup(volume, s1, point, name="b2")
    assert refused.value.scode == 4653 and refused.value.params["over"] == 1
    assert tenant_quota(tenant=scope["tenant"])["backups"] == {"limit": 1, "used": 1}


def test_quota_set_keeps_unnamed_limits_and_validates(scope):
    quota_set(actor="test", tenant=scope["tenant"], volumes=3, snapshots=4)
    quota_set(actor="test", tenant=scope["tenant"], snapshots=5)
    quota = TenantQuota.objects.get(tenant=scope["tenant"])
    assert (quota.max_volumes, quota.max_snapshots, quota.max_bytes, quota.max_backups) == (3, 5, None, None)
    for bad in ({"volumes": -1}, {"bytes": "1G"}, {"volumes": True}, {"disks": 1}):
        with pytest.raises(errors.InvalidParameter):
            quota_set(actor="test", tenant=scope["tenant"], **bad)


# -- concurrency (PostgreSQL) ----------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(3))
def test_two_creates_that_each_fit_alone_one_is_refused(shared_db, topology, scope, attempt):  # noqa: F811
    quota_set(actor="test", tenant=scope["tenant"], bytes=VOLUME_BYTES + VOLUME_BYTES // 2)
    # In two pools: only the quota row, not a pool row, serialises them.
    other = Pool.objects.get(uuid=POOL_BBB)
    outcomes = race(
        lambda: create(scope, f"one-{attempt}"), lambda: create(scope, f"two-{attempt}", pool=other)
    )
    won = [o for o in outcomes if isinstance(o, Volume)]
    lost = [o for o in outcomes if isinstance(o, errors.ServiceError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], errors.CapacityQuotaExceeded)
    assert lost[0].params["used"] == VOLUME_BYTES
    assert Volume.objects.filter(tenant=scope["tenant"]).count() == 1


@pytest.mark.parametrize("attempt", range(3))
def test_two_snapshots_of_different_volumes_at_the_last_slot(shared_db, topology, scope, attempt):  # noqa: F811
    first, second = available_volume(topology, f"q1-{attempt}"), available_volume(topology, f"q2-{attempt}")
    quota_set(actor="test", tenant=scope["tenant"], snapshots=1)
    outcomes = race(
        lambda: snapshot_create(actor="a", volume=first, name="s"),
        lambda: snapshot_create(actor="b", volume=second, name="s"),
    )
    won = [o for o in outcomes if isinstance(o, Snapshot)]
    lost = [o for o in outcomes if isinstance(o, errors.ServiceError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], errors.SnapshotQuotaExceeded)
    assert Snapshot.objects.filter(volume__tenant=scope["tenant"]).count() == 1


# -- API, command and console ---------------------------------------------------------------------


def quota_answer(volumes, bytes_, snapshots, backups) -> dict:
    return {
        "quota": {
            "Volumes": {"Limit": volumes[0], "Used": volumes[1]},
            "Bytes": {"Limit": bytes_[0], "Used": bytes_[1]},
            "Snapshots": {"Limit": snapshots[0], "Used": snapshots[1]},
            "Backups": {"Limit": backups[0], "Used": backups[1]},
        },
        "tenant": TENANT,
        "tenant_name": "zhangyiru",
    }


def test_quota_api_sets_and_reads_limits_and_usage(api, scope):
    make_volume(scope, "a")
    status, body = api.post("quota/set", scoped(volumes=3, bytes=1 << 40, snapshots=None))
    assert (status, body) == (
        200,
        success_envelope(quota_answer((3, 1), (1 << 40, VOLUME_BYTES), (None, 0), (None, 0))),
    )
    status, body = api.post("quota/set", scoped(backups=0))
    assert body["data"]["quota"]["Volumes"] == {"Limit": 3, "Used": 1}
    assert body["data"]["quota"]["Backups"] == {"Limit": 0, "Used": 0}
    status, body = api.post("quota/get", scoped())
    assert (status, body) == (
        200,
        success_envelope(quota_answer((3, 1), (1 << 40, VOLUME_BYTES), (None, 0), (0, 0))),
    )
    # A refusal answers its scode with both messages.
    api.post("quota/set", scoped(volumes=1))
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name="over", capacity=VOLUME_BYTES)
    status, answer = api.post("create", body)
    assert_error(status, answer, 409, 4650)
    assert "volume count quota: limit 1, 1 in use" in answer["message"]
    assert "卷数量配额" in answer["message_cn"]


def test_quota_api_refuses_bad_values_and_tenant_tokens(api, topology):
    for bad in ({"volumes": -1}, {"bytes": "2T"}, {"snapshots": 1.5}, {"backups": True}):
        status, body = api.post("quota/set", scoped(**bad))
        assert_error(status, body, 400, 1001)
    assert not TenantQuota.objects.exists()
    _, key = token_create(name="tenant-token", tenant=topology["tenant"])
    tenant_api = Api(APIClient(), api.capture)
    tenant_api.client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    status, body = tenant_api.post("quota/set", scoped(volumes=100))
    assert_error(status, body, 403, 2003)
    status, body = tenant_api.post("quota/get", scoped())
    assert (status, body["data"]["quota"]["Volumes"]) == (200, {"Limit": None, "Used": 0})
    assert not TenantQuota.objects.exists()


def test_set_quota_command(scope):
    make_volume(scope, "a")
    out = StringIO()
    call_command(
        "set_quota", "--tenant", TENANT, "--volumes", "5", "--bytes", "2T", "--backups", "none", stdout=out
    )
    quota = TenantQuota.objects.get(tenant=scope["tenant"])
    assert (quota.max_volumes, quota.max_bytes, quota.max_snapshots, quota.max_backups) == (
        5,
        2 << 40,
        None,
        None,
    )
    lines = out.getvalue().split("\n")
    assert lines[0].split() == ["volumes", "1", "used", "of", "5"]
    assert lines[1].split() == ["bytes", str(VOLUME_BYTES), "used", "of", str(2 << 40)]
    assert lines[3].split() == ["backups", "0", "used", "of", "unlimited"]
    with pytest.raises(CommandError) as bad:
        call_command("set_quota", "--tenant", TENANT, "--volumes", "many")
    assert bad.value.returncode == 2
    assert AuditEvent.objects.filter(action="tenant.quota", object_uuid=scope["tenant"].uuid).count() == 1


def test_console_lists_usage_and_edits_through_the_service(scope, client, django_assert_max_num_queries):
    admin_user = get_user_model().objects.create_superuser("root", password="root-pw")
    client.force_login(admin_user)
    make_volume(scope, "a")
    response = client.post(
        reverse("admin:volumes_tenantquota_add"),
        {
            "tenant": scope["tenant"].pk,
            "max_volumes": "2",
            "max_bytes": "",
            "max_snapshots": "",
            "max_backups": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    quota = TenantQuota.objects.get(tenant=scope["tenant"])
    assert (quota.max_volumes, quota.max_bytes, quota.max_backups) == (2, None, 0)
    assert AuditEvent.objects.filter(action="tenant.quota", actor="console:root").exists()
    with django_assert_max_num_queries(12):
        page = client.get(reverse("admin:volumes_tenantquota_changelist")).content.decode()
    assert "1 / 2" in page and "32.0 MiB / unlimited" in page and "0 / 0" in page
