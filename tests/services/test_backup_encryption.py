"""Encrypted backups on real images: a backup point with a password writes LUKS-encrypted qcow2 files
that hold none of the volume's bytes, restore equal and verify; the password is stored sealed, never in
a process argument list, a log line, the audit trail or an API answer; it cannot change while encrypted
backups written with it exist."""

from __future__ import annotations

import copy
import json
import logging
import os
import stat
import struct
import subprocess

import pytest
from django.urls import reverse

from backups import choices
from backups.models import Backup, BackupPoint
from backups.secrets import seal, unseal
from backups.services.points import backup_point_create, backup_point_update
from backups.services.verify import backup_verify
from backups.storage import BackupStore
from sharestore import errors
from sharestore.core.models import AuditEvent, Operation
from tests.contract import EXAMPLES
from tests.helpers import CLUSTER, HOST, POOL_DISKS, TENANT, identical, image_info, qemu_io, scoped
from volumes.drivers import qemu
from volumes.models import Pool, Snapshot

MiB = 1 << 20
BACKUP_POINT = "7f74897a-3084-45e1-a413-6cd168ddd4b5"
PASSWORD = "Tr0ub4dor&3-correct-horse"
SLICE = 4096


@pytest.fixture
def argv_log(monkeypatch):
    """The argv of every process the service starts (qemu-img, qemu-io, qemu-nbd) during the test."""
    seen: list[tuple[str, ...]] = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, args, *rest, **kwargs):
            seen.append(tuple(str(a) for a in args))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return seen


@pytest.fixture
def encrypted_point(topology, data_dir) -> BackupPoint:
    directory = data_dir / "backup" / "encrypted"
    directory.mkdir(parents=True)
    return backup_point_create(
        name="demo-backup-point",
        cluster=topology["cluster"],
        path=str(directory),
        capacity=1 << 40,
        uuid=BACKUP_POINT,
        password=PASSWORD,
    )


