"""URLconf of the API read benchmark: the service's URLs plus the bare views it is compared with.

A bare view does the least a Django view can for the same answer: it parses the JSON body, runs one
indexed single-table `.values()` query of the same rows (tenant and cluster given by id) and answers
them as JSON through orjson (the fastest encoder at hand, as the service's read endpoints use). It
goes through the same middleware, without DRF, authentication or the envelope.
"""

import json

import orjson
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from sharestore.urls import handler404, handler500  # noqa: F401
from sharestore.urls import urlpatterns as service_urlpatterns
from volumes.choices import LIVE_STATES
from volumes.models import Volume

FIELDS = (
    "uuid",
    "name",
    "volume_type",
    "pool_id",
    "capacity",
    "used",
    "snap_length",
    "snap_cap",
    "created",
    "modified",
    "state",
)


def _json(rows) -> HttpResponse:
    for row in rows:
        row["uuid"] = str(row["uuid"])
        row["created"] = int(row["created"].timestamp())
        row["modified"] = int(row["modified"].timestamp())
    return HttpResponse(orjson.dumps({"list": rows}), content_type="application/json")


@csrf_exempt
def bare_list(request):
    body = json.loads(request.body)
    rows = list(
        Volume.objects.filter(
            tenant_id=body["tenant_id"], cluster_id=body["cluster_id"], state__in=LIVE_STATES
        )
        .order_by("-created", "-id")
        .values(*FIELDS)[: body["page_size"]]
    )
    return _json(rows)


@csrf_exempt
def bare_get(request):
    body = json.loads(request.body)
    rows = list(
        Volume.objects.filter(
            uuid=body["volume_uuid"],
            tenant_id=body["tenant_id"],
            cluster_id=body["cluster_id"],
            state__in=LIVE_STATES,
        ).values(*FIELDS)[:1]
    )
    return _json(rows)


urlpatterns = [
    path("bench/bare/list", bare_list),
    path("bench/bare/get", bare_get),
    *service_urlpatterns,
]
