"""Schema-only serializers describing the backup shapes for the OpenAPI document (answers are
built as plain dicts in `representations.py`)."""

from rest_framework import serializers

from backups.choices import BackupStatus, VerifyResult
from sharestore.api.schema import OwnerSchema, envelope
from volumes.api.schemas import VolumeSchema


class BackupErrorSchema(serializers.Serializer):
    """Why the backup's last operation failed."""

    scode = serializers.IntegerField()
    message = serializers.CharField()


class BackupSchema(OwnerSchema):
    """A backup object (its tenant and cluster, the contract keys, then extensions)."""

    UUID = serializers.UUIDField()
    Name = serializers.CharField()
    BpUUID = serializers.UUIDField()
    NsUUID = serializers.UUIDField()
    VolumeUUID = serializers.UUIDField()
    VolumeCapacity = serializers.IntegerField()
    Snapshot = serializers.CharField(help_text="name of the snapshot backed up")
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Desc = serializers.CharField()
    Attr = serializers.JSONField(allow_null=True, help_text="always null")
    VolumeType = serializers.CharField()
    Mtime = serializers.IntegerField(help_text="epoch seconds")
    BpName = serializers.CharField()
    ExpiredTime = serializers.IntegerField(help_text="epoch seconds; 0 = never")
    VolumeEventStatus = serializers.IntegerField(help_text="the source volume's EventState; 6 once deleted")
    SnapshotUUID = serializers.UUIDField()
    Status = serializers.ChoiceField(choices=BackupStatus.values)
    BaseUUID = serializers.CharField(
        help_text="the backup this incremental one sits on; empty for a full backup"
    )
    Size = serializers.IntegerField(help_text="bytes on the backup point (an estimate while running)")
    Compressed = serializers.BooleanField()
    Protected = serializers.BooleanField()
    Checksum = serializers.CharField(
        help_text="sha256 of the backup's chunk index (sha256 of each 4 MiB chunk of the snapshot's content)"
    )
    Progress = serializers.FloatField(help_text="percent of the last operation (add, delete, verify)")
    Phase = serializers.CharField()
    Error = BackupErrorSchema(allow_null=True)
    VerifyResult = serializers.ChoiceField(choices=VerifyResult.values)
    VerifiedTime = serializers.IntegerField(help_text="epoch seconds; 0 = never verified")


class BackupWrapperSchema(serializers.Serializer):
    """`data` of backup/add."""

    backup = BackupSchema()


class BackupRestoreSchema(serializers.Serializer):
    """`data` of backup/restore: the backup and the new volume, to follow with volume get."""

    backup = BackupSchema()
    volume = VolumeSchema()


class BackupListSchema(serializers.Serializer):
    """`data` of backup/list."""

    backup = BackupSchema(many=True)
    TotalCount = serializers.IntegerField()


BACKUP_ENVELOPE = envelope("BackupEnvelope", BackupWrapperSchema())
BACKUP_RESTORE_ENVELOPE = envelope("BackupRestoreEnvelope", BackupRestoreSchema())
BACKUP_LIST_ENVELOPE = envelope("BackupListEnvelope", BackupListSchema())
BACKUP_DELETE_ENVELOPE = envelope(
    # A field-less serializer would drop `data` from the schema: the answer carries `"data": {}`.
    "BackupDeleteEnvelope",
    serializers.DictField(help_text="always an empty object"),
)
