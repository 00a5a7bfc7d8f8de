"""Reset state: propose the state the files support for a stuck volume and apply it by
compare-and-set from the state the operator saw."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC

from django.db import transaction
from django.utils import timezone

from sharestore import errors
from sharestore.core.models import Operation
from sharestore.core.services.leases import awaiting_takeover, expected_takeover_at, takeover_window_end
from sharestore.core.services.state import transition
from sharestore.error_words import operation_kind_words
from volumes.choices import EventState, SnapshotStatus
from volumes.models import Volume
from volumes.services.repair.inspection import (
    VolumeInspection,
    VolumePreview,
    cancel_stale_operations,
    live_operations,
    volume_inspect,
)
from volumes.services.repair.words import Words, english, operation_live_words

# -- reset state -------------------------------------------------------------------------------------


@dataclass
class ResetProposal(VolumePreview):
    """The state the files support for a volume, or why no reset can be proposed."""

    volume_uuid: str
    current_state: int
    proposed_state: int | None
    reasons: list[Words]
    blocked: Words | str = ""
    inspection: VolumeInspection | None = None
    live_operations: list[str] = field(default_factory=list)
    stale_operations: list[str] = field(default_factory=list)
    # An operation whose lease expired but that the sweeper may still give to a live worker: when it
    # will have had its chance, and when the reset may be tried again (ISO times, UTC).
    awaiting_operation: str = ""
    takeover_at: str = ""
    retry_at: str = ""

    @property
    def current_label(self):
        return EventState(self.current_state).label

    @property
    def proposed_label(self):
        return EventState(self.proposed_state).label if self.proposed_state is not None else ""

    def as_dict(self) -> dict:
        data = english(asdict(self))
        data["current_label"] = str(self.current_label)
        data["proposed_label"] = str(self.proposed_label)
        return data


def awaiting_takeover_error(
    volume: Volume, operations: list[Operation]
) -> errors.RepairAwaitingTakeover | None:
    """The refusal while one of `operations` (the volume's stale ones) lost its lease less than a sweep
    interval and a margin ago: the sweeper may still give it to a live worker that finishes it."""
    now = timezone.now()
    waiting = [o for o in operations if awaiting_takeover(o, now)]
    if not waiting:
        return None
    operation = max(waiting, key=lambda o: o.lease_expires_at)
    kind, kind_cn = operation_kind_words(operation.kind)
    return errors.RepairAwaitingTakeover(
        action="reset state",
        kind="volume",
        uuid=volume.uuid,
        operation=operation.uuid,
        operation_kind=kind,
        operation_kind_cn=kind_cn,
        expired_at=_iso(operation.lease_expires_at),
        takeover_at=_iso(expected_takeover_at(operation.lease_expires_at)),
        retry_at=_iso(takeover_window_end(operation.lease_expires_at)),
    )


def _iso(moment) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def reset_state_preview(*, volume: Volume, operations: tuple[list, list] | None = None) -> ResetProposal:
    """Inspect the files and propose the state they support (never a blind overwrite). `operations`:
    the volume's (live, stale) operations when the caller has just read them."""
    volume = Volume.objects.select_related("pool").get(pk=volume.pk)
    live, stale = operations if operations is not None else live_operations(volume)
    proposal = ResetProposal(
        volume_uuid=str(volume.uuid),
        current_state=volume.state,
        proposed_state=None,
        reasons=[],
        live_operations=[str(o.uuid) for o in live],
        stale_operations=[str(o.uuid) for o in stale],
    )
    if live:
        proposal.blocked = operation_live_words(live[0])
        return proposal
    waiting = awaiting_takeover_error(volume, stale)
    if waiting is not None:
        proposal.blocked = waiting.render_message()
        proposal.awaiting_operation = str(waiting.params["operation"])
        proposal.takeover_at = waiting.params["takeover_at"]
        proposal.retry_at = waiting.params["retry_at"]
        return proposal
    if volume.state == EventState.DELETED:
        proposal.blocked = Words("volume_deleted")
        return proposal
    inspection = volume_inspect(volume)
    proposal.inspection = inspection
    if volume.state == EventState.DELETING:
        remaining = [inspection.head] if inspection.head_exists else []
        remaining += [layer["layer"] for layer in inspection.layers if layer["exists"]]
        remaining += inspection.partial_files
        if remaining:
            proposal.blocked = Words("files_remain", files=", ".join(remaining))
            return proposal
        proposal.proposed_state = EventState.DELETED
        proposal.reasons.append(Words("removal_finished"))
        return proposal
    if not inspection.head_exists:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append(Words("image_absent"))
    elif inspection.head_error:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append(Words("image_unusable", error=inspection.head_error))
    elif inspection.backing != inspection.expected_backing:
        proposal.proposed_state = EventState.ERROR
        proposal.reasons.append(
            Words(
                "backing_mismatch",
                found=inspection.backing or Words("none"),
                expected=inspection.expected_backing or Words("none"),
            )
        )
    elif not inspection.layers_ok:
        proposal.proposed_state = EventState.ERROR
        bad = [
            Words("layer_problem", name=layer["name"], problem=layer["problem"])
            for layer in inspection.layers
            if not layer["ok"]
        ]
        proposal.reasons.append(Words("layers_disagree", layers=bad))
    else:
        proposal.proposed_state = EventState.AVAILABLE
        proposal.reasons.append(Words("image_sound"))
    if inspection.partial_files:
        proposal.reasons.append(Words("partials_left", files=", ".join(inspection.partial_files)))
    if proposal.proposed_state == volume.state:
        proposal.blocked = Words("state_matches")
    return proposal


def reset_state(*, actor: str, volume: Volume, expected_from: int, to_state: int) -> ResetProposal:
    """Apply the preview's proposal: inspect again, cancel stale operations, compare-and-set the state.

    Refuses with RepairPreviewStale when the state or the files changed since the preview, with
    RepairBlocked when a live operation holds the volume or nothing can be proposed, and with
    RepairAwaitingTakeover while an operation whose lease expired may still be taken over. The files are
    read before the transaction opens: no lock is held while qemu-img runs.
    """
    operations = live_operations(volume)
    waiting = awaiting_takeover_error(volume, operations[1])
    if waiting is not None:
        raise waiting
    # The same operations for the preview: read again, a lease that expired in between would make it
    # blocked by a takeover instead of refusing with 4740 above.
    proposal = reset_state_preview(volume=volume, operations=operations)
    proposal.refuse_if_blocked(volume, action="reset state")
    if proposal.current_state != expected_from or proposal.proposed_state != to_state:
        raise errors.RepairPreviewStale(
            kind="volume",
            uuid=volume.uuid,
            reason=f"now {EventState(proposal.current_state).label} -> {proposal.proposed_label}",
        )
    with transaction.atomic():
        # Under the rows' lock: an operation whose lease expired since the preview has its chance too.
        waiting = awaiting_takeover_error(volume, live_operations(volume, lock=True)[1])
        if waiting is not None:
            raise waiting
        cancel_stale_operations(volume, actor=actor, action="reset state")
        if to_state == EventState.DELETED:
            volume.snapshots.all().update(status=SnapshotStatus.DELETING, modified=timezone.now())
        transition(
            volume,
            allowed=[expected_from],
            to=to_state,
            action="volume.reset_state",
            actor=actor,
            message="; ".join(reason.english for reason in proposal.reasons),
        )
    return proposal
