"""The texts repairs report (reconcile findings, reset-state reasons, refusals): a code and its
parameters, rendered in the reader's language when shown.

A repair decides in one language-neutral form, `Words(code, **params)`; the console renders it at
display time (`str(words)`: the active language, from the project's zh_Hans catalogue); --json
output, the audit trail and the English `message` of a refusal take `words.english`; a refusal's
`message_cn` takes `words.chinese` as its `reason_cn` (errors.py renders it from there, as it does
for every catalogued error). Parameters are values (names, paths, UUIDs, sizes) or words themselves
(choice labels, other `Words`), rendered in the same language.

Adding a text: a code in TEXTS (or `register_texts` from an app above volumes, as backups does),
its zh_Hans entry in locale/zh_Hans/LC_MESSAGES/django.po; tests/admin/test_zh_complete.py finds
a text the catalogue translates but a page shows in English.
"""

from __future__ import annotations

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState

TEXTS = {
    # reconcile findings: details
    "partial_write": _("partial write"),
    "no_row": _("no database row refers to this file"),
    "stuck": _("no queued or running operation will move it on: use reset state or force delete"),
    "volume_image_missing": _("the volume's image is missing"),
    "snapshot_layer_missing": _("layer of snapshot '%(name)s' is missing"),
    "backing_differs": _("backing file differs from the snapshot tree"),
    "unreadable": _("scode %(scode)s: %(message)s"),
    # reconcile findings: what was found, errors of a fix or a scope
    "file_found": _("%(size)s bytes, modified %(age)s s ago"),
    "no_file": _("no file"),
    "none": _("(none)"),
    "value_changed": _("the value changed meanwhile"),
    "pool_unavailable": _("pool directory %(path)s %(reason)s"),
    "cannot_list": _("cannot list %(path)s: %(error)s"),
    # reset state: the reasons for the proposal
    "removal_finished": _("no file of the volume is left: the removal finished"),
    "image_absent": _("the volume's image does not exist"),
    "image_unusable": _("the image is not usable: %(error)s"),
    "backing_mismatch": _("the image's backing file %(found)s differs from the tree's %(expected)s"),
    "layers_disagree": _("snapshot layers disagree with the tree: %(layers)s"),
    "image_sound": _("the image exists, is readable, has the volume's capacity and the tree's backing file"),
    "partials_left": _("partial writes left behind (reconcile removes them): %(files)s"),
    # inspection of one layer
    "layer_missing": _("missing"),
    "layer_unreadable": _("unreadable: %(error)s"),
    "layer_backing": _("backing should be %(expected)s"),
    "layer_problem": _("%(name)s: %(problem)s"),
    # refusals (RepairBlocked's reason)
    "operation_live": _(
        "operation %(uuid)s (%(kind)s) is %(state)s: wait for it or let the sweeper take it over"
    ),
    "volume_deleted": _("the volume is deleted"),
    "volume_already_deleted": _("the volume is already deleted"),
    "files_remain": _("files remain (%(files)s): use force delete to finish the removal"),
    "state_matches": _("the state already matches the files"),
    "clones_read_snapshots": _("linked clones read its snapshots: %(clones)s"),
    # why a failed operation cannot be retried (the retry preview, OperationNotRetryable's reason)
    "retry_not_failed": _("it is %(state)s, not failed"),
    "retry_undefined": _("no safe retry is defined for %(kind)s"),
    "retry_superseded": _("a newer operation exists for the same object"),
    "retry_done": _("it was retried already"),
    "retry_volume_gone": _("the volume is gone"),
    "retry_volume_state": _("the volume is %(state)s, not %(expected)s"),
    "retry_volume_busy": _("another operation on the volume is queued or running"),
    "retry_image_exists": _("an image exists for the volume: use reset state instead"),
}

# The separator of a list inside a text (the layers that disagree), per language.
_LIST_SEPARATOR = {"en": "; ", "zh-hans": "；"}


