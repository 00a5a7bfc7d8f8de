"""The words of the phases operations write (`Operation.phase`), for the console.

The runner stores the phase in English, as the API returns it (`Phase`); the console shows it in
the reader's language from this table, keyed by the stored phase. A phase carrying a value
(`copying 2 of 3`, `merging into backup <uuid>`) is keyed by its template: its literal words around
`{name}` fields, read back field by field (`str.partition`, no pattern matching on prose). A phase
the table does not know is shown as stored.

Adding a phase: write it through `reporter.phase(...)`, add it here (the template's fields named as
the call site formats them), then its zh_Hans entry to locale/zh_Hans/LC_MESSAGES/django.po
(`msgctxt "operation phase"`); tests/admin/test_zh_complete.py checks both.
"""

from __future__ import annotations

import string

from django.utils.translation import pgettext_lazy

# Stored phase -> its words. Context "operation phase": "copying", "publishing" or "done" mean a
# step of work here, not a state or a button.
PHASES = {
    "done": pgettext_lazy("operation phase", "done"),
    "copying": pgettext_lazy("operation phase", "copying"),
    "creating image": pgettext_lazy("operation phase", "creating image"),
    "removing files": pgettext_lazy("operation phase", "removing files"),
    "measuring": pgettext_lazy("operation phase", "measuring"),
    "publishing": pgettext_lazy("operation phase", "publishing"),
    "linking": pgettext_lazy("operation phase", "linking"),
    "taking the snapshot": pgettext_lazy("operation phase", "taking the snapshot"),
    "deleting the snapshot's data": pgettext_lazy("operation phase", "deleting the snapshot's data"),
    "snapshotting the current state": pgettext_lazy("operation phase", "snapshotting the current state"),
    "rolling back": pgettext_lazy("operation phase", "rolling back"),
    "checking the backup files": pgettext_lazy("operation phase", "checking the backup files"),
    "hashing every chunk of the backup's content": pgettext_lazy(
        "operation phase", "hashing every chunk of the backup's content"
    ),
    "copying the backup into the volume": pgettext_lazy(
        "operation phase", "copying the backup into the volume"
    ),
    "removing the file": pgettext_lazy("operation phase", "removing the file"),
    "written before an interruption": pgettext_lazy("operation phase", "written before an interruption"),
    "writing a full backup": pgettext_lazy("operation phase", "writing a full backup"),
    "writing an incremental backup": pgettext_lazy("operation phase", "writing an incremental backup"),
    "hashing the changed chunks": pgettext_lazy("operation phase", "hashing the changed chunks"),
}

# Phases with values: the template as the call site formats it -> its words (%-placeholders).
PHASE_TEMPLATES = {
    "copying {n} of {total}": pgettext_lazy("operation phase", "copying %(n)s of %(total)s"),
    "merging into backup {uuid}": pgettext_lazy("operation phase", "merging into backup %(uuid)s"),
    # volumes.services.hosts.WAITING_PREFIX: the operation waits for a worker that mounts the pool.
    "waiting for a host that mounts pool {pools}": pgettext_lazy(
        "operation phase", "waiting for a host that mounts pool %(pools)s"
    ),
}


def _read(template: str, stored: str) -> dict[str, str] | None:
    """The values of `template`'s fields in `stored`, or None when `stored` is not of that template."""
    values: dict[str, str] = {}
    rest = stored
    pending: str | None = None  # the field whose value runs up to the next literal
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        if literal:
            if pending is None:
                if not rest.startswith(literal):
                    return None
                rest = rest[len(literal) :]
            else:
                value, found, after = rest.partition(literal)
                if not found or not value:
                    return None
                values[pending], rest, pending = value, after, None
        if field is not None:
            pending = field
    if pending is not None:
        if not rest:
            return None
        values[pending], rest = rest, ""
    return values if not rest else None


def phase_words(stored: str) -> str:
    """The stored phase in the active language (as stored when the table does not know it)."""
    if not stored:
        return ""
    words = PHASES.get(stored)
    if words is not None:
        return str(words)
    for template, words in PHASE_TEMPLATES.items():
        values = _read(template, stored)
        if values is not None:
            return str(words) % values
    return stored
