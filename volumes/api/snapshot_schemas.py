"""Schema-only serializers describing the contract's snapshot shapes for the OpenAPI document
(answers are built as plain dicts in `snapshot_representations.py`)."""

from rest_framework import serializers

from sharestore.api.schema import ScopeSchema, envelope


class SnapshotAttrSchema(serializers.Serializer):
    """`Attr` of a snapshot that something reads (null otherwise)."""

    LinkCloneUsed = serializers.CharField(
        required=False, help_text='"LinkCloneUsed" while linked clones sit on it'
    )
    BackupUsed = serializers.CharField(
        required=False, help_text='"BackupUsed" while a backup reads it (extension)'
    )


class SnapshotSchema(serializers.Serializer):
    """A snapshot object."""

    Name = serializers.CharField()
    UUID = serializers.UUIDField()
    Volume = serializers.UUIDField()
    Desc = serializers.CharField()
    Status = serializers.IntegerField(
        help_text="0 available, 1 creating, 2 deleting, 4 error (see docs/snapshots.md)"
    )
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Attr = SnapshotAttrSchema(allow_null=True)
    Size = serializers.IntegerField(help_text="allocated bytes of its layer")
    Children = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text='names; "head" for the active layer'
    )
    Parent = serializers.CharField(help_text='name of the parent snapshot, "" for a root')
    Ref = serializers.IntegerField(help_text="linked clones and running backups that read it")


class SnapshotTreeNodeSchema(serializers.Serializer):
    """An entry of the tree's `Children` map."""

    Children = serializers.ListField(child=serializers.CharField())


class SnapshotTreeSchema(serializers.Serializer):
    """The snapshot tree keyed by names, "" being the virtual root and "head" the active layer."""

    UUID = serializers.CharField()
    Parents = serializers.DictField(child=serializers.CharField())
    Children = serializers.DictField(child=SnapshotTreeNodeSchema())
    Root = serializers.CharField()


class SnapshotWrapperSchema(ScopeSchema):
    """The wrapper around a snapshot or a tree."""

    snapshot = SnapshotSchema(allow_null=True)
    tree = SnapshotTreeSchema(allow_null=True)


class SnapshotListSchema(serializers.Serializer):
    """`data` of the snapshot list."""

    list = SnapshotSchema(many=True)


SNAPSHOT_ENVELOPE = envelope("SnapshotEnvelope", SnapshotWrapperSchema())
SNAPSHOT_LIST_ENVELOPE = envelope("SnapshotListEnvelope", SnapshotListSchema())
