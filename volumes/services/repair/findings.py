"""What a repair finds and reports: reconcile findings, fix actions and per-target reports (shared by
every reconcile scope, pools here and backup points in the backups app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.utils.translation import gettext_lazy as _

from volumes.services.repair.words import Words, english

# Orphans younger than this are left alone: a publish (write .tmp-, rename) and the database row
# that claims the file are not one atomic step, and a slow NFS mount can lag behind.
DEFAULT_GRACE_SECONDS = 3600

ProgressFn = Callable[[int, int, str], None]
"""progress(done, total, label): called once per file a reconcile inspects."""


class FindingKind:
    """What a reconcile finding is about (stable codes for --json; labels for the console)."""

    ORPHAN_FILE = "orphan_file"
    MISSING_FILE = "missing_file"
    CHAIN_MISMATCH = "chain_mismatch"
    SIZE_DRIFT = "size_drift"
    UNREADABLE = "unreadable_image"
    STUCK_STATE = "stuck_state"

    LABELS = {
        ORPHAN_FILE: _("orphan file"),
        MISSING_FILE: _("missing file"),
        CHAIN_MISMATCH: _("backing chain disagrees with the tree"),
        SIZE_DRIFT: _("size out of date"),
        UNREADABLE: _("unreadable image"),
        STUCK_STATE: _("stuck state"),
    }


class FixAction:
    """What `--fix` does with a finding ("" = report only)."""

    REMOVE = "remove"
    MARK_ERROR = "mark_error"
    MARK_FAILED = "mark_failed"
    REFRESH = "refresh"
    NONE = ""

    LABELS = {
        REMOVE: _("remove the file"),
        MARK_ERROR: _("mark the object as error"),
        MARK_FAILED: _("mark the backup as failed"),
        REFRESH: _("write the measured size"),
        NONE: _("report only"),
    }


class KeptReason:
    """Why `--fix` leaves a finding alone."""

    GRACE = "grace"
    BUSY = "busy"
    BACKS_IMAGE = "backs_image"

    LABELS = {
        GRACE: _("younger than the grace period"),
        BUSY: _("an operation on this object is queued or running"),
        BACKS_IMAGE: _("a referenced image uses it as backing file"),
    }


@dataclass
class Finding:
    """One disagreement between the database and the files, and what a fix does about it."""

    kind: str
    name: str
    object_type: str = ""
    object_uuid: str = ""
    detail: str = ""
    expected: str = ""
    found: str = ""
    fix: str = FixAction.NONE
    kept: str = ""
    fixed: bool = False
    error: str = ""

    @classmethod
    def missing(cls, name: str, object_type: str, obj, *, detail: str, expected: str, fix: str) -> Finding:
        """A file the row promises that is not there."""
        return cls(
            kind=FindingKind.MISSING_FILE,
            name=name,
            object_type=object_type,
            object_uuid=str(obj.uuid),
            detail=detail,
            expected=expected,
            found=Words("no_file"),
            fix=fix,
        )

    @classmethod
    def size_drift(
        cls, name: str, object_type: str, obj, *, detail: str, expected: int, found: int
    ) -> Finding:
        """A size the row records that differs from the one measured; a fix writes the measured one."""
        return cls(
            kind=FindingKind.SIZE_DRIFT,
            name=name,
            object_type=object_type,
            object_uuid=str(obj.uuid),
            detail=detail,
            expected=str(expected),
            found=str(found),
            fix=FixAction.REFRESH,
        )

    @property
    def fixable(self) -> bool:
        return bool(self.fix) and not self.kept

    @property
    def kind_label(self):
        return FindingKind.LABELS.get(self.kind, self.kind)

    @property
    def fix_label(self):
        return FixAction.LABELS.get(self.fix, self.fix)

    @property
    def kept_label(self):
        return KeptReason.LABELS.get(self.kept, self.kept)


@dataclass
class ReconcileReport:
    """What reconcile found (and, with fix, did) in one pool or backup point."""

    scope: str
    uuid: str
    name: str
    path: str
    fix: bool
    files_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""

    @property
    def remaining(self) -> list[Finding]:
        """Findings still true after this run (all of them in a dry run)."""
        return [f for f in self.findings if not f.fixed]

    @property
    def fixable_count(self) -> int:
        return sum(1 for f in self.findings if f.fixable)

    def as_dict(self) -> dict:
        """The report for --json: its texts in English (the console renders them in its reader's)."""
        data = english(asdict(self))
        data["remaining"] = len(self.remaining)
        return data
