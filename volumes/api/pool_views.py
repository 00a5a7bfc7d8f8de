"""The platform's shared-pool API under /v1/pool/share/ (an extension: docs/api.md, "Pools"). One
APIView per URL: validate, call one service or selector, answer in the envelope; errors are raised."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from sharestore import errors
from sharestore.api.envelope import envelope_body, success
from sharestore.api.schema import error_responses
from volumes import pool_selectors, selectors
from volumes.api import fields
from volumes.api.fields import NameField, StrictCharField, StrictIntegerField, StrictUUIDField
from volumes.api.pool_representations import pool_representation, pool_wrapper
from volumes.api.pool_schemas import POOL_ENVELOPE, POOL_LIST_ENVELOPE, POOL_TYPES_ENVELOPE
from volumes.api.views import ScopedApi, VolumeShareListApi, named
from volumes.services import pools as pool_services
from volumes.services.pool_types import pool_type_from_code, supported_pool_types

THRESHOLD = "overAllocationThreshold"


def api_schema(component: str, answer, *statuses: int, query: bool = False):
    """Documents a view class: its nested InputSerializer as the JSON body (or, with `query`, as
    the query parameters) under `component`, `answer` as the 200 envelope, the error statuses."""

    def decorate(view):
        serializer = named(view.InputSerializer, component)
        request = {"parameters": [serializer]} if query else {"request": serializer}
        return extend_schema(**request, responses={200: answer, **error_responses(*statuses)})(view)

    return decorate


def overcommit_from_attr(attr: dict):
    """The over-allocation ratio an `attr` map sets (None when it names none); other keys are refused."""
    for key in sorted(attr):
        if key != THRESHOLD:
            raise errors.InvalidParameter(
                field=f"attr.{key}", reason=f"unknown attribute (known: {THRESHOLD})"
            )
    if THRESHOLD not in attr:
        return None
    return pool_services.validate_overcommit(attr[THRESHOLD], field=f"attr.{THRESHOLD}")


class AttrField(serializers.DictField):
    """`attr`: a JSON object of strings."""

    child = StrictCharField(allow_blank=True)


class PoolApi(ScopedApi):
    """Base of the pool endpoints: the cluster, the tenant the request acts for, the pool."""

    platform_only = False

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        tenant = StrictUUIDField()
        pool_uuid = StrictUUIDField()

    def check_platform(self, request) -> None:
        """Pools are shared by tenants: registering, changing and removing one needs a platform token."""
        if request.user.tenant_id is not None:
            raise errors.PermissionDenied(reason="pools are managed with a platform token, not a tenant's")

    def pool(self, request, data):
        """(pool with its figures, tenant, cluster) for a request naming tenant and pool_uuid."""
        if self.platform_only:
            self.check_platform(request)
        tenant, cluster = self.scope(request, tenant_uuid=data["tenant"], cluster_uuid=data["cluster_uuid"])
        pool = pool_selectors.pool_detail(uuid=data["pool_uuid"], cluster=cluster, tenant=tenant)
        return pool, tenant, cluster


def page_window(data: dict) -> tuple[int, int]:
    """(offset, limit) of a list request, as in volume `list`: page_size 0 means the first
    SHARESTORE_MAX_PAGE_SIZE rows, pages count from 1 (0 is the first page too)."""
    maximum = settings.SHARESTORE_MAX_PAGE_SIZE
    if data["page_size"] > maximum:
        raise errors.PageSizeTooLarge(page_size=data["page_size"], maximum=maximum)
    limit = data["page_size"] or maximum
    return (max(data["page_num"], 1) - 1) * limit, limit


@api_schema("PoolShareListRequest", POOL_LIST_ENVELOPE, 400, 401, 404)
class PoolShareListApi(PoolApi):
    """POST /v1/pool/share/list: a page of the cluster's pools (those the tenant may use when named)."""

    class InputSerializer(VolumeShareListApi.InputSerializer):
        """Volume `list`'s paging and name filter; `tenant` optional, no pool filter."""

        tenant = fields.OptionalUUIDField()
        filter_pool_uuid = None

        def validate_tenant(self, value):
            return str(StrictUUIDField().run_validation(value)) if value else ""

    def post(self, request):
        data = self.validated(request)
        cluster = selectors.cluster_get(uuid=data["cluster_uuid"])
        tenant = None
        if data["tenant"]:
            tenant = selectors.tenant_get(uuid=data["tenant"], allowed_tenant_id=request.user.tenant_id)
        elif request.user.tenant_id is not None:
            tenant = pool_selectors.tenant_of_caller(request.user.tenant_id)
        offset, limit = page_window(data)
        pools, total = pool_selectors.pool_list(
            cluster=cluster, tenant=tenant, filter_name=data["filter_name"], offset=offset, limit=limit
        )
        scope = pool_wrapper(None, cluster=cluster, tenant=tenant)
        del scope["pool"], scope["PoolTypes"]
        return success(
            {
                # Every entry: {tenant, tenant_name, pool, cluster_uuid, cluster_name, cluster_mode}.
                "infos": [{**scope, "pool": pool_representation(pool)} for pool in pools],
                "each_range_list_state": [
                    {
                        "cluster_uuid": scope["cluster_uuid"],
                        "cluster_name": scope["cluster_name"],
                        "cluster_mode": scope["cluster_mode"],
                        "namespace_uuid": str(tenant.namespace.uuid) if tenant else "",
                        "result": envelope_body(""),
                        "total_count": total,
                    }
                ],
                "TotalCount": total,
            }
        )


