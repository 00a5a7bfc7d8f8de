"""Chunk indexes of backups on real images: each index equals a from-scratch hashing of the restored
content, an incremental re-reads only the chunks its file allocates, and verification finds one
flipped byte in a full and in an incremental backup file."""

# Fixtures are imported from test_backups and named as test arguments, which F811 misreads.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import json
import os

import pytest

from backups import choices, chunks
from backups.models import Backup
from backups.services.delete import backup_delete
from backups.services.verify import backup_verify
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.choices import OperationKind, OperationState
from sharestore.core.models import Operation
from tests.helpers import qemu_img
from tests.services.test_backups import (  # noqa: F401 - fixtures used by name
    MiB,
    backup,
    backup_file,
    chain,
    make_volume,
    point,
    run_tasks,
    scope,
    snap,
    write,
)
from volumes.drivers.qcow2 import Qcow2DirectoryDriver

CHUNK = chunks.CHUNK_SIZE


def reference_digests(image: str, tmp_path, label: str) -> list[bytes]:
    """SHA-256 of each 4 MiB chunk of the image's guest-visible content, from a raw copy read in Python."""
    raw = str(tmp_path / f"raw-{label}.img")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", image, raw)
    digests = []
    with open(raw, "rb") as handle:
        while block := handle.read(CHUNK):
            digests.append(hashlib.sha256(block).digest())
    os.unlink(raw)
    return digests


def index_of(b: Backup) -> chunks.ChunkIndex:
    index = chunks.load_index(BackupStore(b.backup_point.path), b.file_name, b.checksum)
    assert index is not None, f"{b.name} has no index matching its checksum"
    return index


def chunk_stats(b: Backup) -> dict:
    operation = Operation.objects.get(target_uuid=b.uuid, kind=OperationKind.BACKUP_CREATE)
    assert operation.state == OperationState.SUCCEEDED, operation.error_message
    return operation.params["chunks"]


def flip_byte(path: str, *, at: int | None = None) -> int:
    """Invert one byte inside a data cluster that this file itself holds (the one at guest offset `at`,
    or 4 KiB into its first data extent); return its guest offset."""
    extents = json.loads(qemu_img("map", "-f", "qcow2", "--output=json", path).stdout)
    held = [e for e in extents if e["data"] and e["depth"] == 0 and "offset" in e]
    if at is None:
        at = held[0]["start"] + 4096
    extent = next(e for e in held if e["start"] <= at < e["start"] + e["length"])
    with open(path, "r+b") as handle:
        handle.seek(extent["offset"] + at - extent["start"])
        byte = handle.read(1)
        handle.seek(extent["offset"] + at - extent["start"])
        handle.write(bytes([byte[0] ^ 0xFF]))
    return at


def test_each_index_equals_hashing_the_restored_content(chain, tmp_path):
    for index_no, (b, ref) in enumerate(zip(chain["backups"], chain["refs"], strict=True)):
        index = index_of(b)
        assert index.chunk_size == CHUNK and index.virtual_size == b.volume_capacity
        assert index.digests == reference_digests(ref, tmp_path, f"s{index_no}"), f"index of b{index_no}"
        # The recorded checksum is the index's digest: equal content, equal checksum.
        assert b.checksum == index.digest()
        # ... and the backup file's own content hashes the same (what verification recomputes).
        assert index.digests == reference_digests(backup_file(b), tmp_path, f"b{index_no}")


