"""The platform's backup-point API under /v1/volume/internal/backuppoint/ (an extension: docs/api.md,
"Backup points"). One APIView per URL; the services are those of the console and `add_backup_point`."""

from __future__ import annotations

from rest_framework import serializers

from backups import point_selectors
from backups.api.point_schemas import (
    BACKUP_POINT_ADDED_ENVELOPE,
    BACKUP_POINT_EMPTY_ENVELOPE,
    BACKUP_POINT_LIST_ENVELOPE,
)
from backups.api.views import BackupApi, VolumeShareBackupListApi
from backups.models import BackupPoint
from backups.services import points as point_services
from sharestore.api.envelope import success
from volumes import pool_selectors
from volumes.api.fields import (
    NameField,
    OptionalUUIDField,
    StrictCharField,
    StrictIntegerField,
    StrictUUIDField,
)
from volumes.api.pool_representations import epoch_times
from volumes.api.pool_views import api_schema, page_window
from volumes.services.pools import check_name_matches


def point_representation(point: BackupPoint) -> dict:
    """A listed backup point with every key of the platform's shape; a password never appears."""
    tenant = point.tenant
    return {
        "tenant": str(tenant.uuid) if tenant else "",
        "tenant_name": tenant.name if tenant else "",
        "Name": point.name,
        "UUID": str(point.uuid),
        "BType": point.btype,
        "NsUUID": str(tenant.namespace.uuid) if tenant and hasattr(tenant, "namespace") else "",
        "Ref": point.ref,
        "indentify": {
            "IP": point.ip,
            "PORT": "",
            "RootDir": point.root_dir or point.path,
            "SubDir": point.sub_dir,
            "Dest": point.path,
            "Env": point.env,
            "Pwd": "",
        },
        **epoch_times(point),
        "Bpstate": point.status,
    }


class LocationInput(serializers.Serializer):
    """The fields add and update share: the cluster and the storage server's address."""

    cluster_uuid = StrictUUIDField()
    ip = StrictCharField(allow_blank=True, max_length=255)


class PointApi(BackupApi):
    """Base of the endpoints that change one backup point."""

    def point(self, request, *, point_uuid, tenant_uuid, data) -> BackupPoint:
        """The backup point the caller may change (`point_selectors.point_for_change`)."""
        tenant, cluster = self.optional_scope(
            request, tenant_uuid=tenant_uuid, cluster_uuid=data["cluster_uuid"]
        )
        allowed = request.user.tenant_id
        return point_selectors.point_for_change(
            uuid=point_uuid, cluster=cluster, tenant=tenant, allowed_tenant_id=allowed
        )


class EnvField(serializers.DictField):
    """`env` / `environment`: a JSON object, kept as sent."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", dict)
        super().__init__(**kwargs)


@api_schema("BackupPointAddRequest", BACKUP_POINT_ADDED_ENVELOPE, 400, 401, 404)
class BackupPointAddApi(BackupApi):
    """POST /v1/volume/internal/backuppoint/add: register a directory (root_dir/sub_dir) as the tenant's
    backup point. Extension: `capacity` (bytes; default what its filesystem has free)."""

    class InputSerializer(LocationInput):
        tenant = StrictUUIDField()
        zone_uuid = StrictUUIDField()
        name = NameField()
        btype = StrictCharField()
        root_dir = StrictCharField(max_length=1024)
        sub_dir = StrictCharField(required=False, allow_blank=True, default="", max_length=1024)
        pass_word = StrictCharField(required=False, allow_blank=True, default="", write_only=True)
        env = EnvField()
        capacity = StrictIntegerField(required=False, allow_null=True, default=None, min_value=0)

    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        pool_selectors.zone_get(uuid=data["zone_uuid"])
        path = point_services.point_location(root_dir=data["root_dir"], sub_dir=data["sub_dir"])
        point_services.backup_point_create_check(
            name=data["name"], cluster=cluster, path=path, capacity=data["capacity"] or 0
        )
        point = point_services.backup_point_create(
            name=data["name"],
            cluster=cluster,
            path=path,
            capacity=data["capacity"],
            btype=data["btype"],
            tenant=tenant,
            password=data["pass_word"],
            origin={
                "ip": data["ip"],
                "root_dir": data["root_dir"],
                "sub_dir": data["sub_dir"],
                "env": data["env"],
            },
        )
        return success({"uuid": str(point.uuid), "name": point.name})


@api_schema("BackupPointDeleteRequest", BACKUP_POINT_EMPTY_ENVELOPE, 400, 401, 404, 409)
class BackupPointDeleteApi(PointApi):
    """POST /v1/volume/internal/backuppoint/delete: forget a backup point that holds no backup."""

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        uuid = StrictUUIDField()
        tenant = OptionalUUIDField()
        backup_point_name = StrictCharField(
            required=False, allow_blank=True, default="", trim_whitespace=False
        )

        def validate_tenant(self, value):
            return str(StrictUUIDField().run_validation(value)) if value else ""

    def post(self, request):
        data = self.validated(request)
        point = self.point(request, point_uuid=data["uuid"], tenant_uuid=data["tenant"], data=data)
        if data["backup_point_name"]:
            check_name_matches(
                point,
                data["backup_point_name"],
                field="backup_point_name",
                kind="backup point",
                kind_cn="备份点",
            )
        point_services.backup_point_delete(actor=self.actor(request), backup_point=point)
        return success({})


@api_schema("BackupPointUpdateRequest", BACKUP_POINT_EMPTY_ENVELOPE, 400, 401, 404)
class BackupPointUpdateApi(PointApi):
    """POST /v1/volume/internal/backuppoint/update: rename or move a backup point (docs/api.md)."""

    class InputSerializer(LocationInput):
        root_directory = StrictCharField(max_length=1024)
        sub_dir = StrictCharField(allow_blank=True, max_length=1024)
        backup_point_uuid = StrictUUIDField()
        tenant_uuid = StrictUUIDField()
        backup_point_name = NameField()
        environment = EnvField()

    def post(self, request):
        data = self.validated(request)
        point = self.point(
            request, point_uuid=data["backup_point_uuid"], tenant_uuid=data["tenant_uuid"], data=data
        )
        point_services.backup_point_update(
            actor=self.actor(request),
            backup_point=point,
            name=data["backup_point_name"],
            path=point_services.point_location(root_dir=data["root_directory"], sub_dir=data["sub_dir"]),
            ip=data["ip"],
            root_dir=data["root_directory"],
            sub_dir=data["sub_dir"],
            env=data["environment"],
        )
        return success({})


@api_schema("BackupPointListQuery", BACKUP_POINT_LIST_ENVELOPE, 400, 401, 404, query=True)
class BackupPointListApi(BackupApi):
    """GET /v1/volume/internal/backuppoint/list: a page of the cluster's backup points by name (the
    tenant's and the shared ones when a tenant is named or the token is a tenant's)."""

    class InputSerializer(VolumeShareBackupListApi.InputSerializer):
        """backup/list's query: cluster, tenant, paging and name filter."""

        filter_desc = filter_start_time = filter_end_time = filter_volume_uuid = None

    def get(self, request):
        data = self.validated(request, {k: v for k, v in request.query_params.items()})
        tenant, cluster = self.optional_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        if tenant is None and request.user.tenant_id is not None:
            tenant = pool_selectors.tenant_of_caller(request.user.tenant_id)
        offset, limit = page_window(data)
        points, total = point_selectors.point_list(
            cluster=cluster, tenant=tenant, filter_name=data["filter_name"], offset=offset, limit=limit
        )
        return success({"total_count": total, "list": [point_representation(p) for p in points]})
