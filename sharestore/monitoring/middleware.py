"""Request id and request latency middleware."""

from __future__ import annotations

import re
import time
import uuid

from sharestore.core import request_id
from sharestore.monitoring import metrics

HEADER = "X-Request-ID"
# A caller's id is kept when it is short and printable; anything else is replaced.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Honours an incoming X-Request-ID (or makes one), exposes it to logs and operations and
    returns it in the response header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        rid = incoming if _ACCEPTABLE.match(incoming) else uuid.uuid4().hex
        request.request_id = rid
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[HEADER] = rid
        return response


class MetricsMiddleware:
    """Observes each request's latency under its URL name (not its path: bounded label values)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        endpoint = (match.view_name if match and match.view_name else "unmatched") or "unmatched"
        metrics.REQUEST_LATENCY.labels(endpoint=endpoint, method=request.method).observe(
            time.perf_counter() - started
        )
        metrics.REQUESTS.labels(
            endpoint=endpoint, method=request.method, status=str(response.status_code)
        ).inc()
        return response
