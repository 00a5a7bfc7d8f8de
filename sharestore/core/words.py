"""Stored identifiers of the audit trail and operations shown as words in the reader's language.

Rows keep language-neutral values (`ok`, `volume`, `volume.reset_state`, `9 (merging snapshot)`), as
the API and the logs use them; the console turns them into words when it renders them, from the
same tables the error catalogue renders message_cn with (`sharestore.error_words`) and from the
project's zh_Hans catalogue. A value no table knows is shown as stored.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import get_language, pgettext_lazy

from sharestore import error_words

# AuditEvent.result values (context: the outcome of an audited action, not a state).
AUDIT_RESULTS = {
    "ok": pgettext_lazy("audit result", "ok"),
    "failed": pgettext_lazy("audit result", "failed"),
    "skipped": pgettext_lazy("audit result", "skipped"),
    "refused": pgettext_lazy("audit result", "refused"),
}


def _chinese() -> bool:
    return (get_language() or "en").lower().startswith("zh")


def audit_result_text(result: str) -> str:
    words = AUDIT_RESULTS.get(result)
    return str(words) if words is not None else result


def object_type_text(object_type: str) -> str:
    """`volume` -> volume / 卷 (error_words.KINDS); unknown kinds as stored."""
    if not object_type:
        return ""
    if object_type.lower() not in error_words.KINDS:
        return object_type
    english, chinese = error_words.kind_words(object_type)
    return chinese if _chinese() else english


def action_text(action: str) -> str:
    """`volume.reset_state` -> reset state of volume / 重置卷状态 (error_words.ACTIONS and friends)."""
    if not action:
        return ""
    if not _chinese():
        return action
    _english, chinese = error_words.action_words(action)
    return action if chinese == "此操作" else chinese  # the table's "this action": say which


def state_text(state: str) -> str:
    """`9 (merging snapshot)` -> 9（合并快照中） in Chinese; as stored in English."""
    if not state or not _chinese():
        return state
    return error_words.state_words(state)[1]


def words_filter(title, words):
    """A list filter over a column's distinct stored values, each shown through `words(value)`."""

    class WordsFilter(admin.AllValuesFieldListFilter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

        def choices(self, changelist):
            # "All" and the empty value are Django's words already; the rest are stored values.
            for choice in super().choices(changelist):
                yield {**choice, "display": words(str(choice["display"]))}

    return WordsFilter