def test_an_incremental_rehashes_only_the_chunks_its_file_holds(scope, point, tmp_path):
    volume = make_volume(scope, capacity=64 * MiB)  # 16 chunks
    write(volume, f"write -P 1 0 {40 * MiB}")  # chunks 0-9 hold data, 10-15 were never written
    s1 = snap(volume, "s1")
    full = backup(volume, s1, point, name="full", compress=False)
    assert chunk_stats(full) == {"chunks": 16, "read": 10, "reused": 0, "zero": 6, "bytes_read": 40 * MiB}
    # One small write in chunk 3, one zeroing in chunk 7, one write in the never-written chunk 12.
    write(
        volume,
        f"write -P 2 {3 * CHUNK + 4096} 4k",
        f"write -z {7 * CHUNK} 64k",
        f"write -P 3 {12 * CHUNK} 64k",
    )
    s2 = snap(volume, "s2")
    incremental = backup(volume, s2, point, name="inc", compress=True)
    assert incremental.base_id == full.pk
    assert chunk_stats(incremental) == {
        "chunks": 16,
        "read": 3,
        "reused": 13,
        "zero": 0,
        "bytes_read": 3 * CHUNK,
    }
    assert index_of(incremental).digests == reference_digests(backup_file(incremental), tmp_path, "inc")
    assert [
        i
        for i, (a, b) in enumerate(zip(index_of(full).digests, index_of(incremental).digests, strict=True))
        if a != b
    ] == [3, 7, 12]
    # Nothing changed: nothing is read.
    s3 = snap(volume, "s3")
    same = backup(volume, s3, point, name="same")
    assert chunk_stats(same)["read"] == 0 and same.checksum == incremental.checksum


def test_a_base_without_a_usable_index_gives_a_full_hashing_once(scope, point, tmp_path):
    volume = make_volume(scope, capacity=16 * MiB)
    write(volume, f"write -P 1 0 {8 * MiB}")
    first = backup(volume, snap(volume, "s1"), point, name="first")
    # A backup taken before chunk indexes existed has no index file (and a whole-content checksum).
    store = BackupStore(point.path)
    os.unlink(store.path(chunks.index_name(first.file_name)))
    write(volume, "write -P 2 0 4k")
    second = backup(volume, snap(volume, "s2"), point, name="second")
    assert second.status == choices.BackupStatus.COMPLETED and second.base_id == first.pk
    assert chunk_stats(second)["read"] == 2 and chunk_stats(second)["reused"] == 0
    assert index_of(second).digests == reference_digests(backup_file(second), tmp_path, "second")


def test_verification_reports_a_flipped_byte_in_a_full_and_in_an_incremental_file(chain):
    b0, b1, b2, b3 = (Backup.objects.get(pk=b.pk) for b in chain["backups"][:4])
    assert not b0.compressed and not b2.compressed  # plain data clusters: a byte can be found and flipped
    for b in (b0, b2, b3):
        assert backup_verify(actor="test", backup=b).result == choices.VerifyResult.OK
    # One byte of the full backup's file, at 5 MiB: no later backup of the chain overwrote it.
    offset = flip_byte(backup_file(b0), at=5 * MiB + 123)
    for b in (b0, b3):
        verification = backup_verify(actor="test", backup=b)
        assert verification.result == choices.VerifyResult.FAILED and verification.scode == 5302
        assert f"chunk {offset // CHUNK} at byte {offset // CHUNK * CHUNK}" in verification.message
        assert b0.file_name in verification.message
        assert verification.checksum_found and verification.checksum_found != b.checksum
    flip_byte(backup_file(b0), at=5 * MiB + 123)  # back as it was
    assert backup_verify(actor="test", backup=b3).result == choices.VerifyResult.OK
    # One byte of an incremental file: it and its dependents fail, its base does not.
    offset = flip_byte(backup_file(b2))
    for b in (b2, b3):
        verification = backup_verify(actor="test", backup=b)
        assert verification.result == choices.VerifyResult.FAILED, b.name
        assert "1 of 8 chunks differ" in verification.message
        assert f"chunk {offset // CHUNK} " in verification.message and b2.file_name in verification.message
    for b in (b0, b1):
        assert backup_verify(actor="test", backup=b).result == choices.VerifyResult.OK


def test_a_tampered_index_file_fails_verification(chain):
    b1 = Backup.objects.get(pk=chain["backups"][1].pk)
    path = BackupStore(b1.backup_point.path).path(chunks.index_name(b1.file_name))
    with open(path, "r+b") as handle:
        handle.seek(chunks.HEADER.size)
        handle.write(b"\x00")
    verification = backup_verify(actor="test", backup=b1)
    assert verification.result == choices.VerifyResult.FAILED and "does not match" in verification.message


