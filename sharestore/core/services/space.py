"""Space reservations of copies: one rule for every copy (import, full clone, flatten, restore, backup).

A copy is accepted only if what it will write fits in the free space of where it writes, beside what
the copies already accepted there have still to write. The check and the reservation happen in the
transaction that creates the operation, with the pool's (or backup point's) row locked, so two
concurrent copies cannot both take the last bytes. The reservation is two columns of the operation
(`reserved_on`, `reserved_bytes`) counted while the operation is active (queued or running): it ends
with the operation however that ends (success, failure, cancel, a sweep that fails it), so it cannot
leak.

While a copy runs, the filesystem's free space already shows what it wrote: only the part still to
write is counted, in proportion to the operation's `bytes_done / bytes_total` (a copy that reports no
byte counts keeps its whole reservation, which errs on the side of refusing).
"""

from __future__ import annotations

from dataclasses import dataclass

from sharestore.core.choices import ACTIVE_OPERATION_STATES
from sharestore.core.models import Operation

__all__ = ["Reservation", "reserved_on", "reserved_bytes", "space_reservation"]


@dataclass(frozen=True)
class Reservation:
    """`size` bytes a new copy will write on `on` (`pool:<uuid>`, `backup-point:<uuid>`)."""

    on: str
    size: int


def reserved_on(kind: str, uuid) -> str:
    """The key a place's reservations are counted under."""
    return f"{kind}:{uuid}"


def _still_to_write(reserved: int, done: int, total: int) -> int:
    if reserved <= 0:
        return 0
    if total <= 0:
        return reserved
    return reserved - reserved * min(max(done, 0), total) // total


def reserved_bytes(on: str) -> int:
    """Bytes the active copies on `on` have still to write."""
    rows = Operation.objects.filter(reserved_on=on, state__in=ACTIVE_OPERATION_STATES).values_list(
        "reserved_bytes", "bytes_done", "bytes_total"
    )
    return sum(_still_to_write(*row) for row in rows)


def space_reservation(*, on: str, needed: int, free: int, refuse) -> Reservation:
    """The reservation of a copy of `needed` bytes on `on`, whose filesystem has `free` bytes; call with
    the place's row locked, in the transaction that creates the operation. `refuse(reserved)` returns
    the error raised when it does not fit beside the reservations already there."""
    reserved = reserved_bytes(on)
    if needed + reserved > free:
        raise refuse(reserved)
    return Reservation(on=on, size=max(int(needed), 0))