def register_texts(texts: dict) -> None:
    """Texts of an app built on volumes (its reconcile scope's findings)."""
    clash = set(texts) & set(TEXTS)
    if clash:
        raise ValueError(f"repair texts already defined: {sorted(clash)}")
    TEXTS.update(texts)


def _render(value) -> str:
    if isinstance(value, (Words, Promise)):
        return str(value)
    if isinstance(value, (list, tuple)):
        chinese = (translation.get_language() or "en").lower().startswith("zh")
        return _LIST_SEPARATOR["zh-hans" if chinese else "en"].join(_render(v) for v in value)
    return str(value)


class Words(str):
    """A repair text: `code` (a key of TEXTS) and its parameters.

    As a `str` it is its English (what --json, the audit trail, `==`, `in` and `join` see: the
    language-neutral form repairs always wrote); `str(words)` (templates) renders it in the active
    language; `.english` and `.chinese` name the language."""

    code: str
    params: dict

    def __new__(cls, code: str, **params):
        if code not in TEXTS:
            raise KeyError(f"unknown repair text {code!r}")
        with translation.override("en"):
            english = cls._text(code, params)
        words = super().__new__(cls, english)
        words.code, words.params = code, params
        return words

    @staticmethod
    def _text(code: str, params: dict) -> str:
        template = str(TEXTS[code])
        if not params:
            return template
        return template % {name: _render(value) for name, value in params.items()}

    def __str__(self) -> str:
        return self._text(self.code, self.params)

    def render(self, language: str) -> str:
        with translation.override(language):
            return str(self)

    @property
    def english(self) -> str:
        return str.__str__(self)

    @property
    def chinese(self) -> str:
        return self.render("zh-hans")

    def __repr__(self) -> str:
        return f"Words({self.code!r}, {self.params!r})"

    def __deepcopy__(self, memo):
        return self  # immutable: dataclasses.asdict copies reports holding these

    def __reduce__(self):
        return (_words, (self.code, self.params))


def _words(code, params):
    return Words(code, **params)


class ErrorWords(Words):
    """A catalogued error (scode and parameters) as a repair text, its message rendered from
    errors.py's catalogue in the reader's language."""

    def __new__(cls, error: errors.ServiceError):
        words = super().__new__(cls, "unreadable", scode=error.scode, message=error.render_message())
        words.error = error
        return words

    def __str__(self) -> str:
        chinese = (translation.get_language() or "en").lower().startswith("zh")
        message = self.error.render_message_cn() if chinese else self.error.render_message()
        return str(TEXTS["unreadable"]) % {"scode": self.error.scode, "message": message}

    def __reduce__(self):
        return (str, (self.english,))


def operation_live_words(operation) -> Words:
    """The refusal while an operation holds the object; its kind and state stored as values, shown
    as words (their choice labels) in Chinese and as the values in English."""
    return Words(
        "operation_live", uuid=operation.uuid, kind=_Choice(operation.kind), state=_Choice(operation.state)
    )


class _Choice:
    """An operation's kind or state: the stored value in English (as the API names it), its label in
    Chinese."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __str__(self) -> str:
        if not (translation.get_language() or "en").lower().startswith("zh"):
            return str(self.value)
        for choices in (OperationKind, OperationState):
            if self.value in choices.values:
                return str(choices(self.value).label)
        return str(self.value)

    def __eq__(self, other):
        return isinstance(other, _Choice) and other.value == self.value

    def __hash__(self):
        return hash(self.value)

    def __deepcopy__(self, memo):
        return self


def english(value):
    """`value` for --json and logs: Words and lazy words in English, containers walked."""
    if isinstance(value, Words):
        return value.english
    if isinstance(value, Promise):
        with translation.override("en"):
            return str(value)
    if isinstance(value, dict):
        return {k: english(v) for k, v in value.items()}
    if isinstance(value, list):
        return [english(v) for v in value]
    return value
