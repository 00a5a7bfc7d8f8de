"""`operation/cancel` (an extension): cancel a copy (full clone, backup, restore, flatten) by its
operation's UUID. The view validates the body, resolves the caller's scope and the operation in it,
calls the one cancel service (`sharestore.core.services.cancel.operation_cancel`, as the console
does) and answers the operation as it is now.

Tokens: a tenant-bound token reaches only its own tenant's operations (another tenant answers 3002,
and an operation on another tenant's volume answers 3008 exactly like a missing one); a platform token
any operation of the cluster's volumes for the tenant it names.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from sharestore.api.envelope import scope_fields, success
from sharestore.api.schema import ScopeSchema, envelope, error_responses, named
from sharestore.core.models import Operation
from sharestore.core.services.cancel import operation_cancel
from volumes import selectors
from volumes.api.fields import StrictUUIDField
from volumes.api.views import ScopedApi


def _epoch(value) -> int | None:
    return int(value.timestamp()) if value is not None else None


def operation_representation(operation: Operation) -> dict:
    """An operation as the API shows it (CamelCase keys, epoch seconds, sizes in bytes)."""
    return {
        "UUID": str(operation.uuid),
        "Kind": operation.kind,
        "State": operation.state,
        "Phase": operation.phase,
        "Progress": round(float(operation.progress), 2),
        "BytesDone": operation.bytes_done,
        "BytesTotal": operation.bytes_total,
        "TargetType": operation.target_type,
        "TargetUUID": str(operation.target_uuid),
        "VolumeUUID": str(operation.volume.uuid) if operation.volume_id else "",
        "CancelRequestedAt": _epoch(operation.cancel_requested_at),
        "CancelRequestedBy": operation.cancel_requested_by,
        "Ctime": _epoch(operation.created),
        "Finished": _epoch(operation.finished),
    }


class OperationSchema(serializers.Serializer):
    """An operation: what it does, how far it is, and whether a cancel was asked."""

    UUID = serializers.UUIDField()
    Kind = serializers.CharField(help_text="clone.full, backup.create, backup.restore, volume.flatten, ...")
    State = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed", "cancelled"])
    Phase = serializers.CharField()
    Progress = serializers.FloatField(help_text="percent, 0-100")
    BytesDone = serializers.IntegerField()
    BytesTotal = serializers.IntegerField()
    TargetType = serializers.CharField()
    TargetUUID = serializers.UUIDField()
    VolumeUUID = serializers.CharField()
    CancelRequestedAt = serializers.IntegerField(allow_null=True, help_text="epoch seconds")
    CancelRequestedBy = serializers.CharField()
    Ctime = serializers.IntegerField(help_text="epoch seconds")
    Finished = serializers.IntegerField(allow_null=True, help_text="epoch seconds")


class OperationWrapperSchema(ScopeSchema):
    """The wrapper around one operation."""

    operation = OperationSchema()


OPERATION_ENVELOPE = envelope("OperationEnvelope", OperationWrapperSchema())


class VolumeShareOperationCancelApi(ScopedApi):
    """POST /v1/volume/share/operation/cancel (extension): cancel a queued or running copy.

    A queued copy answers `cancelled` at once; a running one answers `running` with
    `CancelRequestedAt` set, and its worker stops the copy, removes its partial output and ends it
    `cancelled` (poll `clone/progress` or the volume). 409: 4721 for a kind that is no copy, 4722 for
    an operation that has already ended.
    """

    class InputSerializer(ScopedApi.InputSerializer):
        operation_uuid = StrictUUIDField()

    @extend_schema(
        request=named(InputSerializer, "VolumeShareOperationCancelRequest"),
        responses={200: OPERATION_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        operation = selectors.operation_get(uuid=data["operation_uuid"], tenant=tenant, cluster=cluster)
        operation = operation_cancel(actor=self.actor(request), operation=operation)
        return success(
            {
                "operation": operation_representation(operation),
                **scope_fields(cluster, tenant),
            }
        )
