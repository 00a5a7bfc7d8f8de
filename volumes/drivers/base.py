"""The storage-driver interface. A driver knows image names and sizes in one pool, never the ORM.

Image names are relative to the pool (`volume/<uuid>`, `volume/<uuid>@<snapshot>.qcow2`),
so a directory driver maps them to files and a Ceph RBD driver could map them to RBD images.
Every method is idempotent where the service may call it again after a crash.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

ProgressCallback = Callable[[float, int, int], None]
"""progress(percent 0-100, bytes_done, bytes_total)."""

Checkpoint = Callable[[], None]
"""Called by a driver between storage steps; raises to stop the work there (the work is resumable)."""

Journal = MutableMapping[str, str]
"""Where a driver records a choice before acting on it; each assignment is persisted at once, and a
re-call of the same operation (after a crash) gets the same journal back."""


@dataclass(frozen=True)
class TreeWork:
    """What every step of a tree operation carries: the operation's journal, progress and checkpoint."""

    journal: Journal
    progress: ProgressCallback
    checkpoint: Checkpoint


@dataclass(frozen=True)
class ExportOptions:
    """Which export `StorageDriver.export` writes: standalone or an overlay, compressed or not."""

    base_export: str | None = None  # an earlier export of the volume, in the target's directory
    since: str | None = None  # the snapshot image `base_export` was made from
    compress: bool = False


@dataclass(frozen=True)
class ImageInfo:
    """What a driver reports about one image."""

    name: str
    format: str
    virtual_size: int
    allocated: int
    backing: str | None = None


@dataclass(frozen=True)
class TreeSnapshot:
    """One snapshot of a volume as the service describes it to a driver: ids and readers, no ORM."""

    id: str  # the snapshot's UUID
    name: str  # its storage name, from `snapshot_name` (Snapshot.layer_name)
    parent: str | None  # the id of the snapshot it was taken on, None for a root
    hidden: bool = False  # deleted by the caller, data kept for its readers
    clones: int = 0  # live linked clones reading it
    pinned: bool = False  # a backup names it: its data must never be rewritten
    label: str = ""  # the caller's name for it, for messages


@dataclass(frozen=True)
class SnapshotTree:
    """A volume's snapshots (hidden ones too) and the snapshot its head was last taken on."""

    volume: str  # the volume's image name
    snapshots: tuple[TreeSnapshot, ...]
    head_on: str | None

    def get(self, snapshot_id: str) -> TreeSnapshot | None:
        return next((s for s in self.snapshots if s.id == snapshot_id), None)


@dataclass
class TreeChange:
    """What a tree operation did, for the service to record: which snapshots' data is gone, in order."""

    gone: list[str] = field(default_factory=list)  # ids, in the order their data went
    kept: bool = False  # the target's data must stay (readers): the service records it hidden
    damaged: list[str] = field(default_factory=list)  # ids whose data no longer holds their own content
    sizes: dict[str, int] = field(default_factory=dict)  # id -> bytes its data occupies now
    used: int = 0  # bytes the volume's head occupies now
    how: dict[str, str] = field(default_factory=dict)  # id -> how its data went (for the audit trail)
    stopped: str = ""  # why a best-effort part (collecting retained snapshots) stopped, if it did


@dataclass(frozen=True)
class SnapshotSource:
    """A snapshot to clone from: the driver of its pool, its volume's image name and its storage name."""

    driver: StorageDriver
    volume: str
    snapshot: str


@dataclass
class FlattenResult:
    """What a flatten left: whether the volume is independent now, and the sizes that changed."""

    independent: bool
    sizes: dict[str, int] = field(default_factory=dict)  # snapshot storage name -> bytes
    used: int = 0


@dataclass(frozen=True)
class ImportSource:
    """A vetted import source: its resolved path, detected format, virtual size and the bytes its copy
    needs in a pool (`needs`, what the request reserves)."""

    path: str
    format: str
    virtual_size: int
    needs: int = 0
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Extent:
    """A byte range of an image's guest-visible content."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


class ContentReader(Protocol):
    """Reads byte ranges of one image's guest-visible content (see `StorageDriver.open_reader`)."""

    size: int

    def read_many(self, ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, bytes | bytearray]]:
        """(offset, data) for each (offset, length) range, in any order."""


