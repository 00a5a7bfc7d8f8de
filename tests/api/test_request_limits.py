"""The API's edges: any Content-Type carries JSON, bodies are bounded in size and nesting, integers in
range, and a disallowed Host header is answered in the envelope; none of it reaches a 5xx or changes
anything."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from sharestore.api.parsers import MAX_NESTING
from tests.helpers import POOL_DISKS, assert_error, scoped
from volumes.models import Volume


def create_body(**overrides):
    body = scoped(
        pool_uuid=POOL_DISKS, volume_name="edge", volume_type="block", capacity=1 << 30, snap_capacity=1 << 30
    )
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"]
)
def test_json_is_read_whatever_the_content_type(api, content_type):
    status, body = api.post("create", raw=json.dumps(create_body()), content_type=content_type)
    assert (status, body["scode"]) == (200, 0), body
    assert Volume.objects.filter(name="edge").count() == 1


def test_a_body_over_the_limit_is_refused_with_the_limit(api):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = json.dumps(create_body(desc="x" * limit))
    status, body = api.post("create", raw=raw)
    assert_error(status, body, 413, 1013)
    assert str(limit) in body["message"] and str(limit) in body["message_cn"]
    assert not Volume.objects.exists()


def test_nesting_at_the_limit_is_parsed_and_one_deeper_is_refused(api):
    at_limit = create_body(extra=json.loads("[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)))
    status, body = api.post("create", at_limit)
    assert (status, body["scode"]) == (200, 0), body
    status, body = api.post("create", raw='{"a": ' + "[" * MAX_NESTING + "]" * MAX_NESTING + "}")
    assert_error(status, body, 400, 1014)


@pytest.mark.parametrize("capacity", [1e308, 1073741824.0, 2**63, -(2**63) - 1, "1073741824", True])
def test_integers_are_json_integers_within_64_bits(api, capacity):
    assert_error(*api.post("create", create_body(capacity=capacity)), 400, 1001)
    assert not Volume.objects.exists()


def test_a_page_number_beyond_64_bits_is_a_parameter_error(api):
    assert_error(*api.post("list", scoped(page_num=2**64, page_size=10)), 400, 1001)


def test_a_disallowed_host_gets_the_envelope_on_api_paths(api):
    response = api.client.generic(
        "POST",
        "/v1/volume/share/list",
        json.dumps(scoped()),
        content_type="application/json",
        HTTP_HOST="evil.example",
    )
    assert response.status_code == 400
    body = response.json()
    assert (
        body["scode"] == 1015 and "evil.example" in body["message"] and "evil.example" in body["message_cn"]
    )
    assert set(body) == {"scode", "desc", "message", "message_cn", "stack", "data"}
