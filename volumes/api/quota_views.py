"""Tenant quota endpoints (an extension, docs/api.md): `quota/get` answers a tenant's limits and what
it holds against them; `quota/set` changes limits. Views validate and call one selector or service.

Tokens: `quota/get` with a tenant-bound token reaches only its own tenant (another answers 3002 like a
missing one); `quota/set` is an operator's action: a platform token only (a tenant-bound one answers
2003).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers

from sharestore import errors
from sharestore.api.envelope import success
from sharestore.api.schema import envelope, error_responses
from volumes.api.fields import StrictIntegerField
from volumes.api.views import ScopedApi, named
from volumes.quota_selectors import QUOTA_FIELDS, tenant_quota
from volumes.services.quotas import MAX_LIMIT, quota_set

# Quota name -> its key in the answer (objects keep the platform's CamelCase).
ANSWER_KEYS = {"volumes": "Volumes", "bytes": "Bytes", "snapshots": "Snapshots", "backups": "Backups"}


def _usage_schema(name: str):
    return inline_serializer(
        name=name,
        fields={
            "Limit": serializers.IntegerField(allow_null=True, help_text="null: unlimited"),
            "Used": serializers.IntegerField(),
        },
    )


QUOTA_ENVELOPE = envelope(
    "QuotaEnvelope",
    inline_serializer(
        name="QuotaWrapper",
        fields={
            "quota": inline_serializer(
                name="Quota",
                fields={key: _usage_schema(f"Quota{key}") for key in ANSWER_KEYS.values()},
            ),
            "tenant": serializers.CharField(),
            "tenant_name": serializers.CharField(),
        },
    ),
)


def _answer(tenant) -> dict:
    usage = tenant_quota(tenant=tenant)
    return {
        "quota": {
            ANSWER_KEYS[key]: {"Limit": usage[key]["limit"], "Used": usage[key]["used"]}
            for key in QUOTA_FIELDS
        },
        "tenant": str(tenant.uuid),
        "tenant_name": tenant.name,
    }


class VolumeShareQuotaGetApi(ScopedApi):
    """POST /v1/volume/share/quota/get: the tenant's limits (null: unlimited) and usage."""

    @extend_schema(
        request=named(ScopedApi.InputSerializer, "VolumeShareQuotaGetRequest"),
        responses={200: QUOTA_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        data = self.validated(request)
        tenant, _cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        return success(_answer(tenant))


class VolumeShareQuotaSetApi(ScopedApi):
    """POST /v1/volume/share/quota/set: change the tenant's limits; a key left out keeps its limit, null
    makes it unlimited. Answers like `quota/get`."""

    class InputSerializer(ScopedApi.InputSerializer):
        volumes = StrictIntegerField(
            required=False, allow_null=True, min_value=0, max_value=MAX_LIMIT["volumes"]
        )
        bytes = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_LIMIT["bytes"])
        snapshots = StrictIntegerField(
            required=False, allow_null=True, min_value=0, max_value=MAX_LIMIT["snapshots"]
        )
        backups = StrictIntegerField(
            required=False, allow_null=True, min_value=0, max_value=MAX_LIMIT["backups"]
        )

    @extend_schema(
        request=named(InputSerializer, "VolumeShareQuotaSetRequest"),
        responses={200: QUOTA_ENVELOPE, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request):
        data = self.validated(request)
        if request.user.tenant_id is not None:
            raise errors.PermissionDenied(reason="quotas are set by operators (a platform token)")
        tenant, _cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        quota_set(
            actor=self.actor(request),
            tenant=tenant,
            **{key: data[key] for key in QUOTA_FIELDS if key in data},
        )
        return success(_answer(tenant))
