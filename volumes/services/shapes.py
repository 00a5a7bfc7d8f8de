"""The shape of a volume: its type, capacity and SnapCap, as a new volume is given them or takes them
from its source (a clone's source volume, a restored backup), and as a backup records them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VolumeShape:
    """A volume's type, capacity and SnapCap: what a new one is given, or takes from its source."""

    volume_type: str
    capacity: int
    snap_capacity: int

    @classmethod
    def of(cls, volume) -> VolumeShape:
        """The shape of an existing volume (a clone's source, a backed-up volume)."""
        return cls(volume_type=volume.volume_type, capacity=volume.capacity, snap_capacity=volume.snap_cap)

    @classmethod
    def of_backup(cls, backup) -> VolumeShape:
        """The shape a backup recorded of its volume: what a volume restored from it gets."""
        return cls(
            volume_type=backup.volume_type,
            capacity=backup.volume_capacity,
            snap_capacity=backup.volume_snap_cap,
        )

    def volume_fields(self) -> dict:
        """The shape as a volume row stores it."""
        return {"volume_type": self.volume_type, "capacity": self.capacity, "snap_cap": self.snap_capacity}

    def backup_fields(self) -> dict:
        """The shape as a backup row records it (the volumes app does not import the backups app)."""
        return {
            "volume_type": self.volume_type,
            "volume_capacity": self.capacity,
            "volume_snap_cap": self.snap_capacity,
        }
