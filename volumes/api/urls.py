"""Routes of the volume endpoints under /v1/volume/share/."""

from django.urls import path

from volumes.api import clone_views, operation_views, snapshot_views, views

urlpatterns = [
    path("list", views.VolumeShareListApi.as_view(), name="volume-share-list"),
    path("create", views.VolumeShareCreateApi.as_view(), name="volume-share-create"),
    path("delete", views.VolumeShareDeleteApi.as_view(), name="volume-share-delete"),
    path("get", views.VolumeShareGetApi.as_view(), name="volume-share-get"),
    path("used/update", views.VolumeShareUsedUpdateApi.as_view(), name="volume-share-used-update"),
    path(
        "snap_length/update",
        views.VolumeShareSnapLengthUpdateApi.as_view(),
        name="volume-share-snap-length-update",
    ),
    path("attach", views.VolumeShareAttachApi.as_view(), name="volume-share-attach"),
    path("detach", views.VolumeShareDetachApi.as_view(), name="volume-share-detach"),
    path(
        "snapshot/create",
        snapshot_views.VolumeShareSnapshotCreateApi.as_view(),
        name="volume-share-snapshot-create",
    ),
    path(
        "snapshot/delete",
        snapshot_views.VolumeShareSnapshotDeleteApi.as_view(),
        name="volume-share-snapshot-delete",
    ),
    path(
        "snapshot/rollback",
        snapshot_views.VolumeShareSnapshotRollbackApi.as_view(),
        name="volume-share-snapshot-rollback",
    ),
    path(
        "snapshot/tree/get",
        snapshot_views.VolumeShareSnapshotTreeGetApi.as_view(),
        name="volume-share-snapshot-tree-get",
    ),
    path(
        "snapshot/list",
        snapshot_views.VolumeShareSnapshotListApi.as_view(),
        name="volume-share-snapshot-list",
    ),
    path("clone", clone_views.VolumeShareCloneApi.as_view(), name="volume-share-clone"),
    path(
        "clone/progress",
        clone_views.VolumeShareCloneProgressApi.as_view(),
        name="volume-share-clone-progress",
    ),
    path("flatten", clone_views.VolumeShareFlattenApi.as_view(), name="volume-share-flatten"),
    path(
        "operation/cancel",
        operation_views.VolumeShareOperationCancelApi.as_view(),
        name="volume-share-operation-cancel",
    ),
]
