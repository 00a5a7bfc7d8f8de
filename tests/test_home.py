"""`/`: a landing page linking the console, the offline API docs, the schema, health and metrics."""

from django.test import Client


def test_home_links_everything():
    page = Client().get("/").content.decode()
    for href in ["/admin/", "/api/docs/", "/api/redoc/", "/api/schema/", "/readyz", "/metrics"]:
        assert f'href="{href}"' in page


def test_home_in_chinese():
    page = Client().get("/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "控制台" in page and 'lang="zh-hans"' in page


def test_swagger_ui_and_redoc_pages_use_local_assets():
    for url in ["/api/docs/", "/api/redoc/"]:
        page = Client().get(url).content.decode()
        assert "/static/drf_spectacular_sidecar/" in page
        assert "cdn.jsdelivr" not in page and "fonts.googleapis" not in page


def test_favicon_is_served():
    client = Client()
    answer = client.get("/favicon.ico")
    assert answer.status_code == 302
    icon = client.get(answer["Location"])
    assert icon.status_code == 200
    assert b"<svg" in b"".join(icon.streaming_content if icon.streaming else [icon.content])