@dataclass(frozen=True)
class PoolSpace:
    """Total and free bytes of the storage under a pool."""

    total: int
    free: int


@dataclass(frozen=True)
class StoredObject:
    """One object a pool holds, as reconcile and the repair previews see it."""

    name: str
    partial_of: str | None = None  # the image a partial write is for; None: a published image
    size: int = 0  # bytes it occupies
    age: float = 0.0  # seconds since it last changed
    virtual_size: int | None = None
    allocated: int | None = None  # as `usage`
    backing: str | None = None  # the image of this pool it sits on (by name), or a reference outside it
    reads: tuple[str, ...] = ()  # what it reads through (as `backing`), nearest first; full inventory only
    error: Exception | None = None  # a ServiceError: reading its metadata failed

    @property
    def partial(self) -> bool:
        return self.partial_of is not None


class StorageDriver(abc.ABC):
    """The control path of one pool's storage, in domain terms: images, snapshot trees, clones, exports."""

    def __init__(self, root: str, pool_uuid: str | None = None):
        self.root = root
        # The pool this driver serves: check_available() verifies the pool identity marker against it.
        self.pool_uuid = str(pool_uuid) if pool_uuid else None

    # -- pool (docs/storage.md "Exports, usage and inventory") ------------------------------------
    # Pool validation, reconcile and the repair previews reach pool storage only through these.

    @abc.abstractmethod
    def check_available(self, expected_uuid: str | None = None) -> None:
        """Raise PoolUnavailable unless the pool can be written now, PoolIdentityMismatch unless the
        directory holds the marker of `expected_uuid` (default: the driver's pool)."""

    @abc.abstractmethod
    def mark_identity(
        self, pool_uuid: str, *, name: str = "", adopt: bool = False, force: bool = False
    ) -> bool:
        """Write the pool's identity marker at its location; whether one was written.

        `adopt` (a pool registered before markers existed) keeps a marker that is already this pool's
        and refuses another pool's, and refuses a location holding nothing unless `force`: an empty
        location is what an unmounted share looks like. Without `adopt` the marker is (re)written."""

    @abc.abstractmethod
    def validate_location(self) -> str:
        """Check that the pool's location can hold images (for pool add and edit); return its
        canonical form. Raises InvalidParameter(field="path") with the reason."""

    @abc.abstractmethod
    def space(self) -> PoolSpace:
        """Total and free bytes of the storage under the pool now (`free`: what new images may use)."""

    @abc.abstractmethod
    def inventory(self, names: Iterable[str] | None = None) -> list[StoredObject]:
        """Every object the pool holds (published images and partial writes), or only those of the
        images `names` (the images that exist and their partials). Metadata reads only."""

    @abc.abstractmethod
    def remove_object(self, name: str) -> bool:
        """Remove exactly one object `inventory` lists or a copy returned (an image, or one partial
        write), nothing else; return whether it was there. What it alone kept (an emptied directory)
        goes with it. For reconcile and for dropping one attempt's partial; services removing an
        image use `delete_image`."""

    # -- images ---------------------------------------------------------------------------------

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
        """Remove the image `name` and every partial write of it (of any attempt; see
        `discard_partials`), then what they alone kept (as `remove_object`); return whether anything
        was removed. Idempotent: the way services remove a volume's or a snapshot's image."""

    @abc.abstractmethod
    def info(self, name: str) -> ImageInfo:
        """Format, virtual size, allocated bytes (as `usage`) and backing of a published image."""

    @abc.abstractmethod
    def usage(self, name: str) -> int:
        """Bytes the image `name` (a volume's head or a snapshot) holds on its own: what changed since
        the one it was taken on; what Used and a snapshot's Size count. Never opens what it sits on."""

    @abc.abstractmethod
    def access_path(self, mount_path: str, name: str) -> str:
        """Where a host that mounts the pool at `mount_path` opens the image."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the image is published (a partial write never counts)."""

    # -- snapshot trees (docs/snapshots.md) -----------------------------------------------------
    # Domain terms that fit a file-chain store (qcow2 layers) and an object-snapshot store (RBD
    # snapshots) alike. `volume` is a volume's image name, `snapshot` a storage name from
    # `snapshot_name`; a tree names snapshots by id. Each method is resumable: called again with the
    # same arguments (and journal) after a crash at any point, it finishes the work, or raises
    # StorageError when storage is in no state it made. How data is kept, merged or hidden is the
    # driver's own business; the service records what the returned TreeChange says. A snapshot's
    # and the head's sizes are `usage`.

    @abc.abstractmethod
    def snapshot_name(self, volume: str, snapshot_id: str) -> str:
        """The storage name of a new snapshot of `volume` (pure: nothing is created)."""

    @abc.abstractmethod
    def snapshot_create(self, volume: str, snapshot: str) -> tuple[int, int]:
        """Freeze the volume's content as `snapshot`; return (snapshot bytes, head bytes)."""

    @abc.abstractmethod
    def snapshot_create_undo(self, volume: str, snapshot: str) -> None:
        """Undo an unfinished or unwanted create: the volume's content is what it was before."""

    @abc.abstractmethod
    def head_snapshot(self, volume: str) -> str | None:
        """The storage name of the snapshot the volume's head now reads from (None: none of its own)."""

    @abc.abstractmethod
    def snapshot_delete_keeps(self, tree: SnapshotTree, snapshot_id: str) -> bool:
        """Whether deleting the snapshot now must keep its data (pure: the service then hides it)."""

    @abc.abstractmethod
    def snapshot_delete(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        """Delete the snapshot's data, then collect hidden snapshots nothing needs any more (best
        effort: see `stopped`); the volume's content and every other snapshot's stay the same. `kept`:
        its data must stay (nothing was done; the service records it hidden, as
        `snapshot_delete_keeps` predicts). Raises when its data could not go."""

    @abc.abstractmethod
    def snapshot_rollback(
        self, volume: str, snapshot_id: str, tree: SnapshotTree, work: TreeWork
    ) -> TreeChange:
        """Make the volume's content the snapshot's (what the head held is discarded), then collect
        hidden snapshots it freed. `tree` is the tree before the rollback."""

    @abc.abstractmethod
    def tree_recover(
        self, volume: str, tree: SnapshotTree, *, journal: Journal, deleting: str | None = None
    ) -> TreeChange:
        """After a failed delete (of `deleting`) or rollback: finish the steps that copy nothing and say
        which snapshots' data is gone or damaged. `tree` is the tree the operation started from, with
        the head where it is now."""

    # -- clones (docs/clones.md) ---------------------------------------------------------------
    # A clone's source may live in another pool: it is passed as a SnapshotSource carrying that
    # pool's driver (of the same kind: `can_link_from`). Free space is `space().free`.

    @abc.abstractmethod
    def can_link_from(self, source: StorageDriver) -> bool:
        """Whether a linked clone in this pool can read snapshots of `source`'s pool at all."""

    @abc.abstractmethod
    def link_reachable(self, source: StorageDriver, source_mount: str, mount: str) -> bool:
        """Whether a host mounting `source`'s pool at `source_mount` and this pool at `mount` reads a
        linked clone here the way the workers do."""

    @abc.abstractmethod
    def image_ref(self, name: str) -> str:
        """How an image of another pool (of a driver of the same kind) names the image `name` it sits
        on: what `inventory` reports as the `backing` of a linked clone there (pure)."""

    @abc.abstractmethod
    def linked_clone(self, name: str, source: SnapshotSource) -> ImageInfo:
        """Publish the volume `name` reading `source` in constant time (kept if it is one already)."""

    @abc.abstractmethod
    def copy_needs(self, source: SnapshotSource) -> int:
        """Bytes an independent copy of the snapshot's content needs in this pool."""

    @abc.abstractmethod
    def full_clone(self, source: SnapshotSource, name: str, tag: str, progress: ProgressCallback) -> str:
        """Copy the snapshot's content into a new partial image for `name`; return the partial's name.

        Nothing looks usable until `publish_partial`; `tag` keeps the partials of two attempts apart,
        so an attempt can never publish another one's.
        """

    @abc.abstractmethod
    def publish_partial(self, partial: str, name: str) -> None:
        """Make a finished partial the image `name`, replacing what was there in one atomic step."""

    @abc.abstractmethod
    def discard_partials(self, name: str) -> int:
        """Remove every partial write of `name` (of any attempt) and leave the image itself alone;
        return how many were removed. Before a copy that will replace a published image (a retry's
        clean-up); to remove the image too, `delete_image`."""

    @abc.abstractmethod
    def flatten_needs(self, volume: str, tree: SnapshotTree) -> int:
        """Bytes a flatten of the linked clone `volume` needs in this pool."""

    @abc.abstractmethod
    def flatten(
        self,
        volume: str,
        tree: SnapshotTree,
        *,
        tag: str,
        progress: ProgressCallback,
        checkpoint: Checkpoint,
    ) -> FlattenResult:
        """Make the linked clone `volume` (and its snapshots) read nothing outside it; its content and
        its snapshots' stay the same. `checkpoint` runs before each publish."""

    @abc.abstractmethod
    def flatten_recover(self, volume: str, tree: SnapshotTree) -> FlattenResult:
        """After a failed flatten: discard partial copies and say what the volume reads now."""

    # -- exports and restore (docs/storage.md "Exports, usage and inventory") -------------------
    # Backups reach pool storage only through these (and the methods above). An export is a qcow2
    # file outside the pool, named by its caller: a full export is a standalone image, an incremental
    # one an overlay whose backing reference is its base export's bare file name (same directory),
    # so a directory of exports restores with plain qemu-img whatever driver wrote it. A Ceph RBD
    # driver would write them through qemu's rbd: protocol, and answer `changed_extents` with
    # `rbd diff --from-snap`.

    def export(
        self,
        image: str,
        target_path: str,
        *,
        base_export: str | None = None,
        since: str | None = None,
        compress: bool = False,
        progress: ProgressCallback,
    ) -> None:
        """Write image `image`'s guest-visible content into the new qcow2 file `target_path`.

        Without `base_export`: a standalone image. With it (an earlier export of this volume, in the
        target's directory): an overlay on it holding only the clusters whose content differs from it.
        `since` names the snapshot image that export was made from; while it exists the driver reads
        only the change since it, otherwise it compares content. Whatever `target_path` held is
        replaced; scratch files are named `target_path` + ".<suffix>" and removed before returning.
        The caller publishes the file (the driver never renames it).
        """
        options = ExportOptions(base_export=base_export, since=since, compress=compress)
        self._export(image, target_path, options, progress)

    @abc.abstractmethod
    def _export(
        self, image: str, target_path: str, options: ExportOptions, progress: ProgressCallback
    ) -> None:
        """The driver's `export`, the kind of export in one `ExportOptions`."""

    @abc.abstractmethod
    def changed_extents(self, image: str, *, since: str | None = None) -> list[Extent] | None:
        """Ranges of `image`'s content that may hold data (`since` None), or that may differ from the
        snapshot image `since`; None when the driver cannot tell the change since `since` (gone, or
        not an ancestor of `image` any more)."""

    @abc.abstractmethod
    def open_reader(self, image: str) -> contextlib.AbstractContextManager[ContentReader]:
        """A read-only reader of `image`'s guest-visible content, for as long as the context lasts."""

    @abc.abstractmethod
    def restore_export(
        self, export_path: str, name: str, size: int, tag: str, progress: ProgressCallback
    ) -> str:
        """Copy the content of the export `export_path` (with the exports it sits on) into a new
        partial image for `name` of `size` bytes; return the partial's name (see `full_clone`: nothing
        looks usable until `publish_partial`, and `tag` keeps two attempts apart)."""

    # -- content by pattern (tests and demos: the conformance suites read every image through these)

    @abc.abstractmethod
    def write_pattern(self, name: str, chunks: list[tuple[int, int, int]]) -> None:
        """Write (offset, length, byte) chunks into the volume `name` as a guest would."""

    @abc.abstractmethod
    def read_matches(self, name: str, offset: int, length: int, byte: int) -> bool:
        """Whether the guest-visible bytes of the volume or snapshot `name` at [offset, offset+length)
        all equal `byte`."""
