"""Schema-only serializers describing the contract's volume shapes for the OpenAPI document
(answers are built as plain dicts in `representations.py`)."""

from rest_framework import serializers

from sharestore.api.schema import OwnerSchema, ScopeSchema, envelope


class VolumeAttrSchema(serializers.Serializer):
    """`Attr` of an attached volume."""

    VirtualMachine = serializers.CharField()
    VirtualMachineDevice = serializers.CharField()
    VirtualMachineHostUUID = serializers.CharField()
    VirtualMachineName = serializers.CharField()
    VirtualMachineType = serializers.CharField()


class VolumeSchema(serializers.Serializer):
    """A volume object."""

    UUID = serializers.UUIDField()
    Name = serializers.CharField()
    NamespaceUUID = serializers.UUIDField()
    Type = serializers.ChoiceField(choices=["block", "share", "fs"])
    PoolUUID = serializers.UUIDField()
    Capacity = serializers.IntegerField()
    Used = serializers.IntegerField()
    Attr = VolumeAttrSchema(allow_null=True)
    PoolName = serializers.CharField()
    ZoneUUID = serializers.UUIDField()
    ZoneName = serializers.CharField()
    SnapLength = serializers.IntegerField()
    SnapCap = serializers.IntegerField()
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Mtime = serializers.IntegerField(help_text="epoch seconds")
    AccessPath = serializers.DictField(child=serializers.CharField(), help_text="host UUID -> image path")
    EventState = serializers.IntegerField(help_text="see docs/model.md")
    ShareNsUUIDs = serializers.ListField(child=serializers.CharField(), allow_null=True)
    Parent = serializers.CharField()
    ParentSnapshot = serializers.CharField()
    Children = serializers.ListField(child=serializers.UUIDField(), allow_null=True)


class VolumeWrapperSchema(ScopeSchema):
    """The wrapper around one volume."""

    volume = VolumeSchema(allow_null=True)
    clone_progress = serializers.FloatField()


class VolumeListItemSchema(OwnerSchema):
    """One entry of the volume list."""

    volume = VolumeSchema()


class RangeStateSchema(OwnerSchema):
    """`each_range_list_state` entry."""

    owner_keys = ("cluster_uuid", "cluster_name", "cluster_mode")

    namespace_uuid = serializers.UUIDField()
    result = serializers.JSONField()
    total_count = serializers.IntegerField()


class VolumeListSchema(serializers.Serializer):
    """`data` of the volume list."""

    list = VolumeListItemSchema(many=True)
    each_range_list_state = RangeStateSchema(many=True)
    TotalCount = serializers.IntegerField()


VOLUME_ENVELOPE = envelope("VolumeEnvelope", VolumeWrapperSchema())
VOLUME_LIST_ENVELOPE = envelope("VolumeListEnvelope", VolumeListSchema())
