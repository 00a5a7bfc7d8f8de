"""One APIView per documented URL of the backup endpoints. Views validate input, call one service
or selector, and wrap the result in the envelope; every error is raised, never returned."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from backups import selectors as backup_selectors
from backups.api.representations import backup_representation, latest_operations
from backups.api.schemas import (
    BACKUP_DELETE_ENVELOPE,
    BACKUP_ENVELOPE,
    BACKUP_LIST_ENVELOPE,
    BACKUP_RESTORE_ENVELOPE,
)
from backups.services.common import MAX_EPOCH
from backups.services.create import backup_add
from backups.services.delete import backup_delete
from backups.services.restore import backup_restore
from sharestore.api.envelope import success
from sharestore.api.paging import page_window
from sharestore.api.schema import error_responses, request_schema
from sharestore.core.services.waits import busy_retry
from volumes import selectors
from volumes.api.fields import (
    MAX_PAGE_NUM,
    DescField,
    NameField,
    OptionalUUIDField,
    SchemaDeclared,
    StrictBooleanField,
    StrictIntegerField,
    StrictUUIDField,
)
from volumes.api.representations import volume_representation
from volumes.api.views import ScopedApi, named


def _answer(backup) -> dict:
    operations = latest_operations([backup.uuid])
    backup = backup_selectors.backup_get(uuid=backup.uuid, cluster=backup.cluster)
    return backup_representation(backup, operations.get(str(backup.uuid)))


class BackupApi(ScopedApi):
    """Base of the backup endpoints: resolves the cluster and, when the request names one, the tenant."""

    def optional_scope(self, request, *, tenant_uuid, cluster_uuid):
        """(tenant or None, cluster). A tenant-bound caller may only name its own tenant."""
        cluster = selectors.cluster_get(uuid=cluster_uuid)
        tenant = None
        if tenant_uuid:
            tenant = selectors.tenant_get(uuid=tenant_uuid, allowed_tenant_id=request.user.tenant_id)
        return tenant, cluster


class VolumeShareBackupAddApi(BackupApi):
    """POST /v1/volume/share/backup/add: back up a snapshot of a volume to a backup point.

    The contract's request names no tenant: a tenant-bound token reaches its own volumes; a platform
    token any volume of the cluster, or the one of `tenant` when given (extension). Extensions:
    `compress` (zstd; default in docs/backups.md), `full_backup` (skip the incremental), `expired_time`
    (epoch seconds, 0 = never), `protected`.
    """

    service_fields = {
        "backup_name": "name",
        "desc": "desc",
        "compress": "compress",
        "full_backup": "full",
        "expired_time": "expired_time",
        "protected": "protected",
    }

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        tenant = StrictUUIDField(required=False, allow_null=True, default=None)
        volume_uuid = StrictUUIDField()
        snapshot_uuid = StrictUUIDField()
        backup_name = NameField()
        backup_point_uuid = StrictUUIDField()
        desc = DescField()
        compress = StrictBooleanField(required=False, allow_null=True, default=None)
        full_backup = StrictBooleanField(required=False, default=False)
        expired_time = StrictIntegerField(
            required=False, default=0, schema={"minimum": 0, "maximum": MAX_EPOCH}
        )
        protected = StrictBooleanField(required=False, default=False)

    @request_schema(InputSerializer, "VolumeShareBackupAddRequest", BACKUP_ENVELOPE, 400, 401, 404, 409, 503)
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.optional_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        volume = backup_selectors.volume_for_backup(
            uuid=data["volume_uuid"], cluster=cluster, tenant=tenant, allowed_tenant_id=request.user.tenant_id
        )
        snapshot = selectors.snapshot_get(volume=volume, uuid=data["snapshot_uuid"])
        point = backup_selectors.backup_point_get(
            uuid=data["backup_point_uuid"], cluster=cluster, tenant=volume.tenant
        )
        backup = busy_retry(
            backup_add,
            actor=self.actor(request),
            volume=volume,
            snapshot=snapshot,
            backup_point=point,
            **self.service_arguments(data),
        )
        return success({"backup": _answer(backup)})


class VolumeShareBackupDeleteApi(BackupApi):
    """POST /v1/volume/share/backup/delete: delete a backup; a backup that a later incremental one sits on
    is merged into it first, so every remaining backup still restores."""

    class InputSerializer(ScopedApi.InputSerializer):
        backup_uuid = StrictUUIDField()

    @request_schema(
        InputSerializer, "VolumeShareBackupDeleteRequest", BACKUP_DELETE_ENVELOPE, 400, 401, 404, 409
    )
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        backup = backup_selectors.backup_get(
            uuid=data["backup_uuid"], cluster=cluster, tenant=tenant, allowed_tenant_id=request.user.tenant_id
        )
        backup_delete(actor=self.actor(request), backup=backup)
        return success({})


class VolumeShareBackupRestoreApi(BackupApi):
    """POST /v1/volume/share/backup/restore: a new volume with the backup's content.

    Answers `backup` (the backup restored) and `volume` (the new volume, EventState 4 restoring until
    the copy is done: follow it with volume get). `tenant` (extension) scopes the backup to its owner.
    """

    service_fields = {"new_volume_name": "name"}

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        tenant = StrictUUIDField(required=False, allow_null=True, default=None)
        backup_uuid = StrictUUIDField()
        new_volume_tenant = StrictUUIDField()
        new_volume_name = NameField()
        new_pool_uuid = StrictUUIDField()

    @request_schema(
        InputSerializer,
        "VolumeShareBackupRestoreRequest",
        BACKUP_RESTORE_ENVELOPE,
        400,
        401,
        404,
        409,
        503,
        507,
    )
    def post(self, request):
        data = self.validated(request)
        owner, cluster = self.optional_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        new_tenant = selectors.tenant_get(
            uuid=data["new_volume_tenant"], allowed_tenant_id=request.user.tenant_id
        )
        backup = backup_selectors.backup_get(
            uuid=data["backup_uuid"], cluster=cluster, tenant=owner, allowed_tenant_id=request.user.tenant_id
        )
        pool = selectors.pool_get(uuid=data["new_pool_uuid"], cluster=cluster, tenant=new_tenant)
        volume = backup_restore(
            actor=self.actor(request),
            backup=backup,
            tenant=new_tenant,
            cluster=cluster,
            pool=pool,
            **self.service_arguments(data),
        )
        volume = selectors.volume_get(uuid=volume.uuid, tenant=new_tenant, cluster=cluster)
        return success({"backup": _answer(backup), "volume": volume_representation(volume)})


class EpochField(serializers.CharField):
    """Epoch seconds in a query string ("" = no bound)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.schema = {
            "pattern": "^[0-9]{1,12}$",
            "description": 'epoch seconds ("" or absent: no bound; past 253402300799, the end of 9999, read as it)',
        }

    def to_internal_value(self, data):
        value = super().to_internal_value(data).strip()
        if value == "":
            return None
        if not value.isdigit() or len(value) > 12:
            raise serializers.ValidationError("epoch seconds are required")
        # Past the end of year 9999 no date exists (nor a backup): such a bound is the last second.
        return min(int(value), MAX_EPOCH)


