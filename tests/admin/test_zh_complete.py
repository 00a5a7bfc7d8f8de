"""The console is complete in Chinese: every page of it, rendered in zh-hans, shows none of the
English the project's catalogue translates, and the catalogue has no empty or fuzzy entry.

The pages are discovered, not listed: the admin index and app pages, and for every registered
ModelAdmin its changelist, add form, the change page of a seeded object, every URL of its
get_urls() (object ids filled in from the seeded rows) and every admin action run on a seeded row
(the repair actions lead to their preview screens). The strings are the catalogue's own
(tests/admin/catalogue.py), so entries added later are checked as well.
"""

from __future__ import annotations

import json
import os
import uuid as uuid_lib

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse

from backups.services.points import backup_point_create
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import AuditEvent, Operation
from sharestore.core.phases import PHASE_TEMPLATES, PHASES, phase_words
from tests.admin.catalogue import ALLOWED_IN_CHINESE, EnglishFinder, read_catalogue, visible_text
from tests.admin.storage import build_tree, head_path, new_volume, plant_orphan, pool_named
from tests.admin.test_changelists import add_rows

CHINESE = "zh-hans"


def test_the_catalogue_has_no_empty_or_fuzzy_translation():
    entries = read_catalogue()
    assert len(entries) > 100
    untranslated = [(e.context, e.msgid) for e in entries if not all(e.msgstrs)]
    fuzzy = [(e.context, e.msgid) for e in entries if e.fuzzy]
    assert untranslated == [] and fuzzy == []


def test_the_allow_list_names_only_catalogue_entries():
    english = {text for entry in read_catalogue() for text in entry.english}
    assert set(ALLOWED_IN_CHINESE) <= english


def test_every_phase_the_table_knows_is_translated():
    from django.utils import translation

    words = [*PHASES.values(), *PHASE_TEMPLATES.values()]
    with translation.override("en"):
        english = [str(w) for w in words]
    with translation.override(CHINESE):
        chinese = [str(w) for w in words]
    assert [e for e, c in zip(english, chinese, strict=True) if e == c] == []


def test_phases_render_from_the_table_by_the_stored_phase(settings):
    from django.utils import translation

    with translation.override(CHINESE):
        assert phase_words("copying") == "正在复制"
        assert phase_words("copying 2 of 3") == "正在复制第 2 个（共 3 个）"
        assert (
            phase_words("waiting for a host that mounts pool disks, nfs")
            == "正在等待挂载存储池 disks, nfs 的主机"
        )
        assert phase_words("merging into backup ") == "merging into backup "  # no value: not the template
        assert phase_words("something new") == "something new"  # unknown: as stored
    with translation.override("en"):
        assert phase_words("copying 2 of 3") == "copying 2 of 3"


def test_the_finder_sees_english_headers_labels_and_sentences():
    finder = EnglishFinder(read_catalogue())
    html = """<html><head><title>Lineage</title><script>var x = "Lineage";</script></head><body>
    <th>snap cap</th><label>Deleted at:</label><p>Nothing to reconcile.</p><td>已用</td>
    <input type="submit" value="Preview again"><p>核对已修复 1 个问题 - Reconcile fixed 2 finding(s); 3 remain.</p>
    </body></html>"""
    assert finder.untranslated(html) == {
        "snap cap",
        "deleted at",
        "Nothing to reconcile.",
        "Preview again",
        "Reconcile fixed %(fixed)d finding(s); %(remaining)d remain.",
    }
    assert "Lineage" not in " ".join(visible_text(html))


@pytest.fixture
def console_data(topology, data_dir):
    """Rows of every console model, a volume with a snapshot tree, one without its image, an orphan
    file, a real backup point, operations running, failed and waiting (with their phases)."""
    add_rows(1, data_dir)
    disks = pool_named(topology, "disks")
    tree = new_volume(topology, pool=disks, name="web-data")
    build_tree(tree, [("s1", None), ("s2", "s1"), ("s3", "s1")], head_on="s3")
    lost = new_volume(topology, pool=disks, name="db-data")
    os.unlink(head_path(lost))
    plant_orphan(disks)
    point_dir = data_dir / "nightly"
    point_dir.mkdir()
    backup_point_create(name="nightly", cluster=topology["cluster"], path=str(point_dir), capacity=1 << 40)
    for state, phase in [
        (OperationState.RUNNING, "copying 1 of 2"),
        (OperationState.RUNNING, "hashing the changed chunks"),
        (OperationState.QUEUED, "waiting for a host that mounts pool disks"),
        (OperationState.FAILED, "copying"),
    ]:
        Operation.objects.create(
            kind=OperationKind.CLONE_FULL,
            state=state,
            volume=tree,
            target_type="volume",
            target_uuid=uuid_lib.uuid4(),
            phase=phase,
            progress=30,
            error_scode=5001 if state == OperationState.FAILED else 0,
            error_message="storage operation failed: x" if state == OperationState.FAILED else "",
            error_params={"reason": "x"} if state == OperationState.FAILED else {},
        )
    AuditEvent.objects.create(
        actor="test",
        action="volume.reset_state",
        object_type="volume",
        object_uuid=tree.uuid,
        volume=tree,
        from_state="9 (merging snapshot)",
        to_state="0 (available)",
    )
    return {"tree": tree, "lost": lost, "disks": disks}


