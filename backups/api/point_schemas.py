"""Schema-only serializers for the platform's backup-point API answers (built in `point_views.py`)."""

from rest_framework import serializers

from sharestore.api.schema import envelope
from volumes.api.pool_schemas import schema_class

IdentifySchema = schema_class(
    "IdentifySchema",
    "`indentify` (spelled as the platform spells it): where the backup point is.",
    strings=["IP", "PORT", "RootDir", "SubDir"],
    Dest=serializers.CharField(help_text="the directory this service's workers write to"),
    Env=serializers.DictField(help_text="the env map sent when it was added, as sent"),
    Pwd=serializers.CharField(help_text="always empty: a stored password is never returned"),
)

BackupPointSchema = schema_class(
    "BackupPointSchema",
    "A listed backup point.",
    strings=["tenant_name", "Name", "UUID", "BType", "NsUUID"],
    integers=["Ctime", "Mtime"],
    tenant=serializers.CharField(help_text='"" for a backup point every tenant may use'),
    Ref=serializers.IntegerField(help_text="backups it holds (not deleted)"),
    indentify=IdentifySchema(),
    Bpstate=serializers.ChoiceField(choices=["healthy", "unavailable"]),
)

BACKUP_POINT_LIST_ENVELOPE = envelope(
    "BackupPointListEnvelope",
    schema_class(
        "BackupPointListSchema",
        "`data` of backuppoint/list.",
        integers=["total_count"],
        list=BackupPointSchema(many=True),
    )(),
)
BACKUP_POINT_ADDED_ENVELOPE = envelope(
    "BackupPointAddedEnvelope",
    schema_class("BackupPointAddedSchema", "`data` of backuppoint/add.", strings=["uuid", "name"])(),
)
BACKUP_POINT_EMPTY_ENVELOPE = envelope(
    "BackupPointEmptyEnvelope", schema_class("EmptySchema", "`data` of backuppoint/delete and update: {}.")()
)
