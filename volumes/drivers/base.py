"""The storage-driver interface. A driver knows image names and sizes in one pool, never the ORM.

Image names are relative to the pool (`volume/<uuid>`, `snapshots/<volume>/<snapshot>.qcow2`),
so a directory driver maps them to files and a Ceph RBD driver could map them to RBD images.
Every method is idempotent where the service may call it again after a crash.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

ProgressCallback = Callable[[float, int, int], None]
"""progress(percent 0-100, bytes_done, bytes_total)."""

# How a layer is folded into the one image that reads it (see docs/snapshots.md).
MERGE_REBASE = "rebase"  # safe rebase of the dependent onto the layer's backing: copies the layer's data
MERGE_COMMIT = "commit"  # commit the dependent into the layer, which then takes the dependent's name


@dataclass(frozen=True)
class ImageInfo:
    """What a driver reports about one image."""

    name: str
    format: str
    virtual_size: int
    allocated: int
    backing: str | None = None


@dataclass(frozen=True)
class ImportSource:
    """A vetted import source: its resolved path, detected format and virtual size."""

    path: str
    format: str
    virtual_size: int
    details: dict = field(default_factory=dict)


class StorageDriver(abc.ABC):
    """The control path of one pool's storage: create, import, inspect and delete images."""

    def __init__(self, root: str, pool_uuid: str | None = None):
        self.root = root
        # The pool this driver serves: check_available() verifies the pool identity marker against it.
        self.pool_uuid = str(pool_uuid) if pool_uuid else None

    @abc.abstractmethod
    def check_available(self, expected_uuid: str | None = None) -> None:
        """Raise PoolUnavailable unless the pool can be written now, PoolIdentityMismatch unless the
        directory holds the marker of `expected_uuid` (default: the driver's pool)."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the image is published (a partial write never counts)."""

    @abc.abstractmethod
    def create_volume(self, name: str, size: int) -> ImageInfo:
        """Publish an empty image of `size` bytes; if it is already published, return it."""

    @abc.abstractmethod
    def inspect_import(self, path: str, allowed_roots: list[str]) -> ImportSource:
        """Vet an untrusted file for import; raise ImportRejected with the reason."""

    @abc.abstractmethod
    def import_image(
        self, source: ImportSource, allowed_roots: list[str], name: str, size: int, progress: ProgressCallback
    ) -> ImageInfo:
        """Copy a vetted source into an independent image of `size` bytes; publish it at the end."""

    @abc.abstractmethod
    def delete_image(self, name: str) -> bool:
        """Remove the image and any partial write of it; return whether anything was removed."""

    @abc.abstractmethod
    def info(self, name: str) -> ImageInfo:
        """Format, virtual size, allocated bytes and backing of a published image."""

    @abc.abstractmethod
    def access_path(self, mount_path: str, name: str) -> str:
        """Where a host that mounts the pool at `mount_path` opens the image."""

    # -- snapshot layers (external qcow2 snapshots) --------------------------------------------------
    # Each method is resumable: after a crash at any point, calling it again with the same
    # arguments finishes the work (or raises StorageError when the files are in no state it made).

    @abc.abstractmethod
    def backing_name(self, name: str) -> str | None:
        """The image `name` is an overlay on: a name in this pool, an absolute path outside it, or None."""

    @abc.abstractmethod
    def backing_chain(self, name: str) -> list[str]:
        """`name` and every image under it, top first, read one layer at a time (never --backing-chain)."""

    @abc.abstractmethod
    def allocated_bytes(self, name: str) -> int:
        """Bytes of data allocated in this one layer (not counting its backing chain)."""

    @abc.abstractmethod
    def snapshot_freeze(self, head: str, layer: str) -> None:
        """Turn the active image `head` into the read-only `layer`; publish an empty overlay on it as head."""

    @abc.abstractmethod
    def snapshot_unfreeze(self, head: str, layer: str) -> None:
        """Undo an unfinished or unwanted freeze: `layer` becomes `head` again (the overlay holds no data)."""

    @abc.abstractmethod
    def head_reset(self, head: str, layer: str) -> None:
        """Replace `head` by an empty overlay on `layer`; what the old head held is discarded (rollback)."""

    @abc.abstractmethod
    def layer_merge(self, layer: str, dependent: str, strategy: str, progress: ProgressCallback) -> None:
        """Fold `layer` into `dependent`, the only image that reads it, then remove `layer`.

        `strategy` is MERGE_REBASE or MERGE_COMMIT; the dependent's guest-visible content never changes,
        at any point of the work.
        """

    @abc.abstractmethod
    def layer_remove(self, layer: str) -> None:
        """Remove a layer that no image reads."""

    # -- clones (docs/clones.md) ---------------------------------------------------------------------
    # A clone's base or source may live in another pool: it is passed as a reference from
    # `image_ref` of that pool's driver (a driver of the same kind), never as a bare name.

    @abc.abstractmethod
    def image_ref(self, name: str) -> str:
        """A reference to image `name` that a driver of the same kind in another pool can read or sit on."""

    @abc.abstractmethod
    def linked_clone(self, name: str, base_ref: str) -> ImageInfo:
        """Publish `name` as an empty overlay on `base_ref` in constant time (kept if it is one already)."""

    @abc.abstractmethod
    def copy_needs(self, source_ref: str) -> int:
        """Bytes an independent copy of `source_ref`'s guest-visible content needs in this pool."""

    @abc.abstractmethod
    def free_bytes(self) -> int:
        """Bytes free for new images in this pool now."""

    @abc.abstractmethod
    def flat_copy(self, source_ref: str, name: str, tag: str, progress: ProgressCallback) -> str:
        """Copy `source_ref`'s guest-visible content (its whole chain) into a new partial image for `name`.

        Returns the partial's name. Nothing looks usable until `publish_partial`; `tag` keeps the
        partials of two attempts apart, so an attempt can never publish another one's file.
        """

    @abc.abstractmethod
    def publish_partial(self, partial: str, name: str) -> None:
        """Make a finished partial the image `name`, replacing what was there in one atomic step."""

    @abc.abstractmethod
    def discard_partials(self, name: str) -> int:
        """Remove every partial image of `name` (of any attempt); return how many were removed."""