def _superuser_request(admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    return request


def _rows_by_name() -> dict[str, list]:
    """The first and the last seeded row of every registered model, by model name (`volume`)."""
    rows = {}
    for model in admin.site._registry:
        ordered = model._default_manager.order_by("pk")
        rows[model._meta.model_name] = [r for r in {ordered.first(), ordered.last()} if r is not None]
    return rows


def _argument(argument: str, obj, rows: dict[str, list]):
    """A value for a URL argument: `object_id` is the page's row; `<model>_id` / `<model>_pk` /
    `<model>_uuid` a seeded row of that model; None when nothing fits."""
    if argument == "object_id":
        return obj.pk if obj is not None else None
    for suffix, attribute in (("_id", "pk"), ("_pk", "pk"), ("_uuid", "uuid")):
        if argument.endswith(suffix) and rows.get(argument[: -len(suffix)].replace("_", "")):
            return getattr(rows[argument[: -len(suffix)].replace("_", "")][0], attribute, None)
    return None


def _url(name: str, pattern, obj, rows: dict[str, list]) -> str | None:
    """The URL of one of a ModelAdmin's patterns, its arguments from `obj` and the seeded rows;
    None when it needs an argument it cannot be given."""
    kwargs = {}
    for argument in pattern.pattern.converters:
        kwargs[argument] = _argument(argument, obj, rows)
        if kwargs[argument] is None:
            return None
    try:
        return reverse(f"admin:{name}", kwargs=kwargs)
    except NoReverseMatch:
        return None


def console_pages(client, admin_user) -> tuple[dict[str, str], list[str]]:
    """{what: HTML} of every console page that renders for a superuser, and the pages that must
    render (changelists and change pages) but did not."""
    pages: dict[str, str] = {}
    broken: list[str] = []

    def get(what: str, url: str, *, required: bool = False) -> None:
        response = client.get(url, follow=True)
        if response.status_code == 200 and "text/html" in response.get("Content-Type", ""):
            pages[what] = response.content.decode()
        elif required:
            broken.append(f"{what} {url}: {response.status_code}")

    get("home", "/", required=True)
    # The site's own views without arguments (index, password change, views added to the site).
    for pattern in admin.site.get_urls():
        takes_arguments = pattern.pattern.regex.groups or pattern.pattern.converters
        if getattr(pattern, "name", None) and not takes_arguments and pattern.name != "logout":
            get(f"site {pattern.name}", reverse(f"admin:{pattern.name}"), required=pattern.name == "index")
    request = _superuser_request(admin_user)
    rows = _rows_by_name()
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label):
        opts = model._meta
        get(f"{opts.app_label} app", reverse("admin:app_list", args=[opts.app_label]))
        prefix = f"{opts.app_label}_{opts.model_name}"
        # Each page of the first and of the last seeded row (the demo's real volumes come last).
        for index, obj in enumerate(rows[opts.model_name] or [None]):
            for pattern in model_admin.get_urls():
                if not pattern.name or (index and not pattern.pattern.converters):
                    continue
                url = _url(pattern.name, pattern, obj, rows)
                if url is None:
                    continue
                required = pattern.name in {f"{prefix}_changelist", f"{prefix}_change"}
                get(f"{opts.label} {pattern.name} #{index}", url, required=required)
        # The actions (repairs lead to their preview screens) on the seeded rows.
        changelist = reverse(f"admin:{prefix}_changelist")
        for action in model_admin.get_actions(request):
            if action == "delete_selected" or not rows[opts.model_name]:
                continue
            selected = [obj.pk for obj in rows[opts.model_name]]
            response = client.post(
                changelist, {"action": action, ACTION_CHECKBOX_NAME: selected, "index": 0}, follow=True
            )
            if response.status_code == 200:
                pages[f"{opts.label} action {action}"] = response.content.decode()
            else:
                broken.append(f"{opts.label} action {action}: {response.status_code}")
    return pages, broken


