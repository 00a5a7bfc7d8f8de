"""Schema-only serializers for the pool API's answers (built as dicts in `pool_representations.py`)."""

from rest_framework import serializers

from sharestore.api.schema import envelope
from volumes.api.schemas import RangeStateSchema, VolumeListItemSchema, VolumeListSchema


def schema_class(name: str, doc: str, *, strings=(), integers=(), **fields) -> type[serializers.Serializer]:
    """A schema-only serializer: `strings` and `integers` name plain string and integer keys."""
    declared = {key: serializers.CharField() for key in strings}
    declared |= {key: serializers.IntegerField() for key in integers}
    return type(
        name, (serializers.Serializer,), {"__doc__": doc, "__module__": __name__, **declared, **fields}
    )


def uuid_list(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.UUIDField(), allow_null=True, **kwargs)


PoolAttrSchema = schema_class(
    "PoolAttrSchema",
    "`Attr` of a pool.",
    overAllocationThreshold=serializers.CharField(help_text='over-allocation ratio as a string, e.g. "1.0"'),
)

PoolSchema = schema_class(
    "PoolSchema",
    "A pool object, as the platform's pool API shows it (docs/api.md, Pools).",
    strings=["UUID", "Name", "NamespaceUUID", "ZoneUUID", "ZoneName", "MachineUUID", "IP", "Port", "Source"],
    integers=["Ctime", "Mtime", "VolumeTotalCount", "Capacity", "Used", "AllocatedCapacity"],
    Type=serializers.IntegerField(help_text="1 iscsi, 2 nfs, 3 samba, 4 disk, 5 fc, 6 rbd, 7 cephfs"),
    Username=serializers.CharField(),
    Password=serializers.CharField(help_text="always empty"),
    AvailHosts=uuid_list(help_text="hosts that mount the pool"),
    Volumes=serializers.JSONField(allow_null=True, help_text="always null"),
    ShareNsUUIDs=uuid_list(help_text="namespaces of the tenants it is limited to; null: every tenant"),
    ShareNsNames=serializers.ListField(child=serializers.CharField(), allow_null=True),
    Attr=PoolAttrSchema(),
    Status=serializers.ChoiceField(choices=["healthy", "unavailable", "maintenance"]),
    LimitHost=serializers.BooleanField(),
)

PoolWrapperSchema = schema_class(
    "PoolWrapperSchema",
    "The wrapper around one pool (null for set and status/check, {} for delete).",
    strings=["cluster_uuid", "cluster_name", "cluster_mode", "tenant", "tenant_name"],
    pool=PoolSchema(allow_null=True),
    PoolTypes=serializers.ListField(child=serializers.CharField(), allow_null=True, help_text="always null"),
)


class PoolListItemSchema(VolumeListItemSchema):
    """One entry of the pool list: the volume list's wrapper around a pool."""

    volume = None
    pool = PoolSchema()

    def get_fields(self):
        # A pool every tenant shares has no tenant: its entry says "".
        return super().get_fields() | {
            "tenant": serializers.CharField(help_text='the tenant\'s UUID; "" for a shared pool')
        }


class PoolRangeStateSchema(RangeStateSchema):
    """`each_range_list_state` entry of the pool list ("" namespace for shared pools)."""

    namespace_uuid = serializers.CharField(help_text='the namespace\'s UUID; "" for shared pools')


class PoolListSchema(VolumeListSchema):
    """`data` of the pool list."""

    list = None
    infos = PoolListItemSchema(many=True)
    each_range_list_state = PoolRangeStateSchema(many=True)


PoolTypesSchema = schema_class(
    "PoolTypesSchema",
    "`data` of pool_type/support.",
    PoolTypes=serializers.ListField(child=serializers.CharField()),
)

POOL_ENVELOPE = envelope("PoolEnvelope", PoolWrapperSchema())
POOL_LIST_ENVELOPE = envelope("PoolListEnvelope", PoolListSchema())
POOL_TYPES_ENVELOPE = envelope("PoolTypesEnvelope", PoolTypesSchema())
