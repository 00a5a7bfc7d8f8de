"""Schema-only serializers for the platform's backup-point API answers (built as dicts in `point_views.py`)."""

from rest_framework import serializers

from sharestore.api.schema import envelope


class IdentifySchema(serializers.Serializer):
    """`indentify` (spelled as the platform spells it): where the backup point is."""

    IP = serializers.CharField()
    PORT = serializers.CharField()
    RootDir = serializers.CharField()
    SubDir = serializers.CharField()
    Dest = serializers.CharField(help_text="the directory this service's workers write to")
    Env = serializers.DictField(help_text="the env map sent when it was added, as sent")
    Pwd = serializers.CharField(help_text="always empty: a stored password is never returned")


class BackupPointSchema(serializers.Serializer):
    """A listed backup point."""

    tenant = serializers.CharField(help_text='"" for a backup point every tenant may use')
    tenant_name = serializers.CharField()
    Name = serializers.CharField()
    UUID = serializers.UUIDField()
    BType = serializers.CharField()
    NsUUID = serializers.CharField()
    Ref = serializers.IntegerField(help_text="backups it holds (not deleted)")
    indentify = IdentifySchema()
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Mtime = serializers.IntegerField(help_text="epoch seconds")
    Bpstate = serializers.ChoiceField(choices=["healthy", "unavailable"])


class BackupPointListSchema(serializers.Serializer):
    """`data` of backuppoint/list."""

    total_count = serializers.IntegerField()
    list = BackupPointSchema(many=True)


class BackupPointAddedSchema(serializers.Serializer):
    """`data` of backuppoint/add."""

    uuid = serializers.UUIDField()
    name = serializers.CharField()


class EmptySchema(serializers.Serializer):
    """`data` of backuppoint/delete and update: {}."""


BACKUP_POINT_LIST_ENVELOPE = envelope("BackupPointListEnvelope", BackupPointListSchema())
BACKUP_POINT_ADDED_ENVELOPE = envelope("BackupPointAddedEnvelope", BackupPointAddedSchema())
BACKUP_POINT_EMPTY_ENVELOPE = envelope("BackupPointEmptyEnvelope", EmptySchema())
