"""The clone endpoints: `clone` and `clone/progress` from the contract, and `flatten` (an extension).
Views validate input, call one service or selector, and wrap the result in the envelope; every error
is raised, never returned.

Tokens: `clone` names no tenant. A tenant-bound token reaches only its own tenant's volumes as the
source (another tenant's volume answers 3004 like a missing one) and may name only its own tenant as
`clone_dst_vol_tenant` (another answers 3002); a platform token may clone any volume of the cluster
for any tenant.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from sharestore.api.envelope import success, volume_wrapper
from sharestore.api.schema import error_responses
from sharestore.core.services.waits import busy_retry, latest_operation, short_step_wait
from volumes import selectors
from volumes.api.fields import NameField, StrictBooleanField, StrictCharField, StrictUUIDField
from volumes.api.representations import volume_representation
from volumes.api.schemas import VOLUME_ENVELOPE
from volumes.api.views import NamedVolumeInput, ScopedApi, VolumeApi, named
from volumes.models import Volume
from volumes.services import clones as clone_services
from volumes.services.volumes import check_volume_name


def _answer(volume: Volume, *, tenant, cluster) -> dict:
    """The wrapper with the volume and the progress of its newest clone or flatten operation.

    The operation is read before the volume: the two change in one transaction, so the answer never
    shows 100 with a volume that is not yet available.
    """
    progress = clone_services.clone_progress(clone_services.clone_operation_for(volume=volume))
    volume = selectors.volume_get(uuid=volume.uuid, tenant=tenant, cluster=cluster)
    return volume_wrapper(volume_representation(volume), clone_progress=progress)


class VolumeShareCloneApi(ScopedApi):
    """POST /v1/volume/share/clone: a new volume from a snapshot, linked (an overlay on its layer) or full.

    Answers the new volume (EventState 3 cloning until it is usable; poll `clone/progress` with its
    UUID) and `clone_progress`.
    """

    service_fields = {"clone_dst_vol_name": "name", "is_link": "linked"}

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        volume_uuid = StrictUUIDField()
        volume_name = StrictCharField(allow_blank=True, trim_whitespace=False)
        clone_dst_vol_name = NameField()
        clone_dst_vol_tenant = StrictUUIDField()
        clone_dst_pool_uuid = StrictUUIDField()
        is_link = StrictBooleanField()
        snapshot_uuid = StrictUUIDField()

    @extend_schema(
        request=named(InputSerializer, "VolumeShareCloneRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 500, 503, 507)},
    )
    def post(self, request):
        data = self.validated(request)
        allowed = request.user.tenant_id
        cluster = selectors.cluster_get(uuid=data["cluster_uuid"])
        tenant = selectors.tenant_get(uuid=data["clone_dst_vol_tenant"], allowed_tenant_id=allowed)
        source = clone_services.clone_source_get(
            uuid=data["volume_uuid"], cluster=cluster, allowed_tenant_id=allowed
        )
        check_volume_name(source, data["volume_name"])
        snapshot = selectors.snapshot_get(volume=source, uuid=data["snapshot_uuid"])
        pool = selectors.pool_get(uuid=data["clone_dst_pool_uuid"], cluster=cluster, tenant=tenant)
        volume = busy_retry(
            clone_services.clone_create,
            actor=self.actor(request),
            source=source,
            snapshot=snapshot,
            tenant=tenant,
            pool=pool,
            **self.service_arguments(data),
        )
        # A linked clone is constant time: it answers available (a full clone answers cloning).
        short_step_wait(latest_operation(target_uuid=volume.uuid))
        return success(_answer(volume, tenant=tenant, cluster=cluster))


class VolumeShareCloneProgressApi(VolumeApi):
    """GET /v1/volume/share/clone/progress: how far the clone (or flatten) of a volume is, 0-100.

    `volume_uuid` names the clone, or its source (answering for the source's newest clone). Query
    parameters as in the contract; the fields of the contract's example body are accepted too. A failed
    clone answers its failure's scode and messages.
    """

    @extend_schema(
        parameters=[named(VolumeApi.InputSerializer, "VolumeShareCloneProgressQuery")],
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 500, 503, 504, 507)},
    )
    def get(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        data = self.validated(request, {**body, **request.query_params.dict()})
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        volume = selectors.volume_get(uuid=data["volume_uuid"], tenant=tenant, cluster=cluster)
        operation = clone_services.clone_operation_for(volume=volume)
        progress = clone_services.clone_progress(operation)
        clone = operation.volume
        representation = None
        # Asked by the source's UUID, the clone may belong to another tenant: only its progress is shown.
        if clone is not None and clone.tenant_id == tenant.pk:
            representation = volume_representation(
                selectors.volume_get(uuid=clone.uuid, tenant=tenant, cluster=cluster)
            )
        return success(volume_wrapper(representation, clone_progress=progress))


class VolumeShareFlattenApi(VolumeApi):
    """POST /v1/volume/share/flatten (extension): make a linked clone independent of its source's snapshot.

    Answers the volume (EventState 10 flattening until done) and `clone_progress`; poll
    `clone/progress`. When it is done `ParentSnapshot` is "" and the snapshot's `Ref` no longer counts it.
    """

    check_name = True
    InputSerializer = NamedVolumeInput

    @extend_schema(
        request=named(NamedVolumeInput, "VolumeShareFlattenRequest"),
        responses={200: VOLUME_ENVELOPE, **error_responses(400, 401, 404, 409, 500, 503, 507)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        busy_retry(clone_services.volume_flatten, actor=self.actor(request), volume=volume)
        return success(_answer(volume, tenant=volume.tenant, cluster=volume.cluster))
