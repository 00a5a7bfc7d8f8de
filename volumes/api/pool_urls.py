"""Routes of the platform's shared-pool API under /v1/pool/share/ (docs/api.md, "Pools")."""

from django.urls import path

from volumes.api import pool_views

urlpatterns = [
    path("list", pool_views.PoolShareListApi.as_view(), name="pool-share-list"),
    path("get", pool_views.PoolShareGetApi.as_view(), name="pool-share-get"),
    path("create", pool_views.PoolShareCreateApi.as_view(), name="pool-share-create"),
    path("delete", pool_views.PoolShareDeleteApi.as_view(), name="pool-share-delete"),
    path("set", pool_views.PoolShareSetApi.as_view(), name="pool-share-set"),
    path("status/check", pool_views.PoolShareStatusCheckApi.as_view(), name="pool-share-status-check"),
    path(
        "pool_type/support",
        pool_views.PoolShareTypeSupportApi.as_view(),
        name="pool-share-pool-type-support",
    ),
]
