"""Routes of the volume endpoints under /v1/volume/share/."""

from django.urls import URLPattern, path

from volumes.api import clone_views, operation_views, snapshot_views, views

# (route, view); each route's URL name is derived from the route in `_volume_share_path`.
ROUTES = [
    ("list", views.VolumeShareListApi),
    ("create", views.VolumeShareCreateApi),
    ("delete", views.VolumeShareDeleteApi),
    ("get", views.VolumeShareGetApi),
    ("used/update", views.VolumeShareUsedUpdateApi),
    ("snap_length/update", views.VolumeShareSnapLengthUpdateApi),
    ("attach", views.VolumeShareAttachApi),
    ("detach", views.VolumeShareDetachApi),
    ("snapshot/create", snapshot_views.VolumeShareSnapshotCreateApi),
    ("snapshot/delete", snapshot_views.VolumeShareSnapshotDeleteApi),
    ("snapshot/rollback", snapshot_views.VolumeShareSnapshotRollbackApi),
    ("snapshot/tree/get", snapshot_views.VolumeShareSnapshotTreeGetApi),
    ("snapshot/list", snapshot_views.VolumeShareSnapshotListApi),
    ("clone", clone_views.VolumeShareCloneApi),
    ("clone/progress", clone_views.VolumeShareCloneProgressApi),
    ("flatten", clone_views.VolumeShareFlattenApi),
    ("operation/cancel", operation_views.VolumeShareOperationCancelApi),
]


def _volume_share_path(route: str, view) -> URLPattern:
    """`snapshot/tree/get` is named `volume-share-snapshot-tree-get` ("/" and "_" become "-")."""
    name = "volume-share-" + route.replace("/", "-").replace("_", "-")
    return path(route, view.as_view(), name=name)


urlpatterns = [_volume_share_path(route, view) for route, view in ROUTES]
