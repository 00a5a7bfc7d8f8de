"""English and Simplified Chinese: chosen by the browser or the switch; errors from the one catalogue."""

from __future__ import annotations

import re
import uuid as uuid_lib

import pytest
from django.urls import reverse

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.console import localized_error, localized_event_message
from sharestore.core.models import AuditEvent, Operation
from sharestore.errors import CATALOGUE
from tests.admin.storage import new_volume, pool_named


def sample_params(cls) -> dict:
    """A distinct value for every placeholder of both templates; `<x>_cn` mirrors `<x>`."""
    names = set(re.findall(r"\{(\w+)", cls.message)) | set(re.findall(r"\{(\w+)", cls.message_cn))
    params = {name: f"v{index}-{name}" for index, name in enumerate(sorted(names))}
    for name in names:
        if name.endswith("_cn") and name[:-3] in params:
            params[name] = params[name[:-3]]
    return params


@pytest.mark.parametrize("scode", sorted(CATALOGUE))
def test_every_stored_failure_renders_in_both_languages_from_its_parameters(scode):
    error = CATALOGUE[scode](**sample_params(CATALOGUE[scode]))
    stored = errors.json_params(error.params)
    assert localized_error(scode, error.render_message(), stored, "zh-hans") == error.render_message_cn()
    assert localized_error(scode, error.render_message(), stored, "en") == error.render_message()


def test_failures_stored_without_parameters_or_with_unknown_codes_stay_as_they_are():
    assert localized_error(5001, "something else entirely", {}, "zh-hans") == "something else entirely"
    assert localized_error(9999, "unknown code", {"x": 1}, "zh-hans") == "unknown code"
    # A template without placeholders needs no parameters to be translated.
    assert localized_error(5000, "internal error", {}, "zh-hans") == "内部错误"


def test_audit_events_of_failures_render_from_their_scode_and_parameters():
    failure = AuditEvent(
        scode=5004, message="scode 5004: no space left on /pool", message_params={"where": "/pool"}
    )
    assert localized_event_message(failure, "zh-hans") == "scode 5004: /pool 空间不足"
    assert localized_event_message(failure, "en") == "scode 5004: no space left on /pool"
    assert localized_event_message(AuditEvent(message="force"), "zh-hans") == "force"


def test_browser_language_picks_chinese(admin_client, topology):
    new_volume(topology, pool=pool_named(topology, "disks"), name="v", data=False)
    html = admin_client.get(
        reverse("admin:volumes_volume_changelist"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9"
    ).content.decode()
    assert '<html lang="zh-hans"' in html
    assert "sharestore 运维控制台" in html and "任务队列" in html
    assert '<span class="ss-badge ss-badge-ok">可用</span>' in html  # the state column's label
    english = admin_client.get(
        reverse("admin:volumes_volume_changelist"), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert (
        "sharestore console" in english and '<span class="ss-badge ss-badge-ok">available</span>' in english
    )


def test_switch_sets_the_language_for_the_session(admin_client, topology):
    url = reverse("admin:core_operation_changelist")
    response = admin_client.post(reverse("set_language"), {"language": "zh-hans", "next": url})
    assert response.status_code == 302 and response["Location"] == url
    volume = new_volume(topology, pool=pool_named(topology, "disks"), name="v", data=False)
    Operation.objects.create(
        kind=OperationKind.VOLUME_IMPORT,
        state=OperationState.FAILED,
        volume=volume,
        target_type="volume",
        target_uuid=uuid_lib.uuid4(),
        error_scode=1010,
        error_message="backing_file rejected: encrypted qcow2",
        error_params={"reason": "encrypted qcow2"},
    )
    html = admin_client.get(
        url, HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()  # the cookie wins over the browser
    assert "1010: 已有卷文件不可导入：qcow2 镜像已加密" in html
    assert "导入卷" in html and "失败" in html
    admin_client.post(reverse("set_language"), {"language": "en", "next": url})
    assert "1010: backing_file rejected: encrypted qcow2" in admin_client.get(url).content.decode()


def test_login_page_offers_the_switch(client):
    html = client.get(reverse("admin:login"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert 'id="ss-language-select"' in html and "简体中文" in html and "语言" in html


def test_a_chinese_operator_writes_language_neutral_audit_rows(admin_client, topology):
    from sharestore.core.models import AuditEvent
    from volumes.choices import EventState
    from volumes.models import Volume

    volume = new_volume(topology, pool=pool_named(topology, "disks"), name="v", data=False)
    Volume.objects.filter(pk=volume.pk).update(state=EventState.MERGING)
    admin_client.post(reverse("set_language"), {"language": "zh-hans", "next": "/admin/"})
    response = admin_client.post(
        reverse("admin:volumes_volume_reset_state", args=[volume.pk]),
        {"expected_from": EventState.MERGING, "to_state": EventState.AVAILABLE},
        follow=True,
    )
    assert "卷 v 当前状态为 可用。" in [str(m) for m in response.context["messages"]]
    event = AuditEvent.objects.get(volume=volume, action="volume.reset_state")
    assert (event.from_state, event.to_state) == ("9 (merging snapshot)", "0 (available)")


def test_the_committed_catalogue_is_compiled(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("msgfmt") is None:
        pytest.skip("needs msgfmt (Debian's gettext; make test installs it)")
    messages = Path(__file__).resolve().parents[2] / "locale" / "zh_Hans" / "LC_MESSAGES"
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(compiled), str(messages / "django.po")], check=True)
    assert compiled.read_bytes() == (messages / "django.mo").read_bytes(), (
        "run: manage.py compilemessages -l zh_Hans"
    )
