"""Routes of the platform's backup-point API under /v1/volume/internal/backuppoint/ (docs/api.md)."""

from django.urls import path

from backups.api import point_views

ROUTES = {
    "add": point_views.BackupPointAddApi,
    "delete": point_views.BackupPointDeleteApi,
    "update": point_views.BackupPointUpdateApi,
    "list": point_views.BackupPointListApi,
}

urlpatterns = [path(route, view.as_view(), name=f"backuppoint-{route}") for route, view in ROUTES.items()]
