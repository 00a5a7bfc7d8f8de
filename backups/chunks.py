"""Chunk indexes of backups: SHA-256 per fixed-size chunk of the guest-visible content.

As Proxmox Backup Server's fixed index: the content is cut into `CHUNK_SIZE` chunks (the last one
may be shorter), each chunk's SHA-256 is kept in an index file beside the backup file
(`<backup uuid>.qcow2.fidx`), and the SHA-256 of the whole index file is the backup's `checksum`
in the database, which also guards the index file itself.

The cost follows the data, not the capacity: a full backup reads only the chunks that the source's
map shows holding data (the others get the all-zero chunk's digest without a read); an incremental
one starts from its base's index and re-reads only the chunks that its own file's layer allocates,
because everywhere else it reads through to its base, whose digests are known. Verification reads
the backup's whole chain again and compares every chunk. A snapshot in a pool is read through its
driver (`changed_extents`, `open_reader`); backup files, which this app owns, through the engine
module `volumes.drivers.nbd` (qemu-img map, qemu-nbd).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sharestore import errors
from volumes.drivers import StorageDriver, nbd, qemu
from volumes.drivers.base import Extent

CHUNK_SIZE = 4 << 20
INDEX_SUFFIX = ".fidx"
MAGIC = b"SSFIDX01"
HEADER = struct.Struct("<8sQQQ")  # magic, chunk size, virtual size, chunk count
DIGEST_SIZE = 32
ZERO_CHUNK_DIGEST = hashlib.sha256(bytes(CHUNK_SIZE)).digest()

Progress = Callable[[float], None]


def _no_progress(_percent: float) -> None:
    return None


def zero_digest(length: int) -> bytes:
    """SHA-256 of `length` zero bytes (the well-known full-size one is precomputed)."""
    return ZERO_CHUNK_DIGEST if length == CHUNK_SIZE else hashlib.sha256(bytes(length)).digest()


@dataclass
class ChunkIndex:
    """Per-chunk SHA-256 digests of an image's guest-visible content."""

    virtual_size: int
    digests: list[bytes]
    chunk_size: int = CHUNK_SIZE

    @property
    def count(self) -> int:
        return len(self.digests)

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.virtual_size - index * self.chunk_size)

    def to_bytes(self) -> bytes:
        return HEADER.pack(MAGIC, self.chunk_size, self.virtual_size, self.count) + b"".join(self.digests)

    def digest(self) -> str:
        """SHA-256 over the index (header included): one value that stands for the whole content."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ChunkIndex:
        if len(raw) < HEADER.size:
            raise errors.StorageError(reason="chunk index is truncated")
        magic, chunk_size, virtual_size, count = HEADER.unpack_from(raw)
        if magic != MAGIC or chunk_size <= 0 or count != chunk_count(virtual_size, chunk_size):
            raise errors.StorageError(reason="chunk index header is not valid")
        body = raw[HEADER.size :]
        if len(body) != count * DIGEST_SIZE:
            raise errors.StorageError(reason="chunk index length does not match its header")
        digests = [body[i : i + DIGEST_SIZE] for i in range(0, len(body), DIGEST_SIZE)]
        return cls(virtual_size=virtual_size, digests=digests, chunk_size=chunk_size)


@dataclass
class IndexStats:
    """What computing or checking an index cost: chunks read and hashed, reused, or known zero."""

    chunks: int = 0
    read: int = 0
    reused: int = 0
    zero: int = 0
    bytes_read: int = 0
    mismatched: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "chunks": self.chunks,
            "read": self.read,
            "reused": self.reused,
            "zero": self.zero,
            "bytes_read": self.bytes_read,
        }


def chunk_count(virtual_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    return -(-virtual_size // chunk_size)


def _chunks_of(extents: Iterable[nbd.Extent | Extent], chunk_size: int) -> set[int]:
    """Indexes of the chunks that overlap any of the extents."""
    chunks: set[int] = set()
    for extent in extents:
        if extent.length > 0:
            chunks.update(range(extent.start // chunk_size, (extent.end - 1) // chunk_size + 1))
    return chunks


def _size_of(extents: list[nbd.Extent]) -> int:
    return extents[-1].end if extents else 0


def _hash_chunks(
    open_reader: Callable[[], contextlib.AbstractContextManager],
    label: str,
    index: ChunkIndex,
    wanted: list[int],
    stats: IndexStats,
    progress: Progress,
) -> dict[int, bytes]:
    """Read the wanted chunks of an image's guest-visible content (through its chain) and hash each."""
    found: dict[int, bytes] = {}
    if not wanted:
        return found
    size = index.chunk_size
    with open_reader() as client:
        if client.size != index.virtual_size:
            raise errors.StorageError(
                reason=f"{label} serves {client.size} bytes, its map shows {index.virtual_size}"
            )
        ranges = ((i * size, index.chunk_length(i)) for i in wanted)
        for done, (offset, data) in enumerate(client.read_many(ranges), 1):
            found[offset // size] = hashlib.sha256(data).digest()
            stats.read += 1
            stats.bytes_read += len(data)
            if done % 64 == 0:
                progress(100.0 * done / len(wanted))
    progress(100.0)
    return found


def _file_reader(path: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A backup file of the backup point, read through `qemu-nbd` (the engine)."""
    return lambda: nbd.serve(path)


def _image_reader(driver: StorageDriver, image: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A snapshot image of a pool, read through its driver (never by path)."""
    return lambda: driver.open_reader(image)


def index_full(
    driver: StorageDriver, image: str, *, progress: Progress = _no_progress
) -> tuple[ChunkIndex, IndexStats]:
    """The index of pool image `image`'s content, reading only chunks that may hold data (a full
    backup's index): the driver's `changed_extents` with no base lists them."""
    size = driver.info(image).virtual_size
    extents = driver.changed_extents(image) or []
    index = ChunkIndex(virtual_size=size, digests=[b""] * chunk_count(size))
    wanted = sorted(i for i in _chunks_of(extents, index.chunk_size) if i < index.count)
    stats = IndexStats(chunks=index.count)
    found = _hash_chunks(_image_reader(driver, image), image, index, wanted, stats, progress)
    for i in range(index.count):
        if i in found:
            index.digests[i] = found[i]
        else:
            index.digests[i] = zero_digest(index.chunk_length(i))
            stats.zero += 1
    return index, stats


def index_incremental(
    driver: StorageDriver,
    image: str,
    layer: str,
    base: ChunkIndex,
    *,
    also: Iterable[Extent] = (),
    progress: Progress = _no_progress,
) -> tuple[ChunkIndex, IndexStats]:
    """The index of an incremental backup's content, from its base's index.

    `layer` is the incremental backup file (an overlay on the base backup): outside what its own
    layer allocates it reads exactly its base, so those chunks keep the base's digests. The chunks
    it does allocate (data or zero clusters), and those overlapping `also` (the source-side
    changes, when the driver knows them), are read from pool image `image`, the snapshot the backup
    was made from: a backup written wrong there, or missing a change, then fails its verification.
    """
    extents = nbd.image_map(layer, layer_only=True)
    size = _size_of(extents)
    index = ChunkIndex(virtual_size=size, digests=[b""] * chunk_count(size), chunk_size=base.chunk_size)
    changed = _chunks_of([*(e for e in extents if e.present), *also], index.chunk_size)
    changed = {i for i in changed if i < index.count}
    stats = IndexStats(chunks=index.count)
    wanted = []
    for i in range(index.count):
        if i in changed:
            wanted.append(i)
        elif i < base.count and base.chunk_length(i) == index.chunk_length(i):
            index.digests[i] = base.digests[i]
            stats.reused += 1
        elif i * index.chunk_size >= base.virtual_size:
            # Grown beyond the base and not allocated here: the overlay reads zeros.
            index.digests[i] = zero_digest(index.chunk_length(i))
            stats.zero += 1
        else:
            wanted.append(i)  # the base's last chunk, cut at another length after a resize
    found = _hash_chunks(_image_reader(driver, image), image, index, wanted, stats, progress)
    for i in wanted:
        index.digests[i] = found[i]
    return index, stats


def check_content(
    path: str, expected: ChunkIndex, *, progress: Progress = _no_progress
) -> tuple[ChunkIndex, IndexStats]:
    """Recompute every chunk digest of the image's content (its whole chain) and compare.

    Chunks that the chain's map shows reading as zeros are not read: qemu would return zeros for
    them, so their digest is the zero chunk's; a flipped byte in metadata that hides data shows up
    as such a zero chunk where the index expects data. Returns the recomputed index and the stats,
    whose `mismatched` lists the chunks that differ.
    """
    extents = nbd.image_map(path)
    size = _size_of(extents)
    found = ChunkIndex(virtual_size=size, digests=[], chunk_size=expected.chunk_size)
    stats = IndexStats(chunks=chunk_count(size, expected.chunk_size))
    if size != expected.virtual_size:
        stats.mismatched = list(range(expected.count))
        return found, stats
    wanted = sorted(_chunks_of((e for e in extents if not e.zero), expected.chunk_size))
    read = _hash_chunks(_file_reader(path), path, expected, wanted, stats, progress)
    for i in range(expected.count):
        digest = read.get(i)
        if digest is None:
            digest = zero_digest(expected.chunk_length(i))
            stats.zero += 1
        found.digests.append(digest)
        if digest != expected.digests[i]:
            stats.mismatched.append(i)
    return found, stats


def content_sha256(path: str, *, progress: Progress = _no_progress) -> str:
    """SHA-256 of the whole guest-visible content, zeros included: the checksum backups recorded
    before chunk indexes existed, so their verification still has something to compare."""
    extents = nbd.image_map(path)
    size = _size_of(extents)
    shape = ChunkIndex(virtual_size=size, digests=[])
    count = chunk_count(size)
    wanted = sorted(_chunks_of((e for e in extents if not e.zero), CHUNK_SIZE))
    digest = hashlib.sha256()
    waiting: dict[int, bytes | bytearray] = {}
    following = 0  # the next chunk to feed: replies may come out of order

    def feed_until(limit: int) -> int:
        nonlocal following
        while following < limit:
            if following in waiting:
                digest.update(waiting.pop(following))
            elif following in wanted_set:
                break
            else:
                digest.update(bytes(shape.chunk_length(following)))
            following += 1
        return following

    wanted_set = set(wanted)
    if wanted:
        with nbd.serve(path) as client:
            ranges = ((i * CHUNK_SIZE, shape.chunk_length(i)) for i in wanted)
            for offset, data in client.read_many(ranges):
                waiting[offset // CHUNK_SIZE] = data
                feed_until(count)
                progress(100.0 * following / count)
    feed_until(count)
    return digest.hexdigest()


def files_holding(path: str, chain: list[str], chunk: int, chunk_size: int = CHUNK_SIZE) -> list[str]:
    """Which files of a chain (top first) hold data in the given chunk: where to look for a bad byte."""
    start, end = chunk * chunk_size, (chunk + 1) * chunk_size
    depths = {e.depth for e in nbd.image_map(path) if e.present and e.start < end and e.end > start}
    return [chain[d] for d in sorted(depths) if d < len(chain)]


@dataclass
class Verification:
    """What re-hashing a backup found: the recomputed checksum, a failure reason or None, the cost."""

    found: str
    failure: str | None
    stats: IndexStats


def verify(
    store, name: str, checksum: str, chain: list[str], *, progress: Progress = _no_progress
) -> Verification:
    """Recompute the content digests of backup file `name` (whole chain) against its recorded index.

    `checksum` is the backup's recorded one; `chain` its files, top first (to name where a bad chunk
    lies). A backup taken before chunk indexes existed has no index file and a whole-content SHA-256
    as its checksum: that is recomputed instead.
    """
    if not checksum:
        return Verification("", "no checksum was recorded at backup time", IndexStats())
    path = store.path(name)
    if not has_index(store, name):
        found = content_sha256(path, progress=progress)
        failure = (
            None
            if found == checksum
            else f"no chunk index, and content sha256 {found} differs from {checksum}"
        )
        return Verification(found, failure, IndexStats())
    index = load_index(store, name, checksum)
    if index is None:
        reason = f"chunk index {index_name(name)} does not match the recorded digest {checksum}"
        return Verification("", reason, IndexStats())
    found, stats = check_content(path, index, progress=progress)
    if not stats.mismatched:
        return Verification(found.digest(), None, stats)
    first = stats.mismatched[0]
    suspects = files_holding(path, chain, first, index.chunk_size)
    failure = (
        f"{len(stats.mismatched)} of {index.count} chunks differ from the index recorded at backup time "
        f"(first: chunk {first} at byte {first * index.chunk_size}, "
        f"held by {', '.join(suspects) or 'no file: reads as zeros'})"
    )
    return Verification(found.digest(), failure, stats)


# -- the index file beside the backup file ----------------------------------------------------------


def index_name(name: str) -> str:
    return name + INDEX_SUFFIX


def save_index(store, name: str, index: ChunkIndex) -> None:
    """Write the index of backup file `name` under a temporary name, fsync, rename (the qemu layer's publish)."""
    tmp = store.tmp_path(index_name(name))  # this attempt's own name (`.tmp-<name>.fidx.op12-a3`)
    try:
        with open(tmp, "wb") as handle:
            handle.write(index.to_bytes())
        qemu.publish(tmp, store.path(index_name(name)))
    except BaseException:
        qemu.unlink(tmp)
        raise


def load_index(store, name: str, expected_digest: str) -> ChunkIndex | None:
    """The index of backup file `name` if it exists and its digest is the recorded one, else None."""
    try:
        with open(store.path(index_name(name)), "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    if not expected_digest or hashlib.sha256(raw).hexdigest() != expected_digest:
        return None
    return ChunkIndex.from_bytes(raw)


def has_index(store, name: str) -> bool:
    return os.path.exists(store.path(index_name(name)))


def remove_index(store, name: str) -> None:
    """Remove the index of backup file `name` and any partial write of it (of any attempt)."""
    store.remove_partials(index_name(name))
    qemu.unlink(store.path(index_name(name)))
