"""schemathesis against the project's own OpenAPI schema (drf-spectacular, generated in-process):
every operation, a fixed seed, 100 valid and 50 invalid examples each, through the WSGI app with a
platform token. No answer is a 5xx, and every answer (status code, body) is one the schema documents.

The operations are driven with hypothesis directly (`APIOperation.as_strategy`): schemathesis'
pytest loader (`from_fixture`) does not run under pytest 9."""

from functools import cache

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import CLUSTER, POOL_DISKS, TENANT

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _plain(value):
    """drf-spectacular's schema with its lazy strings made plain JSON values."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@cache
def api_schema():
    """The schema /api/schema/ serves, bound to the WSGI app."""
    loaded = schemathesis.openapi.from_dict(_plain(SchemaGenerator().get_schema(request=None, public=True)))
    loaded.app = get_wsgi_application()
    return loaded


@cache
def operations() -> dict:
    found = {}
    for result in api_schema().get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def _in_demo_scope(case, use_demo: int):
    """Most cases name the demo tenant, cluster and pool, so they get past the lookups of the scope
    and reach the operation's own validation and services (random UUIDs stop at 3001/3002)."""
    if use_demo:
        for values in (case.body, case.query):
            if isinstance(values, dict):
                for key in list(values):
                    if key == "cluster_uuid":
                        values[key] = CLUSTER
                    elif key == "tenant":
                        values[key] = TENANT
                    elif key.endswith("pool_uuid"):
                        values[key] = POOL_DISKS
    return case


@pytest.fixture
def keep_test_connection():
    """As Django's test client does: the WSGI app must not close the test's connection (and its
    transaction) at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", sorted(operations()))
def test_every_operation_answers_as_documented(topology, platform_token, keep_test_connection, label, mode):
    headers = {"Authorization": f"Token {platform_token}"}

    cases = st.tuples(operations()[label].as_strategy(generation_mode=mode), st.integers(0, 3))

    @given(case=cases.map(lambda pair: _in_demo_scope(*pair)))
    @settings(
        max_examples=100 if mode == GenerationMode.POSITIVE else 50,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def run(case):
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS)

    run()


# What the run found, kept as plain regressions.


@pytest.mark.parametrize("path", ["list", "backup/list"])
def test_a_page_number_past_the_bound_is_a_field_error(api, path):
    """(page_num - 1) x page_size overflowed the database's 64-bit offset: 500 before the bound."""
    query = {"cluster_uuid": CLUSTER, "tenant": TENANT, "page_num": 2**62, "page_size": 250}
    status, answer = api.post(path, query) if path == "list" else api.get(path, query)
    assert (status, answer["scode"]) == (400, 1001), answer
    assert "page_num" in answer["message"] and "2147483647" in answer["message"]
    query["page_num"] = 2**31 - 1
    status, answer = api.post(path, query) if path == "list" else api.get(path, query)
    assert (status, answer["scode"]) == (200, 0), answer


def test_an_epoch_bound_past_year_9999_reads_as_its_last_second(api):
    """A 12-digit bound past year 9999 made no date (500); it now bounds nothing away."""
    query = {"cluster_uuid": CLUSTER, "tenant": TENANT}
    status, answer = api.get("backup/list", {**query, "filter_start_time": "999999999999"})
    assert (status, answer["scode"], answer["data"]["TotalCount"]) == (200, 0, 0), answer
    status, answer = api.get("backup/list", {**query, "filter_end_time": "999999999999"})
    assert (status, answer["scode"]) == (200, 0), answer
