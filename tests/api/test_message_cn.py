"""message_cn is entirely Chinese: every catalogue template, rendered with the kinds of values its
raise sites pass (collected from the production source), shows no Latin word but the values
themselves (UUIDs, names, paths, numbers) and a small explicit list of units and API names; and no
internal identifier (`snapshot.create`) reaches either language."""

import ast
import re
import string
from pathlib import Path

import pytest

from sharestore import errors
from sharestore.error_words import UNTRANSLATED, action_words, reason_cn
from tests.conftest import scoped

ROOT = Path(__file__).resolve().parents[2]
UUID = "8c1f2b0e-5a4d-4c11-9b7e-2f0d3c4b5a69"
PLACEHOLDER = "42"  # what an f-string's `{...}` becomes in a collected sample

# Latin words message_cn may show besides the parameter values. Keep it small and explicit.
ALLOWED_LATIN = {
    # units, formats, encodings, protocols
    "GiB", "MiB", "s", "qcow", "raw", "RBD", "JSON", "UTF", "UUID", "NUL", "null", "true", "false",
    # API field names and values the caller sends, quoted as the caller spells them
    "force", "is_link", "backing_file", "block", "share", "fs", "application", "json",
    # HTTP header syntax the caller must send
    "Authorization", "Token", "key",
    # an operator's setting and a command the operator runs (import refusals)
    "SHARESTORE_IMPORT_ROOTS", "qemu", "img", "check", "convert", "O",
}  # fmt: skip
LATIN_WORD = re.compile(r"[A-Za-z_]+")

# Values of the parameters that name things: they appear as they are in both languages.
VALUE_SAMPLES = {
    "uuid": UUID, "volume": UUID, "source": UUID, "snapshot": UUID, "cluster": UUID, "vm": UUID,
    "pool": "pool-a", "point": "bp-nfs", "name": "nightly", "given": "other-name", "path": "/srv/pools/a",
    "where": "/srv/pools/a/3c2b.qcow2", "host": "'evil.example'", "field": "volume_name",
    "command": "qemu-nbd /srv/backups/x.qcow2", "method": "PUT", "media_type": "text/plain",
    "value": "tape", "attempt": 2,
}  # fmt: skip
VALUE_TEXTS = {str(v) for v in VALUE_SAMPLES.values()} | {"volume_name"}

# Parameters the raise sites fill with prose or words, and values beyond what the source shows.
EXTRA_SAMPLES = {
    "state": ["7 (snapshotting)", "0 (available)", "gone", "snapshotting", "BackupRunning", "3 (cloning)",
              "3 (hidden: deleted but still backing other layers)"],
    "status": ["BackupRunning", "BackupFailed", "BackupDeleting"],
    "kind": ["volume", "snapshot", "backup"],
    "dependents": [f"linked clones {UUID}, {UUID}", f"backup {UUID} (of snapshot 'nightly')",
                   f"clone {UUID} (being copied)", f"linked clone(s) {UUID}; running backup(s) {UUID}", UUID],
    "readers": [f"backup {UUID} (of snapshot 'nightly'), linked clone {UUID} (being flattened)"],
    "busy": [f"backup {UUID} BackupRunning, backup.restore {UUID}", f"backup.verify {UUID}"],
    "reason": ["You do not have permission to perform this action.", "now available -> error",
               f"operation {UUID} (volume.create) came alive: look at the preview again"],
}  # fmt: skip

_RAISE_HELPERS = {"volume_lock", "transition", "status_transition", "_require", "require_snapshot_readable"}
_RAISE_HELPERS |= {"refuse_if_read", "_refuse_if_layers_rewritten", "_target"}
CLASS_NAMES = {cls.__name__ for cls in errors.CATALOGUE.values()}


def _sample_text(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else PLACEHOLDER for part in node.values)
    return None