class QueryIntegerField(SchemaDeclared, serializers.IntegerField):
    """An integer in a query string (DRF's parsing of "12")."""


class VolumeShareBackupListApi(BackupApi):
    """GET /v1/volume/share/backup/list: a page of backups, newest first, under `backup`, with `TotalCount`.

    Query parameters as in the contract, plus `tenant` and `filter_name` that its example sends.
    Without `tenant`, a platform token lists every tenant's backups in the cluster.
    """

    class InputSerializer(serializers.Serializer):
        cluster_uuid = serializers.UUIDField()
        tenant = OptionalUUIDField()
        page_num = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_PAGE_NUM)
        page_size = QueryIntegerField(
            required=False, default=0, min_value=0, schema={"maximum": settings.SHARESTORE_MAX_PAGE_SIZE}
        )
        filter_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=128)
        filter_desc = serializers.CharField(required=False, allow_blank=True, default="", max_length=1024)
        filter_start_time = EpochField(required=False, allow_blank=True, default=None)
        filter_end_time = EpochField(required=False, allow_blank=True, default=None)
        filter_volume_uuid = OptionalUUIDField()

        def validate_tenant(self, value):
            return str(serializers.UUIDField().run_validation(value)) if value else ""

        def validate_filter_volume_uuid(self, value):
            return str(serializers.UUIDField().run_validation(value)) if value else ""

    @extend_schema(
        parameters=[named(InputSerializer, "VolumeShareBackupListQuery")],
        responses={200: BACKUP_LIST_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def get(self, request):
        data = self.validated(request, {k: v for k, v in request.query_params.items()})
        tenant, cluster = self.optional_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        limit, offset = page_window(page_num=data["page_num"], page_size=data["page_size"])
        filters = {
            key: data[key]
            for key in (
                "filter_name",
                "filter_desc",
                "filter_start_time",
                "filter_end_time",
                "filter_volume_uuid",
            )
            if data[key] not in ("", None)
        }
        backups, total = backup_selectors.backup_list(
            cluster=cluster,
            tenant=tenant,
            allowed_tenant_id=request.user.tenant_id,
            filters=filters,
            offset=offset,
            limit=limit,
        )
        operations = latest_operations([b.uuid for b in backups])
        return success(
            {
                "backup": [backup_representation(b, operations.get(str(b.uuid))) for b in backups],
                "TotalCount": total,
            }
        )
