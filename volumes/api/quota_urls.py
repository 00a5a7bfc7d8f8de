"""Routes of the tenant quota extension under /v1/volume/share/quota/ (docs/api.md)."""

from django.urls import path

from volumes.api import quota_views

urlpatterns = [
    path("get", quota_views.VolumeShareQuotaGetApi.as_view(), name="volume-share-quota-get"),
    path("set", quota_views.VolumeShareQuotaSetApi.as_view(), name="volume-share-quota-set"),
]