def host_offset(path: str, guest_offset: int) -> int:
    """Where a guest byte's cluster lies in a qcow2 file, from its L1/L2 tables (`qemu-img map` shows
    no offsets for encrypted clusters)."""
    with open(path, "rb") as handle:
        header = handle.read(48)
        cluster_bits = struct.unpack(">I", header[20:24])[0]
        l1_offset = struct.unpack(">Q", header[40:48])[0]
        per_l2 = (1 << cluster_bits) // 8
        cluster = guest_offset >> cluster_bits
        handle.seek(l1_offset + 8 * (cluster // per_l2))
        l2_offset = struct.unpack(">Q", handle.read(8))[0] & 0x00FFFFFFFFFFFE00
        handle.seek(l2_offset + 8 * (cluster % per_l2))
        return struct.unpack(">Q", handle.read(8))[0] & 0x00FFFFFFFFFFFE00


def call(api, endpoint, body, answers):
    status, answer = api.post(endpoint, body)
    answers.append(answer)
    assert (status, answer["scode"]) == (200, 0), answer
    return answer["data"]


def test_an_encrypted_backup_hides_the_content_restores_equal_and_never_shows_the_password(
    api, encrypted_point, argv_log, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG)
    answers: list = []
    body = copy.deepcopy(EXAMPLES["create"]["request"])
    body.pop("backing_file")
    body.update(volume_name="secret", capacity=16 * MiB)
    volume = call(api, "create", body, answers)["volume"]
    head = volume["AccessPath"][HOST]
    # A known 1 MiB pattern (random bytes, so every 4 KiB slice of it is distinctive).
    pattern = os.urandom(MiB)
    source = tmp_path / "pattern.bin"
    source.write_bytes(pattern)
    qemu_io(head, "qcow2", f"write -s {source} {4 * MiB} {MiB}")
    snapshot = call(api, "snapshot/create", scoped(volume_uuid=volume["UUID"], snapshot_name="s1"), answers)
    pool = Pool.objects.get(uuid=POOL_DISKS).path
    layer = os.path.join(pool, Snapshot.objects.get(uuid=snapshot["snapshot"]["UUID"]).layer_name)

    added = call(
        api,
        "backup/add",
        {
            **EXAMPLES["backup/add"]["request"],
            "volume_uuid": volume["UUID"],
            "snapshot_uuid": snapshot["snapshot"]["UUID"],
        },
        answers,
    )["backup"]
    backup = Backup.objects.get(uuid=added["UUID"])
    assert (backup.status, backup.encrypted, backup.compressed) == (
        choices.BackupStatus.COMPLETED,
        True,
        False,
    )
    path = BackupStore(encrypted_point.path).path(backup.file_name)

    # The file holds none of the pattern's bytes: no 4 KiB slice of it appears anywhere (where the
    # plain snapshot layer holds them all).
    plain = open(layer, "rb").read()
    assert all(pattern[i : i + SLICE] in plain for i in range(0, MiB, 64 * SLICE))
    stored = open(path, "rb").read()
    assert not [i for i in range(0, MiB, SLICE) if pattern[i : i + SLICE] in stored]
    info = image_info(path)
    assert info["encrypted"] is True and info["format-specific"]["data"]["encrypt"]["format"] == "luks"

    # A second backup is full again (never a chain on an encrypted file) and encrypted too.
    second = call(
        api,
        "backup/add",
        {
            **EXAMPLES["backup/add"]["request"],
            "volume_uuid": volume["UUID"],
            "snapshot_uuid": snapshot["snapshot"]["UUID"],
            "backup_name": "second",
        },
        answers,
    )["backup"]
    assert second["BaseUUID"] == "" and Backup.objects.get(uuid=second["UUID"]).encrypted

    # Restore decrypts: the new volume equals the snapshot.
    restored = call(
        api,
        "backup/restore",
        {**EXAMPLES["backup/restore"]["request"], "backup_uuid": backup.uuid.hex},
        answers,
    )["volume"]
    got = call(api, "get", scoped(volume_uuid=restored["UUID"]), answers)["volume"]
    assert identical(got["AccessPath"][HOST], layer)

    # Verification reads the decrypted content against the index recorded at backup time.
    verification = backup_verify(actor="test", backup=backup)
    assert verification.result == choices.VerifyResult.OK, verification.message

    _, listed = api.get("backup/list", {"cluster_uuid": CLUSTER, "tenant": TENANT})
    answers.append(listed)

    # The password is in no argv, log line, API answer, audit message or operation parameter...
    assert argv_log and not [a for a in argv_log if any(PASSWORD in part for part in a)]
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(answers)
    assert not AuditEvent.objects.filter(message__contains=PASSWORD).exists()
    assert PASSWORD not in json.dumps(list(Operation.objects.values_list("params", flat=True)))
    # ...while the engine really was handed it, through a secret object read from a file.
    converts = [a for a in argv_log if a[1:2] == ("convert",) and any("encrypt.format=luks" in p for p in a)]
    assert len(converts) == 2
    assert all(any(p.startswith("secret,id=") and ",file=" in p for p in a) for a in converts)

    # Verification hashes the decrypted content: bit rot in the ciphertext is found.
    offset = host_offset(path, 4 * MiB)
    with open(path, "r+b") as handle:
        handle.seek(offset + 4096)
        handle.write(b"\xff" * 512)
    verification = backup_verify(actor="test", backup=Backup.objects.get(pk=backup.pk))
    assert verification.result == choices.VerifyResult.FAILED and verification.scode == 5302
    assert "chunks differ from the index" in verification.message


def test_the_password_is_stored_sealed(encrypted_point, settings):
    stored = BackupPoint.objects.get(pk=encrypted_point.pk).password_sealed
    assert stored and PASSWORD not in stored
    assert unseal(stored, point="p") == PASSWORD
    assert seal(PASSWORD) != stored  # a fresh IV each time
    settings.SHARESTORE_BACKUP_SECRET_KEY = "another key"
    with pytest.raises(errors.BackupSecretUnreadable) as unreadable:
        unseal(stored, point="p")
    assert unreadable.value.scode == 5010


def test_the_password_cannot_change_while_encrypted_backups_exist(encrypted_point, topology):
    point = encrypted_point
    backup = Backup.objects.create(
        name="b",
        backup_point=point,
        tenant=topology["tenant"],
        cluster=topology["cluster"],
        volume_uuid="00000000-0000-4000-8000-000000000001",
        volume_capacity=MiB,
        volume_type="block",
        snapshot_uuid="00000000-0000-4000-8000-000000000002",
        snapshot_name="s",
        status=choices.BackupStatus.COMPLETED,
        file_name="v/b.qcow2",
        encrypted=True,
    )
    for new in ("another", "", None):
        with pytest.raises(errors.BackupPasswordInUse) as refused:
            backup_point_update(actor="test", backup_point=point, password=new)
        assert refused.value.scode == 4660 and "1 encrypted backup" in refused.value.render_message()
    backup_point_update(actor="test", backup_point=point, password=PASSWORD)  # the same: nothing changes
    assert unseal(BackupPoint.objects.get(pk=point.pk).password_sealed, point="p") == PASSWORD

    Backup.objects.filter(pk=backup.pk).update(status=choices.BackupStatus.DELETED)
    backup_point_update(actor="test", backup_point=point, password="another")
    assert unseal(BackupPoint.objects.get(pk=point.pk).password_sealed, point="p") == "another"
    backup_point_update(actor="test", backup_point=point, password="")
    assert not BackupPoint.objects.get(pk=point.pk).encrypts
    messages = list(
        AuditEvent.objects.filter(action="backup_point.password").values_list("message", flat=True)
    )
    assert sorted(messages) == [
        "password changed: later backups are encrypted",
        "password removed: later backups are not encrypted",
    ]


def test_the_secret_file_is_private_and_gone_after_the_block(tmp_path):
    target = str(tmp_path / "a.qcow2")
    with qemu.encrypted_files([target], PASSWORD):
        objects = qemu.secret_objects(target)
        secret = objects[1].split(",file=", 1)[1]
        assert objects[0] == "--object" and PASSWORD not in objects[1]
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(secret)).st_mode) == 0o700
        assert open(secret).read() == PASSWORD
        assert (
            json.loads(qemu.open_name(target).removeprefix("json:"))["encrypt.key-secret"] == qemu.SECRET_ID
        )
        other = str(tmp_path / "b.qcow2")
        assert (qemu.open_name(other), qemu.secret_objects(other)) == (other, [])
    assert not os.path.exists(secret) and qemu.secret_objects(target) == []


