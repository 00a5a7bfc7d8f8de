"""Routes of the backup endpoints under /v1/volume/share/backup/."""

from django.urls import path

from backups.api import views

urlpatterns = [
    path("add", views.VolumeShareBackupAddApi.as_view(), name="volume-share-backup-add"),
    path("delete", views.VolumeShareBackupDeleteApi.as_view(), name="volume-share-backup-delete"),
    path("restore", views.VolumeShareBackupRestoreApi.as_view(), name="volume-share-backup-restore"),
    path("list", views.VolumeShareBackupListApi.as_view(), name="volume-share-backup-list"),
]