def _collect_raise_site_values() -> dict[tuple, set[str]]:
    """(error class or helper, parameter) -> the literal texts the production code passes; and
    (class or helper, parameter, "alone") -> those passed without their `<parameter>_cn` companion."""
    found: dict[tuple, set[str]] = {}
    for app in ("sharestore", "volumes", "backups"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in CLASS_NAMES and name not in _RAISE_HELPERS:
                    continue
                paired = {keyword.arg for keyword in node.keywords}
                for keyword in node.keywords:
                    text = _sample_text(keyword.value)
                    if keyword.arg and text is not None:
                        found.setdefault((name, keyword.arg), set()).add(text)
                        if f"{keyword.arg}_cn" not in paired:
                            found.setdefault((name, keyword.arg, "alone"), set()).add(text)
    return found


RAISE_SITES = _collect_raise_site_values()
# f-string actions (`f"{object_type}.status"`, `f"update {fields[-1]}"`) as the code fills them.
ACTIONS = sorted(
    {
        v
        for key, values in RAISE_SITES.items()
        if key[1:] == ("action",)
        for v in values
        if PLACEHOLDER not in v
    }
    | {"volume.status", "snapshot.status", "backup.status", "update used", "update snap_length"}
)


def samples_for(cls, param: str) -> list:
    """The values `param` takes at the raise sites of `cls` (and representative extras)."""
    if param == "action":
        return ACTIONS
    values = sorted(RAISE_SITES.get((cls.__name__, param), set()))
    values += [v for v in EXTRA_SAMPLES.get(param, []) if v not in values]
    if param in VALUE_SAMPLES:
        values.append(VALUE_SAMPLES[param])
    return values or [7]


def template_params(cls) -> set[str]:
    names = set()
    for template in (cls.message, cls.message_cn):
        names |= {field.split("!")[0] for _, field, _, _ in string.Formatter().parse(template) if field}
    return {name.removesuffix("_cn") for name in names}


def renders(cls):
    """Every template parameter through each of its sample values, the others at their first sample.
    A `<x>_cn` companion is passed where the raise sites pass one."""
    params = sorted(template_params(cls))
    base = {param: samples_for(cls, param)[0] for param in params}
    for param in params or [None]:
        for value in samples_for(cls, param) if param else [None]:
            values = dict(base)
            if param:
                values[param] = value
            companions = {f"{p}_cn": "中文" for p in params if (cls.__name__, f"{p}_cn") in RAISE_SITES}
            error = cls(**values, **companions)
            yield values, error.render_message(), error.render_message_cn()


def without_values(text: str, values: dict) -> str:
    """`text` without the values of the parameters that name things (and the collected placeholders)."""
    names = [str(v) for key, v in values.items() if key in VALUE_SAMPLES] + [UUID, PLACEHOLDER, "'nightly'"]
    for value in sorted(names, key=len, reverse=True):
        text = text.replace(value, " ")
    return text


def latin_words(text: str, values: dict) -> set[str]:
    return {word for word in LATIN_WORD.findall(without_values(text, values)) if word not in ALLOWED_LATIN}


@pytest.mark.parametrize("scode", sorted(errors.CATALOGUE))
def test_every_template_renders_chinese_without_english_words(scode):
    cls = errors.CATALOGUE[scode]
    count = 0
    for values, english, chinese in renders(cls):
        count += 1
        assert "{" not in chinese and "{" not in english, (scode, chinese, english)
        assert not latin_words(chinese, values), (scode, values, chinese)
        # No internal action identifier (`snapshot.create`, `backup.delete.fail`) in either language.
        assert not re.search(r"\b[a-z]+\.[a-z_]+\b", without_values(english, values)), (scode, english)
    assert count >= 1


def test_every_action_of_the_raise_sites_has_words_in_both_languages():
    assert len(ACTIONS) > 20
    for action in ACTIONS:
        english, chinese = action_words(action)
        assert "." not in english and chinese != "此操作", action
        assert not LATIN_WORD.search(chinese), (action, chinese)


API_REASON_CLASSES = {"InvalidParameter", "MalformedRequest", "ImportRejected", "PoolUnavailable"}
API_REASON_CLASSES |= {
    "BackupPointUnavailable",
    "BackupPointFull",
    "PoolIdentityMismatch",
    "OperationNotRetryable",
}


def test_the_reasons_of_request_and_resource_errors_are_translated():
    """Storage failures quoting files and tool output point to the English message; the reasons of
    request, import and resource errors are translated: every one a raise site passes without its
    `reason_cn` companion is in the table of known reasons (`sharestore.error_words`)."""
    checked = 0
    for key, values in RAISE_SITES.items():
        if key[0] in API_REASON_CLASSES and key[1:] == ("reason", "alone"):
            name = key[0]
            for value in values:
                assert reason_cn(value) is not None, (name, value)
                checked += 1
    assert checked > 50
    rendered = errors.StorageError(reason="image has 42 bytes, expected 43").render_message_cn()
    assert rendered == f"存储操作失败：{UNTRANSLATED}"


def test_states_and_kinds_use_the_choices_chinese_labels():
    error = errors.StateConflict(kind="volume", uuid=UUID, state="7 (snapshotting)", action="snapshot.create")
    assert error.render_message() == f"volume {UUID} is 7 (snapshotting): cannot create snapshot now"
    assert error.render_message_cn() == f"卷 {UUID} 当前状态为 7（快照中），现在无法执行创建快照"
    stored = errors.render(4001, errors.json_params(error.params), chinese=True)
    assert stored == error.render_message_cn()


@pytest.mark.parametrize(
    "body, field, reason_cn",
    [
        (scoped(page_size="ten"), "page_size", "必须是 JSON 整数"),
        (scoped(page_size=2**70), "page_size", "不能大于 9223372036854775807"),
        (scoped(page_num=-1), "page_num", "不能小于"),
        (scoped(page_num=2**62), "page_num", "不能大于 2147483647"),
        (scoped(filter_pool_uuid="not-a-uuid"), "filter_pool_uuid", "必须是合法的 UUID"),
        ({"tenant": "nope", "cluster_uuid": scoped()["cluster_uuid"]}, "tenant", "必须是合法的 UUID"),
    ],
)
def test_field_errors_through_the_api_have_chinese_reasons(api, body, field, reason_cn):
    status, answer = api.post("list", body)
    assert status == 400 and answer["scode"] == 1001, answer
    assert field in answer["message_cn"] and reason_cn in answer["message_cn"], answer
    assert not latin_words(answer["message_cn"], {"field": field}), answer["message_cn"]
    assert field in answer["message"] and answer["message"] != answer["message_cn"]


def test_a_body_that_is_not_json_has_a_chinese_reason(api):
    status, answer = api.post("list", raw="{not json")
    assert status == 400 and answer["scode"] == 1000, answer
    assert answer["message_cn"] == "请求体格式错误：不是合法的 JSON", answer


def test_a_recorded_failure_stored_as_english_text_is_not_quoted_in_chinese():
    """A cancelled operation keeps only its English text ("cancelled by reset state")."""
    failure = errors.RecordedFailure(scode=5000, message="cancelled by reset state")
    assert failure.render_message() == "cancelled by reset state"
    assert failure.render_message_cn() == f"操作失败（5000），{UNTRANSLATED}"
    recorded = errors.RecordedFailure(scode=5004, message="no space left on /p", params={"where": "/p"})
    assert recorded.render_message_cn() == "/p 空间不足"
