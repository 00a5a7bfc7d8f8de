"""In a real browser with DEBUG off: the console loads with no console error and no failed request,
and the API docs (Swagger UI, Redoc) render every endpoint with no request leaving localhost."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from tests.admin.test_browser import CHROMIUM, browser_page  # noqa: F401 - fixture
from volumes.services import demo

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
    ),
]

LOCAL = {"127.0.0.1", "localhost"}


def _watch(page) -> dict:
    """Records console errors, failed requests and any request to another host (which is refused)."""
    seen = {"errors": [], "failed": [], "remote": [], "requests": []}
    page.on("console", lambda msg: msg.type == "error" and seen["errors"].append(msg.text))
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("requestfailed", lambda req: seen["failed"].append(req.url))
    page.on(
        "response", lambda resp: resp.status >= 400 and seen["failed"].append(f"{resp.status} {resp.url}")
    )

    def route(route):
        url = route.request.url
        seen["requests"].append(url)
        if urlparse(url).scheme in {"http", "https"} and urlparse(url).hostname not in LOCAL:
            seen["remote"].append(url)
            return route.abort()
        return route.continue_()

    page.route("**/*", route)
    return seen


@pytest.fixture
def operator(transactional_db, data_dir):
    demo.demo_topology_seed(data_dir=data_dir)
    get_user_model().objects.create_superuser("admin", "", "admin-pw")


def test_console_loads_clean_with_debug_off(live_server, browser_page, operator):  # noqa: F811
    assert settings.DEBUG is False
    page, base = browser_page, live_server.url
    seen = _watch(page)
    page.goto(f"{base}/")
    page.click("text=Console")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")
    for link in ["Volumes", "Operations", "Pools", "Backup points", "Task queue"]:
        page.click(f"#ss-nav >> text={link}")
        page.wait_for_load_state("networkidle")
    assert any("/static/core/console.css" in url for url in seen["requests"])
    assert (seen["errors"], seen["failed"], seen["remote"]) == ([], [], []), seen


def _operation_ids() -> list[str]:
    schema = yaml.safe_load(Client().get("/api/schema/").content)
    return sorted(
        op["operationId"]
        for methods in schema["paths"].values()
        for op in methods.values()
        if "operationId" in op
    )


def test_swagger_ui_renders_every_endpoint_offline(live_server, browser_page, operator):  # noqa: F811
    expected = _operation_ids()
    page, base = browser_page, live_server.url
    seen = _watch(page)
    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".opblock")
    rendered = page.eval_on_selector_all(".opblock", "els => els.map(e => e.id)")
    # Swagger UI's ids are operations-<tag>-<operationId>.
    assert sorted(i.rsplit("-", 1)[1] for i in rendered) == expected
    assert (seen["errors"], seen["failed"], seen["remote"]) == ([], [], []), seen


def test_redoc_renders_every_endpoint_offline(live_server, browser_page, operator):  # noqa: F811
    expected = _operation_ids()
    page, base = browser_page, live_server.url
    seen = _watch(page)
    page.goto(f"{base}/api/redoc/")
    page.wait_for_selector("[data-section-id^='operation/']")
    rendered = page.eval_on_selector_all(
        "[data-section-id^='operation/']", "els => els.map(e => e.getAttribute('data-section-id'))"
    )
    assert sorted({i.split("/", 1)[1] for i in rendered}) == expected
    assert (seen["errors"], seen["failed"], seen["remote"]) == ([], [], []), seen