def test_console_password_is_write_only(admin_client, topology, data_dir):
    directory = data_dir / "bp-console"
    directory.mkdir()
    base = {
        "name": "bp-console",
        "cluster": topology["cluster"].pk,
        "tenant": "",
        "btype": "local",
        "path": str(directory),
        "capacity": str(1 << 40),
        "status": "healthy",
    }
    response = admin_client.post(reverse("admin:backups_backuppoint_add"), {**base, "password": PASSWORD})
    assert response.status_code == 302
    point = BackupPoint.objects.get(name="bp-console")
    assert unseal(point.password_sealed, point="p") == PASSWORD
    change = reverse("admin:backups_backuppoint_change", args=[point.pk])
    pages = admin_client.get(change).content.decode()
    pages += admin_client.get(reverse("admin:backups_backuppoint_changelist")).content.decode()
    assert PASSWORD not in pages and point.password_sealed not in pages
    assert 'type="password"' in pages

    # Left empty on an edit: kept. "Remove the password": later backups are plain.
    assert admin_client.post(change, {**base, "capacity": "5"}).status_code == 302
    assert unseal(BackupPoint.objects.get(pk=point.pk).password_sealed, point="p") == PASSWORD
    assert admin_client.post(change, {**base, "remove_password": "on"}).status_code == 302
    assert not BackupPoint.objects.get(pk=point.pk).encrypts
