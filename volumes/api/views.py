"""One APIView per documented URL of the volume endpoints. Views validate input, call one service
or selector, and wrap the result in the envelope; every error is raised, never returned."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from sharestore import errors
from sharestore.api.envelope import envelope_body, success, volume_wrapper
from sharestore.api.paging import page_window
from sharestore.api.renderers import FastEnvelopeJSONRenderer
from sharestore.api.schema import error_responses, named
from sharestore.core.services.waits import busy_retry, latest_operation, short_step_wait
from volumes import selectors
from volumes.api.fields import (
    MAX_PAGE_NUM,
    NameField,
    OptionalUUIDField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictUUIDField,
)
from volumes.api.representations import row_representation, volume_representation
from volumes.api.schemas import VOLUME_ENVELOPE, VOLUME_LIST_ENVELOPE
from volumes.choices import VolumeType
from volumes.services import volumes as volume_services
from volumes.services.repair.usage import SNAP_LENGTH, USED, volume_usage_refresh
from volumes.services.volumes import MIN_VOLUME_BYTES, SECTOR, check_volume_name


class ScopedApi(APIView):
    """Resolves the cluster and the tenant named in the request, checking the caller may act for it."""

    # The request fields the view's service takes as they were validated, under its parameter names:
    # {request field: service parameter} (`service_arguments`). Fields it resolves first (UUIDs to
    # rows) or changes are passed by the view itself.
    service_fields: dict[str, str] = {}

    class InputSerializer(serializers.Serializer):
        tenant = StrictUUIDField()
        cluster_uuid = StrictUUIDField()

    def validated(self, request, data=None) -> dict:
        source = request.data if data is None else data
        if not isinstance(source, dict):
            raise errors.MalformedRequest(reason="the body must be a JSON object")
        serializer = self.InputSerializer(data=source)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def scope(self, request, *, tenant_uuid, cluster_uuid):
        cluster = selectors.cluster_get(uuid=cluster_uuid)
        tenant = selectors.tenant_get(uuid=tenant_uuid, allowed_tenant_id=request.user.tenant_id)
        return tenant, cluster

    def cached_scope(self, request, *, tenant_uuid, cluster_uuid):
        """`scope` for the read endpoints: from the per-process cache (SHARESTORE_READ_CACHE_SECONDS)."""
        return selectors.cached_scope(
            tenant_uuid=tenant_uuid, cluster_uuid=cluster_uuid, allowed_tenant_id=request.user.tenant_id
        )

    def actor(self, request) -> str:
        return request.user.actor

    def service_arguments(self, data: dict) -> dict:
        """The validated `data` the service takes as it is (`service_fields`), as keyword arguments."""
        return {parameter: data[field] for field, parameter in self.service_fields.items()}


class VolumeShareListApi(ScopedApi):
    """POST /v1/volume/share/list: a page of the tenant's volumes in the cluster."""

    class InputSerializer(ScopedApi.InputSerializer):
        filter_pool_uuid = OptionalUUIDField()
        filter_name = StrictCharField(required=False, allow_blank=True, default="", max_length=128)
        page_num = StrictIntegerField(required=False, default=0, min_value=0, max_value=MAX_PAGE_NUM)
        page_size = StrictIntegerField(
            required=False, default=0, min_value=0, schema={"maximum": settings.SHARESTORE_MAX_PAGE_SIZE}
        )

        def validate_filter_pool_uuid(self, value):
            if value:
                StrictUUIDField().run_validation(value)
            return value

    renderer_classes = (FastEnvelopeJSONRenderer,)

    @extend_schema(
        request=named(InputSerializer, "VolumeShareListRequest"),
        responses={200: VOLUME_LIST_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.cached_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        limit, offset = page_window(page_num=data["page_num"], page_size=data["page_size"])
        filters = {k: data[k] for k in ("filter_pool_uuid", "filter_name") if data[k]}
        rows, total = selectors.volume_list_rows(
            tenant=tenant, cluster=cluster, filters=filters, offset=offset, limit=limit
        )
        pools = selectors.pools_for(rows)
        namespaces = selectors.namespace_uuids(tenant=tenant, rows=rows)
        namespace_uuid = str(tenant.namespace.uuid)
        tenant_uuid, tenant_name = str(tenant.uuid), tenant.name
        cluster_uuid, cluster_name, cluster_mode = str(cluster.uuid), cluster.name, cluster.mode
        return success(
            {
                # Every listed volume is the scope's tenant's, in the scope's cluster.
                "list": [
                    {
                        "tenant": tenant_uuid,
                        "tenant_name": tenant_name,
                        "volume": row_representation(row, namespaces, pools),
                        "cluster_uuid": cluster_uuid,
                        "cluster_name": cluster_name,
                        "cluster_mode": cluster_mode,
                    }
                    for row in rows
                ],
                "each_range_list_state": [
                    {
                        "cluster_uuid": cluster_uuid,
                        "cluster_name": cluster_name,
                        "cluster_mode": cluster_mode,
                        "namespace_uuid": namespace_uuid,
                        "result": envelope_body(""),
                        "total_count": total,
                    }
                ],
                "TotalCount": total,
            }
        )


class VolumeShareCreateApi(ScopedApi):
    """POST /v1/volume/share/create: a new empty volume, or one imported from backing_file."""

    service_fields = {
        "volume_name": "name",
        "volume_type": "volume_type",
        "capacity": "capacity",
        "snap_capacity": "snap_capacity",
    }

    class InputSerializer(ScopedApi.InputSerializer):
        pool_uuid = StrictUUIDField()
        volume_name = NameField()
        volume_type = StrictCharField(allow_blank=True, schema={"enum": list(VolumeType.values)})
        capacity = StrictIntegerField(
            required=False,
            allow_null=True,
            default=None,
            schema={
                "minimum": MIN_VOLUME_BYTES,
                "maximum": settings.SHARESTORE_MAX_VOLUME_BYTES,
                "multipleOf": SECTOR,
            },
        )
        snap_capacity = StrictIntegerField(
            schema={"minimum": 0, "maximum": settings.SHARESTORE_MAX_VOLUME_BYTES}
        )
        backing_file = StrictCharField(
            required=False, allow_blank=True, allow_null=True, default="", max_length=4096
        )

    @extend_schema(
        request=named(InputSerializer, "VolumeShareCreateRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 422, 503, 507)},
    )
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        pool = selectors.pool_get(uuid=data["pool_uuid"], cluster=cluster, tenant=tenant)
        volume = volume_services.volume_create(
            actor=self.actor(request),
            tenant=tenant,
            cluster=cluster,
            pool=pool,
            backing_file=data["backing_file"] or None,
            **self.service_arguments(data),
        )
        # An empty volume is created in constant time: it answers available (an import answers importing).
        short_step_wait(latest_operation(target_uuid=volume.uuid))
        volume = selectors.volume_get(uuid=volume.uuid, tenant=tenant, cluster=cluster)
        return success(volume_wrapper(volume_representation(volume)))


class VolumeApi(ScopedApi):
    """Base for endpoints that act on one volume named by volume_uuid (and maybe volume_name)."""

    check_name = False

    class InputSerializer(ScopedApi.InputSerializer):
        volume_uuid = StrictUUIDField()

    def volume(self, request, data):
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        volume = selectors.volume_get(uuid=data["volume_uuid"], tenant=tenant, cluster=cluster)
        if self.check_name:
            check_volume_name(volume, data["volume_name"])
        return volume


class NamedVolumeInput(VolumeApi.InputSerializer):
    """Input of the endpoints that name the volume by UUID and name."""

    volume_name = StrictCharField(allow_blank=True, trim_whitespace=False)


class VolumeShareDeleteApi(VolumeApi):
    """POST /v1/volume/share/delete: take the volume out of service and remove its files."""

    check_name = True

    class InputSerializer(NamedVolumeInput):
        force = StrictBooleanField(required=False, default=False)

    @extend_schema(
        request=named(InputSerializer, "VolumeShareDeleteRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        busy_retry(
            volume_services.volume_delete, actor=self.actor(request), volume=volume, force=data["force"]
        )
        return success(volume_wrapper(None))


class VolumeShareGetApi(VolumeApi):
    """POST /v1/volume/share/get: one volume."""

    renderer_classes = (FastEnvelopeJSONRenderer,)

    @extend_schema(
        request=named(VolumeApi.InputSerializer, "VolumeShareGetRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.cached_scope(
            request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"]
        )
        row = selectors.volume_get_row(uuid=data["volume_uuid"], tenant=tenant, cluster=cluster)
        namespaces = selectors.namespace_uuids(tenant=tenant, rows=[row])
        volume = row_representation(row, namespaces, selectors.pools_for([row]))
        return success(volume_wrapper(volume))


class VolumeUsageRefreshApi(VolumeApi):
    """Re-measure `fields` of a volume's usage from the files, then answer the volume."""

    check_name = True
    InputSerializer = NamedVolumeInput
    fields: list[str] = []

    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        busy_retry(volume_usage_refresh, actor=self.actor(request), volume=volume, fields=self.fields)
        volume = selectors.volume_get(uuid=volume.uuid, tenant=volume.tenant, cluster=volume.cluster)
        return success(volume_wrapper(volume_representation(volume)))


@extend_schema(
    request=named(NamedVolumeInput, "VolumeShareUsedUpdateRequest"),
    responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 500)},
)
class VolumeShareUsedUpdateApi(VolumeUsageRefreshApi):
    """POST /v1/volume/share/used/update: re-read `Used` from the image on disk."""

    fields = [USED]


@extend_schema(
    request=named(NamedVolumeInput, "VolumeShareSnapLengthUpdateRequest"),
    responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 500)},
)
class VolumeShareSnapLengthUpdateApi(VolumeUsageRefreshApi):
    """POST /v1/volume/share/snap_length/update: re-measure the snapshot layers into `SnapLength`."""

    fields = [SNAP_LENGTH]


class VolumeShareAttachApi(VolumeApi):
    """POST /v1/volume/share/attach (extension): record that a VM has the volume attached."""

    class InputSerializer(VolumeApi.InputSerializer):
        vm_uuid = StrictUUIDField()
        vm_device = StrictCharField(required=False, allow_blank=True, default="", max_length=64)
        vm_host_uuid = StrictUUIDField(required=False, allow_null=True, default=None)
        vm_name = StrictCharField(required=False, allow_blank=True, default="", max_length=128)
        vm_type = StrictCharField(required=False, allow_blank=True, default="", max_length=32)

    @extend_schema(
        request=named(InputSerializer, "VolumeShareAttachRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        busy_retry(
            volume_services.volume_attach,
            actor=self.actor(request),
            volume=volume,
            vm_uuid=data["vm_uuid"],
            device=data["vm_device"],
            host_uuid=str(data["vm_host_uuid"]) if data["vm_host_uuid"] else "",
            vm_name=data["vm_name"],
            vm_type=data["vm_type"],
        )
        volume = selectors.volume_get(uuid=volume.uuid, tenant=volume.tenant, cluster=volume.cluster)
        return success(volume_wrapper(volume_representation(volume)))


class VolumeShareDetachApi(VolumeApi):
    """POST /v1/volume/share/detach (extension): forget a VM's attachment."""

    class InputSerializer(VolumeApi.InputSerializer):
        vm_uuid = StrictUUIDField()

    @extend_schema(
        request=named(InputSerializer, "VolumeShareDetachRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        volume_services.volume_detach(actor=self.actor(request), volume=volume, vm_uuid=data["vm_uuid"])
        volume = selectors.volume_get(uuid=volume.uuid, tenant=volume.tenant, cluster=volume.cluster)
        return success(volume_wrapper(volume_representation(volume)))