@api_schema("PoolShareGetRequest", POOL_ENVELOPE, 400, 401, 404)
class PoolShareGetApi(PoolApi):
    """POST /v1/pool/share/get: one pool the tenant may use."""

    def post(self, request):
        pool, tenant, cluster = self.pool(request, self.validated(request))
        return success(pool_wrapper(pool_representation(pool), cluster=cluster, tenant=tenant))


@api_schema("PoolShareCreateRequest", POOL_ENVELOPE, 400, 401, 403, 404, 503)
class PoolShareCreateApi(PoolApi):
    """POST /v1/pool/share/create: register a pool (platform token). Extensions: `path` (where this
    service's workers reach the pool; default `source`), `capacity` (bytes; default the filesystem's)."""

    service_fields = {"pool_name": "name", "capacity": "capacity"}

    class InputSerializer(serializers.Serializer):
        cluster_uuid = StrictUUIDField()
        pool_name = NameField()
        pool_type = StrictIntegerField(min_value=-(2**31), max_value=2**31 - 1)
        zone_uuid = StrictUUIDField()
        ip = StrictCharField(allow_blank=True, max_length=255)
        port = StrictCharField(required=False, allow_blank=True, default="", max_length=16)
        source = StrictCharField(required=False, allow_blank=True, default="", max_length=1024)
        username = StrictCharField(required=False, allow_blank=True, default="", max_length=128)
        password = StrictCharField(required=False, allow_blank=True, default="", write_only=True)
        limit_host = fields.StrictBooleanField(required=False, default=False)
        avail_host = serializers.ListField(child=StrictUUIDField(), required=False, default=list)
        avail_tenant = serializers.ListField(child=StrictUUIDField(), required=False, default=list)
        attr = AttrField()
        path = StrictCharField(required=False, allow_blank=True, default="", max_length=1024)
        capacity = StrictIntegerField(required=False, allow_null=True, default=None, min_value=0)

    def post(self, request):
        self.check_platform(request)
        data = self.validated(request)
        cluster = selectors.cluster_get(uuid=data["cluster_uuid"])
        zone = pool_selectors.zone_get(uuid=data["zone_uuid"])
        pool_type, driver = pool_type_from_code(data["pool_type"])
        ratio = overcommit_from_attr(data["attr"])
        path = data["path"] or data["source"]
        if not path:
            raise errors.MissingParameter(field="source")
        hosts = pool_selectors.hosts_get(uuids=data["avail_host"], cluster=cluster)
        if data["limit_host"] and not hosts:
            raise errors.InvalidParameter(field="avail_host", reason="limit_host needs at least one host")
        pool = pool_services.pool_create(
            actor=self.actor(request),
            cluster=cluster,
            zone=zone,
            path=path,
            pool_type=pool_type,
            driver=driver,
            overcommit_ratio=1 if ratio is None else ratio,
            tenants=pool_selectors.tenants_get(uuids=data["avail_tenant"]),
            mounts=None if not hosts else dict.fromkeys(hosts, path),
            origin={k: data[k] for k in ("ip", "port", "source", "username", "limit_host")},
            **self.service_arguments(data),
        )
        pool = pool_selectors.pool_detail(uuid=pool.uuid, cluster=cluster, tenant=None)
        return success(pool_wrapper(pool_representation(pool), cluster=cluster))