def test_deleting_a_backup_removes_its_index_and_its_dependent_still_verifies(chain):
    b0, b1 = chain["backups"][0], chain["backups"][1]
    store = BackupStore(b0.backup_point.path)
    with run_tasks():
        operation = backup_delete(actor="test", backup=b0)
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED, operation.error_message
    assert not os.path.exists(store.path(chunks.index_name(b0.file_name)))
    # The merge did not change b1's content: its index, taken at backup time, still holds.
    b1 = Backup.objects.get(pk=b1.pk)
    assert b1.base_id is None
    assert backup_verify(actor="test", backup=b1).result == choices.VerifyResult.OK
    # An incremental on the merged b1 starts from b1's index.
    b4 = Backup.objects.get(pk=chain["backups"][4].pk)
    assert backup_verify(actor="test", backup=b4).result == choices.VerifyResult.OK


def test_index_round_trip_and_zero_chunk_digest():
    index = chunks.ChunkIndex(
        virtual_size=CHUNK + 512, digests=[chunks.zero_digest(CHUNK), chunks.zero_digest(512)]
    )
    assert chunks.ChunkIndex.from_bytes(index.to_bytes()) == index
    assert index.digests[0] == hashlib.sha256(bytes(CHUNK)).digest()
    with pytest.raises(errors.StorageError):
        chunks.ChunkIndex.from_bytes(index.to_bytes()[:-1])


def test_a_backup_from_before_chunk_indexes_verifies_by_its_whole_content_checksum(chain, tmp_path):
    b2 = Backup.objects.get(pk=chain["backups"][2].pk)
    store = BackupStore(b2.backup_point.path)
    os.unlink(store.path(chunks.index_name(b2.file_name)))
    # Without its index file, the recorded index digest cannot be matched by anything.
    verification = backup_verify(actor="test", backup=b2)
    assert verification.result == choices.VerifyResult.FAILED and "no chunk index" in verification.message
    # A legacy backup recorded the SHA-256 of its whole content, zeros included.
    raw = str(tmp_path / "b2.raw")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", chain["refs"][2], raw)
    with open(raw, "rb") as handle:
        whole = hashlib.file_digest(handle, "sha256").hexdigest()
    Backup.objects.filter(pk=b2.pk).update(checksum=whole)
    verification = backup_verify(actor="test", backup=Backup.objects.get(pk=b2.pk))
    assert verification.result == choices.VerifyResult.OK, verification.message
    assert verification.checksum_found == whole


def test_an_incremental_that_missed_a_change_fails_verification(scope, point, monkeypatch):
    volume = make_volume(scope, capacity=32 * MiB)
    write(volume, f"write -P 1 0 {16 * MiB}")
    b1 = backup(volume, snap(volume, "s1"), point, name="b1", compress=False)
    write(volume, f"write -P 2 {1 * CHUNK} 64k")
    snap(volume, "between")  # the change since b1 spans two layers
    write(volume, f"write -P 3 {5 * CHUNK} 64k")
    s2 = snap(volume, "s2")

    real_export = Qcow2DirectoryDriver.export

    def lossy(self, image, target_path, *, base_export=None, since=None, compress=False, progress):
        # The known-wrong way (docs/backups.md): `convert -B` copies the source's top layer only.
        if base_export is None:
            return real_export(self, image, target_path, compress=compress, progress=progress)
        base = os.path.basename(base_export)
        qemu_img(
            "convert", "-f", "qcow2", "-O", "qcow2", "-B", base, "-F", "qcow2", self.path(image), target_path
        )

    monkeypatch.setattr(Qcow2DirectoryDriver, "export", lossy)
    b2 = backup(volume, s2, point, name="b2")
    assert b2.status == choices.BackupStatus.COMPLETED and b2.base_id == b1.pk
    # Its file holds chunk 5 only, but the snapshot's layers since b1 also changed chunk 1: both
    # are hashed from the snapshot, so the index holds what the backup should contain.
    assert chunk_stats(b2)["read"] == 2
    verification = backup_verify(actor="test", backup=b2)
    assert verification.result == choices.VerifyResult.FAILED
    assert (
        "1 of 8 chunks differ from the index recorded at backup time (first: chunk 1 " in verification.message
    )
