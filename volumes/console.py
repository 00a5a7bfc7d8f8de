"""Reads and formatting for the operator console: the per-volume page's data in a bounded number
of queries, bytes and bars, and errors in the reader's language from the one scode catalogue."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import lru_cache

from django.db.models import Count, Q
from django.utils.translation import get_language

from sharestore.errors import CATALOGUE
from volumes.choices import LIVE_STATES
from volumes.models import Snapshot, Volume

REPAIR_PERMISSION = "volumes.run_repairs"


def can_run_repairs(user) -> bool:
    """Superusers, and holders of `volumes.run_repairs` (superusers pass every has_perm)."""
    return bool(user and user.is_active and user.is_staff and user.has_perm(REPAIR_PERMISSION))


# -- bytes and bars ----------------------------------------------------------------------------------


def human_bytes(value) -> str:
    """1536 -> '1.5 KiB' (binary units, as capacities are given)."""
    if value is None or value == "":
        return "-"
    value = int(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{sign}{value} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} PiB"


def percent(part, whole) -> float:
    if not whole:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(part or 0) / float(whole)))


# -- errors in the reader's language ------------------------------------------------------------------

_FIELD_RE = re.compile(r"\{(\w+)(![rsa])?(:[^{}]*)?\}")
_SCODE_PREFIX_RE = re.compile(r"^scode (\d+): (.*)$", re.S)


class _Params(dict):
    """Format parameters; a missing `<x>_cn` falls back to `<x>` (English detail beats a placeholder)."""

    def __missing__(self, key):
        if key.endswith("_cn") and key[:-3] in self:
            return self[key[:-3]]
        return "{" + key + "}"


@lru_cache(maxsize=256)
def _template_regex(template: str) -> tuple[re.Pattern, tuple[tuple[str, str | None], ...]]:
    parts, fields, seen, position = [], [], set(), 0
    for match in _FIELD_RE.finditer(template):
        parts.append(re.escape(template[position:match.start()]))
        name, conversion = match.group(1), match.group(2)
        if name in seen:
            parts.append(f"(?P={name})")
        else:
            parts.append(f"(?P<{name}>.*?)")
            seen.add(name)
            fields.append((name, conversion))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("^" + "".join(parts) + "$", re.S), tuple(fields)


def catalogue_params(scode: int, message: str) -> dict | None:
    """Recover the parameters of a rendered English catalogue message (None if it does not fit)."""
    cls = CATALOGUE.get(scode)
    if cls is None:
        return None
    pattern, fields = _template_regex(cls.message)
    match = pattern.match(message or "")
    if match is None:
        return None
    params = _Params()
    for name, conversion in fields:
        value = match.group(name)
        if conversion == "!r":
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        params[name] = value
    return params


def localized_error(scode: int | None, message: str, language: str | None = None) -> str:
    """The message in the reader's language: Chinese readers get the catalogue's `message_cn`."""
    if not scode:
        return message
    language = (language or get_language() or "en").lower()
    if not language.startswith("zh"):
        return message
    cls = CATALOGUE.get(int(scode))
    if cls is None:
        return message
    params = catalogue_params(int(scode), message)
    if params is None:
        return message
    return cls.message_cn.format_map(params)


def localized_event_message(message: str, language: str | None = None) -> str:
    """Audit messages of failures read 'scode N: <message>'; translate the message part."""
    match = _SCODE_PREFIX_RE.match(message or "")
    if not match:
        return message
    scode = int(match.group(1))
    return f"scode {scode}: {localized_error(scode, match.group(2), language)}"


# -- the per-volume page ------------------------------------------------------------------------------


@dataclass
class TreeNode:
    """One snapshot in the page's tree, with its children, linked clones and whether head sits on it."""

    snapshot: Snapshot
    children: list[TreeNode] = field(default_factory=list)
    clones: list[Volume] = field(default_factory=list)
    head_here: bool = False


@dataclass
class VolumePage:
    """Everything the per-volume page shows besides the volume's own fields."""

    roots: list[TreeNode]
    head_at_root: bool
    snapshot_count: int
    clones: list[Volume]
    backups: list
    events: list
    operations: list


def volume_page(volume: Volume, *, event_limit: int = 200, operation_limit: int = 50, backup_limit: int = 100) -> VolumePage:
    """The snapshot tree, clones, backups and timeline of one volume (a fixed number of queries)."""
    snapshots = list(
        volume.snapshots.annotate(
            live_clone_count=Count("linked_clones", filter=Q(linked_clones__state__in=LIVE_STATES))
        ).order_by("created", "id")
    )
    nodes = {s.pk: TreeNode(snapshot=s) for s in snapshots}
    roots: list[TreeNode] = []
    for snapshot in snapshots:
        node = nodes[snapshot.pk]
        node.head_here = snapshot.pk == volume.current_snapshot_id
        parent = nodes.get(snapshot.parent_id) if snapshot.parent_id else None
        (parent.children if parent else roots).append(node)
    clones = list(
        Volume.objects.filter(Q(parent_snapshot__volume=volume) | Q(source_volume=volume))
        .exclude(pk=volume.pk)
        .select_related("parent_snapshot", "pool")
        .order_by("created", "id")
    )
    for clone in clones:
        if clone.parent_snapshot_id in nodes:
            nodes[clone.parent_snapshot_id].clones.append(clone)
    # Backups live in another app that depends on this one: reach them through the reverse relation.
    related_backups = getattr(volume, "backups", None)
    backups = (
        list(related_backups.select_related("backup_point").order_by("-created", "-id")[:backup_limit])
        if related_backups is not None
        else []
    )
    events = list(volume.events.select_related("operation").order_by("-created", "-id")[:event_limit])
    operations = list(volume.operations.order_by("-created", "-id")[:operation_limit])
    return VolumePage(
        roots=roots,
        head_at_root=volume.current_snapshot_id is None or volume.current_snapshot_id not in nodes,
        snapshot_count=len(snapshots),
        clones=clones,
        backups=backups,
        events=events,
        operations=operations,
    )
