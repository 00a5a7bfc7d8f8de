"""The response envelope every /v1/ endpoint answers with: {scode, desc, message, message_cn, stack, data}."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

SUCCESS_MESSAGE = "success"
SUCCESS_MESSAGE_CN = "成功"


def envelope_body(
    data: Any,
    *,
    scode: int = 0,
    desc: str = "",
    message: str = SUCCESS_MESSAGE,
    message_cn: str = SUCCESS_MESSAGE_CN,
    stack: str | None = None,
) -> dict:
    return {
        "scode": scode,
        "desc": desc,
        "message": message,
        "message_cn": message_cn,
        "stack": stack,
        "data": data,
    }


def success(data: Any, *, status: int = 200) -> Response:
    """Wrap a successful payload in the envelope."""
    return Response(envelope_body(data), status=status)


# The scope keys that close the contract's wrappers; the contract's examples leave them empty.
SCOPE_KEYS = ("cluster_uuid", "cluster_name", "cluster_mode", "tenant", "tenant_name")


def scope_fields(cluster, tenant=None) -> dict:
    """The wrapper's scope keys filled from the request's cluster and tenant (empty without a tenant)."""
    return {
        "cluster_uuid": str(cluster.uuid),
        "cluster_name": cluster.name,
        "cluster_mode": cluster.mode,
        "tenant": str(tenant.uuid) if tenant else "",
        "tenant_name": tenant.name if tenant else "",
    }


# The wrapper the contract puts around a volume in create/delete/get/update/clone answers.
def volume_wrapper(volume: dict | None, *, clone_progress: float = 0) -> dict:
    return {"volume": volume, "clone_progress": clone_progress, **dict.fromkeys(SCOPE_KEYS, "")}


def snapshot_wrapper(snapshot: dict | None, tree: dict | None = None) -> dict:
    return {"snapshot": snapshot, "tree": tree, **dict.fromkeys(SCOPE_KEYS, "")}
