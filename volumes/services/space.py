"""Space reservations in pools: the pool side of `sharestore.core.services.space` (one rule for every
copy into a pool: import, full clone, flatten, restore)."""

from __future__ import annotations

from sharestore import errors
from sharestore.core.services.space import Reservation, reserved_bytes, reserved_on, space_reservation
from volumes.drivers import get_driver
from volumes.models import Pool


def pool_reserved(pool: Pool) -> int:
    """Bytes the active copies into `pool` have still to write."""
    return reserved_bytes(reserved_on("pool", pool.uuid))


def pool_reservation(pool: Pool, needed: int) -> Reservation:
    """Reserve `needed` bytes in `pool` for a new copy, or refuse it at once (5201) when the pool's
    filesystem cannot hold it beside the copies already accepted there. Call in the transaction that
    creates the copy's operation: the pool's row stays locked until it commits."""
    Pool.objects.select_for_update().filter(pk=pool.pk).first()
    free = get_driver(pool.driver, pool.path, str(pool.uuid)).space().free
    return space_reservation(
        on=reserved_on("pool", pool.uuid),
        needed=needed,
        free=free,
        refuse=lambda reserved: errors.PoolSpaceShort(
            pool=pool.name, free=free, reserved=reserved, needed=needed
        ),
    )