def test_every_console_page_in_chinese_shows_no_english_of_the_catalogue(
    client, admin_user, console_data, settings
):
    settings.DEBUG = False
    client.force_login(admin_user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = CHINESE
    pages, broken = console_pages(client, admin_user)
    assert broken == []
    # It did reach the pages: a changelist and a change page per console model, the repair previews.
    assert len(pages) > 3 * len(admin.site._registry)
    assert any("reset_state" in what for what in pages) and any("reconcile" in what for what in pages)
    assert all('lang="zh-hans"' in html for html in pages.values())
    finder = EnglishFinder(read_catalogue())
    untranslated = {
        what: sorted(found)
        for what, html in pages.items()
        # "<app>.<Model> <page>" or "<app> app": third-party apps' untranslatable field names aside
        if (found := finder.untranslated(html, app_label=what.split(" ")[0].split(".")[0]))
    }
    import json

    print("UNTR", json.dumps(untranslated, ensure_ascii=False))
    assert untranslated == {}


def test_the_same_pages_in_english_do_show_the_catalogue_english(client, admin_user, console_data):
    """The check above is not vacuous: in English the same finder sees the catalogue's words."""
    client.force_login(admin_user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    html = client.get(reverse("admin:volumes_volume_change", args=[console_data["tree"].pk])).content.decode()
    found = EnglishFinder(read_catalogue()).untranslated(html)
    assert {"Lineage", "snap cap", "source volume", "Reset state…"} <= found


def test_findings_reasons_and_phases_render_in_chinese_from_their_codes(client, admin_user, console_data):
    """The repair texts are decided once (a code and values) and shown in the reader's language."""
    client.force_login(admin_user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = CHINESE
    finder = EnglishFinder(read_catalogue())
    disks, lost = console_data["disks"], console_data["lost"]
    pages = {
        "reconcile": client.get(reverse("admin:volumes_pool_reconcile") + f"?pool={disks.uuid}"),
        "reset": client.get(reverse("admin:volumes_volume_reset_state", args=[lost.pk])),
        "operations": client.get(reverse("admin:core_operation_changelist")),
    }
    html = {name: response.content.decode() for name, response in pages.items()}
    assert all(response.status_code == 200 for response in pages.values())
    assert "数据库中没有记录引用此文件" in html["reconcile"] and "卷的镜像缺失" in html["reconcile"]
    assert "卷的镜像不存在" in html["reset"]
    assert "正在复制第 1 个（共 2 个）" in html["operations"]
    assert "正在等待挂载存储池 disks 的主机" in html["operations"]
    assert {name: finder.untranslated(text) for name, text in html.items()} == {
        "reconcile": set(),
        "reset": set(),
        "operations": set(),
    }
    # The same decisions in English, for --json and the audit trail.
    from volumes.services import repair

    reports = repair.reconcile(actor="test", targets={"pool": [str(disks.uuid)]})
    details = [f["detail"] for r in reports for f in r.as_dict()["findings"]]
    assert "the volume's image is missing" in details and "no database row refers to this file" in details
    json.dumps([r.as_dict() for r in reports])  # --json: plain strings


def _phase_calls():
    """Every `<reporter>.phase(...)` call in the apps: (where, literal parts of its phase)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for app in ("sharestore", "volumes", "backups"):
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "phase"
                    and len(node.args) == 1
                ):
                    continue
                where = f"{path.relative_to(root)}:{node.lineno}"
                for value in (
                    [node.args[0].body, node.args[0].orelse]
                    if isinstance(node.args[0], ast.IfExp)
                    else [node.args[0]]
                ):
                    if isinstance(value, ast.Constant):
                        yield where, (value.value,)
                    elif isinstance(value, ast.JoinedStr):
                        yield (
                            where,
                            tuple(v.value if isinstance(v, ast.Constant) else None for v in value.values),
                        )
                    else:
                        yield where, None


def test_every_phase_the_code_writes_is_in_the_table():
    """A new `reporter.phase(...)` needs its words in sharestore/core/phases.py (and the catalogue)."""
    import string

    def parts(template: str) -> tuple:
        # "copying {n} of {total}" -> ("copying ", None, " of ", None), as an f-string's parts.
        out = []
        for literal, field, _spec, _conversion in string.Formatter().parse(template):
            out += [literal] if literal else []
            out += [None] if field is not None else []
        return tuple(out)

    templates = {parts(t) for t in PHASE_TEMPLATES}
    calls = list(_phase_calls())
    assert len(calls) > 10
    unknown = []
    for where, parts in calls:
        if parts is None:
            unknown.append((where, "not a literal or f-string"))
        elif len(parts) == 1 and parts[0] is not None:
            if parts[0] not in PHASES:
                unknown.append((where, parts[0]))
        elif parts not in templates:
            unknown.append((where, parts))
    assert unknown == []
