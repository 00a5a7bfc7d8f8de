"""Routes of the platform's backup-point API under /v1/volume/internal/backuppoint/ (docs/api.md)."""

from django.urls import path

from backups.api import point_views

urlpatterns = [
    path("add", point_views.BackupPointAddApi.as_view(), name="backuppoint-add"),
    path("delete", point_views.BackupPointDeleteApi.as_view(), name="backuppoint-delete"),
    path("update", point_views.BackupPointUpdateApi.as_view(), name="backuppoint-update"),
    path("list", point_views.BackupPointListApi.as_view(), name="backuppoint-list"),
]
