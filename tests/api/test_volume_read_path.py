"""The read path of `list` and `get` (issue 12): a pinned number of queries per request, the per-process
cache of tokens, scopes and pools, and its bound for a token revoked elsewhere."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sharestore.core.models import ApiToken
from sharestore.core.services import readcache
from sharestore.core.services.tokens import token_create
from tests.api.test_volume_read_golden import C1, EPOCH, P1, T1, seed, u
from volumes.choices import EventState
from volumes.models import Cluster, Pool, Tenant, Volume, Zone


def post(client, path, body):
    response = client.generic(
        "POST", f"/v1/volume/share/{path}", json.dumps(body), content_type="application/json"
    )
    return response.status_code, json.loads(response.content)


@pytest.fixture
def client(db):
    seed()
    _, key = token_create(name="read-path")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    client.key = key
    return client


LIST = {"tenant": T1, "cluster_uuid": C1}
GET = {"tenant": T1, "cluster_uuid": C1, "volume_uuid": u(7, 2)}


def expected(pg: int, other: int) -> int:
    from django.db import connection

    return pg if connection.vendor == "postgresql" else other


def test_a_warm_list_is_one_statement_on_postgresql(client, django_assert_num_queries):
    post(client, "list", {**LIST, "page_size": 1})  # token, last use, scope and pools are cached now
    # A full page. PostgreSQL: page ids over the live index, rows, attachments, clones and count in one
    # statement. Elsewhere: the page (ids in a sub-select), the count, attachments, live clones.
    for size in (1, 5, 10):
        with django_assert_num_queries(expected(1, 4)):
            status, body = post(client, "list", {**LIST, "page_size": size})
        assert status == 200 and len(body["data"]["list"]) == size
    # The last page (here: page_size 100, one page); elsewhere a page neither empty nor full tells
    # the total itself (no count).
    for page in ({"page_size": 7, "page_num": 3}, {"page_size": 100}):
        with django_assert_num_queries(expected(1, 3)):
            status, body = post(client, "list", {**LIST, **page})
        assert len(body["data"]["list"]) in (5, 19) and body["data"]["TotalCount"] == 19
    # Filters add no query.
    with django_assert_num_queries(expected(1, 4)):
        post(client, "list", {**LIST, "filter_pool_uuid": P1, "filter_name": "vol", "page_size": 2})
    # An empty page: the page, then the count.
    with django_assert_num_queries(2):
        status, body = post(client, "list", {**LIST, "page_size": 10, "page_num": 5})
    assert body["data"]["list"] == [] and body["data"]["TotalCount"] == 19


def test_a_warm_get_is_one_statement_on_postgresql(client, django_assert_num_queries):
    post(client, "get", GET)
    # Elsewhere: the row (Parent, ParentSnapshot joined), attachments, live clones.
    with django_assert_num_queries(expected(1, 3)):
        status, body = post(client, "get", GET)
    assert status == 200 and len(body["data"]["volume"]["Attr"]["Attachments"]) == 3
    with django_assert_num_queries(1):
        status, _ = post(client, "get", {**GET, "volume_uuid": u(7, 999)})
    assert status == 404


def test_a_cold_request_reads_the_token_scope_and_pools_once(client, django_assert_max_num_queries):
    # token, last-use stamp, cluster, tenant, mounts, pools, then the four of a warm list
    with django_assert_max_num_queries(10):
        post(client, "list", LIST)


def test_a_token_revoked_elsewhere_is_refused_within_the_bound(client, monkeypatch, settings):
    settings.SHARESTORE_READ_CACHE_SECONDS = 5
    now = [1000.0]
    monkeypatch.setattr(readcache, "clock", lambda: now[0])
    assert post(client, "get", GET)[0] == 200
    # Revoked by another process (no signal reaches this one): served from the cache for at most 5 s...
    ApiToken.objects.filter(name="read-path").update(revoked_at=timezone.now())
    now[0] += 4.9
    assert post(client, "get", GET)[0] == 200
    # ...then refused.
    now[0] += 0.2
    status, body = post(client, "get", GET)
    assert (status, body["scode"]) == (401, 2002)


def test_a_token_revoked_in_this_process_is_refused_at_once(client):
    assert post(client, "list", LIST)[0] == 200
    token = ApiToken.objects.get(name="read-path")
    token.revoked_at = timezone.now()
    token.save()
    assert post(client, "list", LIST)[0] == 401


def test_a_cached_token_is_refused_once_it_expires(client, monkeypatch):
    token = ApiToken.objects.get(name="read-path")
    expires = timezone.now() + dt.timedelta(hours=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=expires)
    assert post(client, "list", LIST)[0] == 200  # cached with its expiry
    from sharestore.core.services import tokens

    monkeypatch.setattr(tokens.timezone, "now", lambda: expires + dt.timedelta(seconds=1))
    assert post(client, "list", LIST)[0] == 401


def test_no_cache_when_the_bound_is_zero(client, settings, django_assert_num_queries):
    settings.SHARESTORE_READ_CACHE_SECONDS = 0
    post(client, "get", GET)
    ApiToken.objects.filter(name="read-path").update(revoked_at=timezone.now())
    assert post(client, "get", GET)[0] == 401


def test_a_pool_and_volume_created_elsewhere_are_listed_at_once(client):
    post(client, "list", LIST)  # the pool map is cached now
    # Rows written without signals, as another process's would be seen here.
    pool = Pool.objects.bulk_create(
        [
            Pool(
                uuid=u(3, 50),
                name="new",
                cluster=Cluster.objects.get(uuid=C1),
                zone=Zone.objects.get(uuid=u(4, 1)),
                path="/srv/new",
                capacity=1,
            )
        ]
    )[0]
    tenant = Tenant.objects.get(uuid=T1)
    Volume.objects.bulk_create(
        [
            Volume(
                uuid=u(7, 500),
                name="newest",
                tenant=tenant,
                namespace=tenant.namespace,
                cluster=pool.cluster,
                pool=pool,
                volume_type="block",
                capacity=1,
                snap_cap=0,
                state=EventState.AVAILABLE,
                created=EPOCH + dt.timedelta(days=1),
            )
        ]
    )
    _, body = post(client, "list", {**LIST, "filter_pool_uuid": u(3, 50)})
    assert [i["volume"]["PoolName"] for i in body["data"]["list"]] == ["new"]
    readcache.clear_all()
    post(client, "list", LIST)
    Volume.objects.bulk_create(
        [
            Volume(
                uuid=u(7, 501),
                name="newer",
                tenant=tenant,
                namespace=tenant.namespace,
                cluster=pool.cluster,
                pool=Pool.objects.bulk_create(
                    [
                        Pool(
                            uuid=u(3, 51),
                            name="newer-pool",
                            cluster=pool.cluster,
                            zone=pool.zone,
                            path="/srv/n2",
                            capacity=1,
                        )
                    ]
                )[0],
                volume_type="block",
                capacity=1,
                snap_cap=0,
                state=EventState.AVAILABLE,
                created=EPOCH + dt.timedelta(days=2),
            )
        ]
    )
    status, body = post(client, "get", {**GET, "volume_uuid": u(7, 501)})
    assert status == 200 and body["data"]["volume"]["PoolName"] == "newer-pool"


def test_a_tenant_token_is_still_bound_to_its_tenant_when_the_scope_is_cached(client):
    post(client, "list", LIST)  # T1's scope cached by a platform token
    _, key = token_create(name="tenant", tenant=Tenant.objects.get(uuid=u(1, 2)))
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert post(other, "list", LIST)[1]["scode"] == 3002
    assert post(other, "get", GET)[1]["scode"] == 3002


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"filter_name": "_"},
        {"filter_name": "%"},
        {"filter_name": "a\\"},
        {"filter_name": "DATA-0"},
        {"filter_pool_uuid": P1, "filter_name": "0-0"},
    ],
)
@pytest.mark.parametrize("offset,limit", [(0, 10), (10, 10), (14, 7), (30, 5), (0, 1000)])
def test_the_postgresql_statement_selects_what_the_orm_does(client, monkeypatch, filters, offset, limit):
    """The single statement PostgreSQL runs and the ORM queries of other databases: same rows, same total."""
    from django.db import connection

    from volumes import selectors

    if connection.vendor != "postgresql":
        pytest.skip("the single statement is PostgreSQL's")
    tenant, cluster = selectors.cached_scope(tenant_uuid=T1, cluster_uuid=C1, allowed_tenant_id=None)
    # Names with LIKE's special characters.
    Volume.objects.filter(uuid=u(7, 4)).update(name="with_under%score\\")
    fast = selectors.volume_list_rows(
        tenant=tenant, cluster=cluster, filters=filters, offset=offset, limit=limit
    )
    monkeypatch.setattr(connection, "vendor", "other")
    orm = selectors.volume_list_rows(
        tenant=tenant, cluster=cluster, filters=filters, offset=offset, limit=limit
    )
    assert fast[1] == orm[1]
    assert [{k: r[k] for k in selectors._ROW_KEYS} for r in fast[0]] == [
        {k: r[k] for k in selectors._ROW_KEYS} for r in orm[0]
    ]


def test_a_volume_in_another_namespace_shows_that_namespace(client):
    """NamespaceUUID is the volume's namespace, as before, even where it is not its tenant's."""
    from volumes.models import Namespace

    stray = Namespace.objects.create(uuid=u(6, 99), tenant=Tenant.objects.create(uuid=u(1, 98), name="stray"))
    Volume.objects.filter(uuid=u(7, 2)).update(namespace=stray)
    _, body = post(client, "get", GET)
    assert body["data"]["volume"]["NamespaceUUID"] == u(6, 99)
    _, body = post(client, "list", {**LIST, "page_size": 100})
    namespaces = {i["volume"]["UUID"]: i["volume"]["NamespaceUUID"] for i in body["data"]["list"]}
    assert namespaces[u(7, 2)] == u(6, 99) and namespaces[u(7, 1)] == u(6, 1)
    assert body["data"]["each_range_list_state"][0]["namespace_uuid"] == u(6, 1)


def test_get_for_a_tenant_without_a_namespace_is_not_found(client):
    """As before: such a tenant has no volume, so `get` answers 3004, not an error of the cache."""
    Tenant.objects.create(uuid=u(1, 97), name="bare")
    status, body = post(client, "get", {**GET, "tenant": u(1, 97)})
    assert (status, body["scode"]) == (404, 3004)
