"""Screenshots of the console at 1440 px, in English and in Chinese: the volumes list, a volume's page
and the operations list, saved as test-artifacts/console-<page>-<lang>.png (CI keeps them).

Each page is checked as it is shot: its heading in that language, and in Chinese no English of the
project's catalogue among the column headers, field labels and section titles."""

from __future__ import annotations

import os
import uuid as uuid_lib

import pytest
from django.conf import settings
from django.utils import translation

from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from tests.admin.catalogue import EnglishFinder, read_catalogue
from tests.admin.test_browser import ARTIFACTS, CHROMIUM, browser_page, incident, shot  # noqa: F401
from volumes.models import Volume

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
    ),
]

WIDTH = 1440
LANGUAGES = ["en", "zh-hans"]


def _heading(language: str, template: str, model) -> str:
    """The admin's heading as Django writes it in `language` (its own catalogue)."""
    with translation.override(language):
        return translation.gettext(template) % model._meta.verbose_name


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.fixture
def operations(incident):
    """Operations of the tree volume: a full clone copying its second layer, a backup hashing, one failed."""
    tree = incident["tree"]
    for state, kind, phase, progress in [
        (OperationState.RUNNING, OperationKind.CLONE_FULL, "copying 2 of 3", 40.0),
        (OperationState.RUNNING, OperationKind.BACKUP_CREATE, "hashing the changed chunks", 75.0),
        (OperationState.FAILED, OperationKind.CLONE_FULL, "copying", 10.0),
    ]:
        failed = state == OperationState.FAILED
        Operation.objects.create(
            kind=kind,
            state=state,
            volume=tree,
            target_type="volume",
            target_uuid=uuid_lib.uuid4(),
            phase=phase,
            progress=progress,
            bytes_done=int(progress) << 20,
            bytes_total=100 << 20,
            error_scode=5001 if failed else 0,
            error_message="storage operation failed: qemu-img convert exited 1" if failed else "",
            error_params={"reason": "qemu-img convert exited 1"} if failed else {},
        )
    return incident


def _log_in(page, base: str, language: str) -> None:
    page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": base}])
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#ss-nav")


def _labels(page) -> list[str]:
    """Column headers, field labels and section titles of the page."""
    selectors = "#result_list thead th, .form-row label, fieldset h2, .ss-section h2, .ss-section th"
    return [t.strip() for t in page.locator(selectors).all_inner_texts() if t.strip()]


@pytest.mark.parametrize("language", LANGUAGES)
def test_screenshots_of_volumes_volume_page_and_operations(live_server, browser_page, operations, language):
    page, base = browser_page, live_server.url
    finder = EnglishFinder(read_catalogue())
    tree = operations["tree"]
    _log_in(page, base, language)
    assert page.locator("html").get_attribute("lang") == language

    screens = [
        ("volumes", "/admin/volumes/volume/", _heading(language, "Select %s to view", Volume)),
        ("volume", f"/admin/volumes/volume/{tree.pk}/change/", _heading(language, "View %s", Volume)),
        ("operations", "/admin/core/operation/", _heading(language, "Select %s to view", Operation)),
    ]
    for name, path, heading in screens:
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
        assert page.locator("#content h1").first.inner_text().strip() == heading, name
        labels = _labels(page)
        assert labels, name
        html = page.content()
        if language == "zh-hans":
            english = {label for label in labels if finder.untranslated(f"<p>{label}</p>")}
            assert english == set(), (name, english)
            assert finder.untranslated(html) == set(), name
            assert all(_has_chinese(label) or label.isupper() for label in labels if label.isascii()), (
                name,
                [label for label in labels if label.isascii()],
            )
        else:
            assert not _has_chinese(" ".join(labels)), name
        if name == "volumes":
            assert page.locator("#result_list tbody tr").count() == Volume.objects.count()
        if name == "operations":
            phase = "正在复制第 2 个（共 3 个）" if language == "zh-hans" else "copying 2 of 3"
            assert page.locator("#result_list", has_text=phase).count() == 1
        shot(page, f"{name}-{language}")
        assert (ARTIFACTS / f"console-{name}-{language}.png").stat().st_size > 10_000
