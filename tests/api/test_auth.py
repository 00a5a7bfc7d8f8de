"""Authentication and tenant binding: every /v1/ route needs a token; a tenant token acts only for its tenant."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sharestore.core.models import ApiToken
from sharestore.core.services.tokens import token_create, token_hash
from tests.helpers import POOL_DISKS, TENANT, scoped
from volumes.models import Namespace, Tenant

OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


def call(client, path, body):
    response = client.post(f"/v1/volume/share/{path}", body, format="json")
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "header",
    [None, "Token", "Token not-a-real-key", "Bearer abc", "Token a b"],
    ids=["no header", "keyword only", "unknown key", "other scheme", "extra words"],
)
def test_requests_without_a_valid_token_are_refused(topology, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    status, body = call(client, "list", scoped())
    assert status == 401
    assert body["scode"] in (2001, 2002)
    assert body["data"] is None


def test_tokens_are_stored_hashed(db):
    token, key = token_create(name="t")
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.key_hash == token_hash(key) and key not in stored.key_hash
    assert stored.key_prefix == key[:8]


def test_revoked_and_expired_tokens_are_refused(topology):
    from django.utils import timezone

    revoked, revoked_key = token_create(name="revoked")
    ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    _, expired_key = token_create(name="expired", expires_at=timezone.now())
    for key in (revoked_key, expired_key):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        status, body = call(client, "list", scoped())
        assert (status, body["scode"]) == (401, 2002)


def test_tenant_token_acts_only_for_its_tenant(topology, django_capture_on_commit_callbacks):
    other = Tenant.objects.create(uuid=OTHER_TENANT, name="other")
    Namespace.objects.create(tenant=other)
    _, key = token_create(name="tenant-token", tenant=Tenant.objects.get(uuid=TENANT))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    body = scoped(
        pool_uuid=POOL_DISKS, volume_name="mine", volume_type="block", capacity=1 << 30, snap_capacity=0
    )
    with django_capture_on_commit_callbacks(execute=True):
        status, created = call(client, "create", body)
    assert (status, created["scode"]) == (200, 0)
    # The other tenant answers exactly like a tenant that does not exist.
    status, answer = call(client, "create", {**body, "tenant": OTHER_TENANT, "volume_name": "theirs"})
    assert (status, answer["scode"]) == (404, 3002)
    status, answer = call(client, "list", {"tenant": OTHER_TENANT, "cluster_uuid": body["cluster_uuid"]})
    assert (status, answer["scode"]) == (404, 3002)
    assert Tenant.objects.get(uuid=OTHER_TENANT).volumes.count() == 0