class PoolNamedInput(PoolApi.InputSerializer):
    """Input of the endpoints that name the pool by UUID and name."""

    pool_name = StrictCharField(allow_blank=True, trim_whitespace=False)


@api_schema("PoolShareDeleteRequest", POOL_ENVELOPE, 400, 401, 403, 404, 409)
class PoolShareDeleteApi(PoolApi):
    """POST /v1/pool/share/delete: forget a pool that holds no volume (platform token)."""

    platform_only = True
    InputSerializer = PoolNamedInput

    def post(self, request):
        data = self.validated(request)
        pool, tenant, cluster = self.pool(request, data)
        pool_services.check_name_matches(
            pool, data["pool_name"], field="pool_name", kind="pool", kind_cn="存储池"
        )
        pool_services.pool_delete(actor=self.actor(request), pool=pool)
        return success(pool_wrapper({}, cluster=cluster, tenant=tenant))


@api_schema("PoolShareSetRequest", POOL_ENVELOPE, 400, 401, 403, 404)
class PoolShareSetApi(PoolApi):
    """POST /v1/pool/share/set: change the over-allocation threshold (platform token)."""

    platform_only = True

    class InputSerializer(PoolNamedInput):
        attr = AttrField()

    def post(self, request):
        data = self.validated(request)
        pool, tenant, cluster = self.pool(request, data)
        pool_services.check_name_matches(
            pool, data["pool_name"], field="pool_name", kind="pool", kind_cn="存储池"
        )
        ratio = overcommit_from_attr(data["attr"])
        if ratio is None:
            raise errors.MissingParameter(field=f"attr.{THRESHOLD}")
        pool_services.pool_update(actor=self.actor(request), pool=pool, overcommit_ratio=ratio)
        return success(pool_wrapper(None, cluster=cluster, tenant=tenant))


@api_schema("PoolShareStatusCheckRequest", POOL_ENVELOPE, 400, 401, 404, 503)
class PoolShareStatusCheckApi(PoolApi):
    """POST /v1/pool/share/status/check: check the mount (identity marker) and the filesystem again;
    the pool's Status follows, and a problem answers its error after it is recorded."""

    def post(self, request):
        pool, tenant, cluster = self.pool(request, self.validated(request))
        pool_services.pool_status_check(actor=self.actor(request), pool=pool)
        return success(pool_wrapper(None, cluster=cluster, tenant=tenant))


@api_schema("PoolShareTypeSupportQuery", POOL_TYPES_ENVELOPE, 400, 401, 404, query=True)
class PoolShareTypeSupportApi(PoolApi):
    """GET /v1/pool/share/pool_type/support: the pool types a registered driver runs."""

    class InputSerializer(serializers.Serializer):
        cluster_uuid = serializers.UUIDField()

    def get(self, request):
        data = self.validated(request, {k: v for k, v in request.query_params.items()})
        selectors.cluster_get(uuid=data["cluster_uuid"])
        return success({"PoolTypes": supported_pool_types()})
