"""`/healthz`, `/readyz` and `/metrics`: plain Django views, outside the API's envelope and auth
(they are meant for load balancers and Prometheus on the host or its private network)."""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sharestore.monitoring import health, metrics


@never_cache
@require_GET
def healthz(request):
    """Alive: the process answers. Touches no database."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """Ready: database reachable, a live worker for each pool, each pool directory usable."""
    ready, checks = health.readiness()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


@never_cache
@require_GET
def metrics_view(request):
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
