"""Routes of the platform's shared-pool API under /v1/pool/share/ (docs/api.md, "Pools")."""

from django.urls import path

from volumes.api import pool_views

ROUTES = {
    "list": pool_views.PoolShareListApi,
    "get": pool_views.PoolShareGetApi,
    "create": pool_views.PoolShareCreateApi,
    "delete": pool_views.PoolShareDeleteApi,
    "set": pool_views.PoolShareSetApi,
    "status/check": pool_views.PoolShareStatusCheckApi,
    "pool_type/support": pool_views.PoolShareTypeSupportApi,
}

urlpatterns = [
    path(route, view.as_view(), name="pool-share-" + route.replace("/", "-").replace("_", "-"))
    for route, view in ROUTES.items()
]
