"""A Host header outside ALLOWED_HOSTS: the envelope (400 / 1015) on API paths, with DEBUG off or on;
other paths keep Django's own answer."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error, scoped
from volumes.models import Volume

ENVELOPE_KEYS = {"scode", "desc", "message", "message_cn", "stack", "data"}


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/v1/volume/share/create", "/v1/volume/share/list", "/v1/no/such/route"])
def test_a_disallowed_host_gets_the_envelope_debug_or_not(api, settings, debug, path):
    settings.DEBUG = debug
    body = scoped(pool_uuid="0eca2be3-056f-4634-a25b-5cf717e067fb", volume_name="h", volume_type="block")
    response = api.client.generic(
        "POST", path, json.dumps(body), content_type="application/json", HTTP_HOST="evil.example:8000"
    )
    assert response["Content-Type"].startswith("application/json")
    answer = response.json()
    assert_error(response.status_code, answer, 400, 1015)
    assert set(answer) == ENVELOPE_KEYS
    assert "evil.example:8000" in answer["message"] and "evil.example:8000" in answer["message_cn"]
    assert not Volume.objects.exists()


def test_a_forwarded_host_is_checked_too(api, settings):
    settings.USE_X_FORWARDED_HOST = True
    response = api.client.generic(
        "POST",
        "/v1/volume/share/list",
        json.dumps(scoped()),
        content_type="application/json",
        HTTP_X_FORWARDED_HOST="proxy.evil",
    )
    assert_error(response.status_code, response.json(), 400, 1015)
    assert "proxy.evil" in response.json()["message"]


def test_an_allowed_host_is_served(api):
    response = api.client.generic(
        "POST",
        "/v1/volume/share/list",
        json.dumps(scoped()),
        content_type="application/json",
        HTTP_HOST="localhost",
    )
    assert (response.status_code, response.json()["scode"]) == (200, 0)


def test_other_paths_keep_djangos_answer(client, settings):
    settings.DEBUG = False
    response = client.get("/healthz", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert not response["Content-Type"].startswith("application/json")
