"""The project's zh_Hans catalogue read for tests: its entries, and the English of translated ones
found in a rendered page (a console page in Chinese must show none of them).

Generic on purpose: every entry anyone adds to locale/zh_Hans/LC_MESSAGES/django.po is checked, with
no list of strings kept here besides ALLOWED_IN_CHINESE below.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path

from django.utils.text import capfirst

PO_FILE = Path(__file__).resolve().parents[2] / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"

# English that may stand in a Chinese page although the catalogue translates it (its msgstr differs
# only in case or spacing, or the same word is a value that is not translated). Keep this short and
# say why for each entry.
ALLOWED_IN_CHINESE: dict[str, str] = {
    # msgid: why. Empty so far: units and brand names are not catalogue entries (`GiB`, `qcow2`,
    # `Ceph` stay as they are in both languages), and an entry translated to the same word in
    # capitals (`uuid` -> UUID) does not match its English (the check is case-sensitive).
}

# Third-party apps' own pages: field names their models give no verbose name (Django shows the
# field's name), which this project cannot translate. Only on pages of that app.
ALLOWED_ON_APP_PAGES: dict[str, set[str]] = {
    "django_q": {"name", "cluster", "result"},  # django-q2's Schedule.name/cluster, Success.result
}

_PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\w*\}")


@dataclass(frozen=True)
class Entry:
    context: str | None
    msgid: str
    msgid_plural: str | None
    msgstrs: tuple[str, ...]
    fuzzy: bool

    @property
    def translated(self) -> bool:
        return all(self.msgstrs) and not self.fuzzy

    @property
    def english(self) -> tuple[str, ...]:
        return tuple(t for t in (self.msgid, self.msgid_plural) if t)

    @property
    def differs(self) -> bool:
        """Its translation says something else than the English (a check can tell them apart)."""
        return any(s != self.msgid for s in self.msgstrs)


def _unquote(lines: list[str]) -> str:
    return "".join(ast.literal_eval(line) for line in lines)


def read_catalogue(path: Path = PO_FILE) -> list[Entry]:
    """Every live entry of the .po file (obsolete `#~` ones and the header left out)."""
    entries: list[Entry] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        fields: dict[str, list[str]] = {}
        current = None
        fuzzy = False
        for line in block.splitlines():
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            elif line.startswith("#"):
                continue
            elif line.startswith('"') and current:
                fields[current].append(line)
            elif line.strip():
                keyword, _, rest = line.partition(" ")
                current = keyword
                fields[current] = [rest]
        if "msgid" not in fields:
            continue
        msgid = _unquote(fields["msgid"])
        if not msgid:
            continue  # the header
        msgstrs = tuple(_unquote(v) for k, v in sorted(fields.items()) if k.startswith("msgstr"))
        entries.append(
            Entry(
                context=_unquote(fields["msgctxt"]) if "msgctxt" in fields else None,
                msgid=msgid,
                msgid_plural=_unquote(fields["msgid_plural"]) if "msgid_plural" in fields else None,
                msgstrs=msgstrs,
                fuzzy=fuzzy,
            )
        )
    return entries


class VisibleText(HTMLParser):
    """The text a reader sees: text nodes outside script/style/template, button labels and
    placeholders. Each text node is kept apart, whitespace collapsed."""

    HIDDEN = {"script", "style", "template", "noscript", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden += 1
            return
        values = dict(attrs)
        if tag == "input" and values.get("type") in {"submit", "button", "reset"} and values.get("value"):
            self._add(values["value"])
        if values.get("placeholder"):
            self._add(values["placeholder"])

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self._add(data)

    def _add(self, text: str) -> None:
        text = " ".join(text.split())
        if text:
            self.nodes.append(text)


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return parser.nodes


def _shape(text: str) -> re.Pattern:
    """A pattern of `text` whose placeholders stand for any value."""
    # A number placeholder stands for digits only: `%(s)d s` is "5 s", not any text ending in " s".
    pattern, last = [], 0
    for match in _PLACEHOLDER.finditer(text):
        pattern.append(re.escape(re.sub(r"\s+", " ", text[last : match.start()])))
        pattern.append(r"[\d.,]+" if match.group(0).endswith(("d", "i", "f")) else ".+?")
        last = match.end()
    pattern.append(re.escape(re.sub(r"\s+", " ", text[last:])))
    return re.compile("".join(pattern))


class EnglishFinder:
    """Finds the English of translated catalogue entries in a page's visible text.

    A text node that is, as a whole (give or take a trailing colon or ellipsis, and a capital first
    letter as the admin writes labels), the English of an entry is untranslated; so is an English
    phrase of three words or more found anywhere in the text (a sentence, a message). Entries
    with no letter outside their placeholders (`%(name)s: %(problem)s`) say nothing to look for."""

    def __init__(self, entries: list[Entry]):
        self.english = sorted(
            {
                text
                for entry in entries
                if entry.translated and entry.differs
                for text in entry.english
                if text not in ALLOWED_IN_CHINESE and re.search("[A-Za-z]", _PLACEHOLDER.sub("", text))
            }
        )

    @cached_property
    def _whole(self) -> tuple[dict[str, str], list[tuple[str, re.Pattern]]]:
        """Plain English by its text (and capitalised), templates as patterns."""
        plain, templates = {}, []
        for text in self.english:
            for variant in {text, capfirst(text)}:
                if _PLACEHOLDER.search(variant):
                    templates.append((text, re.compile(_shape(variant).pattern + r"\Z")))
                else:
                    plain[" ".join(variant.split())] = text
        return plain, templates

    @cached_property
    def _phrases(self) -> list[tuple[str, re.Pattern]]:
        phrases = []
        for text in self.english:
            literal = " ".join(_PLACEHOLDER.sub(" ", text).split())
            if len(literal.split()) >= 3:
                phrases.extend((text, _shape(variant)) for variant in {text, capfirst(text)})
        return phrases

    def untranslated(self, html: str, *, app_label: str = "") -> set[str]:
        nodes = visible_text(html)
        found = set()
        plain, templates = self._whole
        for node in set(nodes):
            for candidate in {node, node.rstrip(":：… ").strip()}:
                if candidate in plain:
                    found.add(plain[candidate])
                found.update(text for text, pattern in templates if pattern.match(candidate))
        page = " ".join(nodes)
        for text, pattern in self._phrases:
            if pattern.search(page):
                found.add(text)
        return found - ALLOWED_ON_APP_PAGES.get(app_label, set())
