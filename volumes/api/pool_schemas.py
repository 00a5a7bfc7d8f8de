"""Schema-only serializers for the pool API's answers (built as dicts in `pool_representations.py`)."""

from rest_framework import serializers

from sharestore.api.schema import envelope
from volumes.api.schemas import RangeStateSchema


class PoolAttrSchema(serializers.Serializer):
    """`Attr` of a pool."""

    overAllocationThreshold = serializers.CharField(help_text='over-allocation ratio as a string, e.g. "1.0"')


class PoolSchema(serializers.Serializer):
    """A pool object, as the platform's pool API shows it."""

    UUID = serializers.UUIDField()
    Name = serializers.CharField()
    Type = serializers.IntegerField(help_text="1 iscsi, 2 nfs, 3 samba, 4 disk, 5 fc, 6 rbd, 7 cephfs")
    NamespaceUUID = serializers.CharField()
    ZoneUUID = serializers.UUIDField()
    ZoneName = serializers.CharField()
    MachineUUID = serializers.CharField()
    IP = serializers.CharField()
    Port = serializers.CharField()
    Source = serializers.CharField()
    Username = serializers.CharField()
    Password = serializers.CharField(help_text="always empty")
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Mtime = serializers.IntegerField(help_text="epoch seconds")
    VolumeTotalCount = serializers.IntegerField()
    AvailHosts = serializers.ListField(child=serializers.UUIDField(), allow_null=True)
    Volumes = serializers.JSONField(allow_null=True, help_text="always null")
    Capacity = serializers.IntegerField()
    Used = serializers.IntegerField()
    AllocatedCapacity = serializers.IntegerField()
    ShareNsUUIDs = serializers.ListField(child=serializers.UUIDField(), allow_null=True)
    ShareNsNames = serializers.ListField(child=serializers.CharField(), allow_null=True)
    Attr = PoolAttrSchema()
    Status = serializers.ChoiceField(choices=["healthy", "unavailable", "maintenance"])
    LimitHost = serializers.BooleanField()


class PoolWrapperSchema(serializers.Serializer):
    """The wrapper around one pool (null for set and status/check, {} for delete)."""

    pool = PoolSchema(allow_null=True)
    cluster_uuid = serializers.UUIDField()
    cluster_name = serializers.CharField()
    cluster_mode = serializers.CharField()
    tenant = serializers.CharField()
    tenant_name = serializers.CharField()
    PoolTypes = serializers.ListField(child=serializers.CharField(), allow_null=True)


class PoolListItemSchema(serializers.Serializer):
    """One entry of the pool list."""

    tenant = serializers.CharField()
    tenant_name = serializers.CharField()
    pool = PoolSchema()
    cluster_uuid = serializers.UUIDField()
    cluster_name = serializers.CharField()
    cluster_mode = serializers.CharField()


class PoolListSchema(serializers.Serializer):
    """`data` of the pool list."""

    infos = PoolListItemSchema(many=True)
    each_range_list_state = RangeStateSchema(many=True)
    TotalCount = serializers.IntegerField()


class PoolTypesSchema(serializers.Serializer):
    """`data` of pool_type/support."""

    PoolTypes = serializers.ListField(child=serializers.CharField())


POOL_ENVELOPE = envelope("PoolEnvelope", PoolWrapperSchema())
POOL_LIST_ENVELOPE = envelope("PoolListEnvelope", PoolListSchema())
POOL_TYPES_ENVELOPE = envelope("PoolTypesEnvelope", PoolTypesSchema())
