"""One APIView per documented URL of the snapshot endpoints. Views validate input, call one service
or selector, and wrap the result in the envelope; every error is raised, never returned."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema

from sharestore.api.envelope import snapshot_wrapper, success
from sharestore.api.schema import error_responses
from sharestore.core.services.waits import busy_retry, latest_operation, short_step_wait
from volumes import selectors
from volumes.api.fields import DescField, NameField, StrictBooleanField, StrictCharField, StrictUUIDField
from volumes.api.snapshot_representations import SnapshotForest
from volumes.api.snapshot_schemas import SNAPSHOT_ENVELOPE, SNAPSHOT_LIST_ENVELOPE
from volumes.api.views import VolumeApi, named
from volumes.models import Volume
from volumes.services import snapshots as snapshot_services


def _forest(volume: Volume) -> SnapshotForest:
    volume = Volume.objects.get(pk=volume.pk)
    return SnapshotForest(volume, selectors.snapshot_rows(volume=volume))


def _snapshot_answer(volume: Volume, snapshot_uuid) -> dict:
    forest = _forest(volume)
    row = next(r for r in forest.rows if r.uuid == snapshot_uuid)
    return forest.representation(row)


class VolumeShareSnapshotCreateApi(VolumeApi):
    """POST /v1/volume/share/snapshot/create: freeze the volume's current state as a new snapshot."""

    class InputSerializer(VolumeApi.InputSerializer):
        snapshot_name = NameField()
        desc = DescField()

    @extend_schema(
        request=named(InputSerializer, "VolumeShareSnapshotCreateRequest"),
        responses={200: SNAPSHOT_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        snapshot = busy_retry(
            snapshot_services.snapshot_create,
            actor=self.actor(request),
            volume=volume,
            name=data["snapshot_name"],
            desc=data["desc"],
        )
        short_step_wait(latest_operation(target_uuid=snapshot.uuid))
        return success(snapshot_wrapper(_snapshot_answer(volume, snapshot.uuid)))


class VolumeShareSnapshotDeleteApi(VolumeApi):
    """POST /v1/volume/share/snapshot/delete: delete a snapshot (its layer is merged away or kept hidden)."""

    class InputSerializer(VolumeApi.InputSerializer):
        snapshot_uuid = StrictUUIDField()
        snapshot_name = StrictCharField(allow_blank=True, trim_whitespace=False)

    @extend_schema(
        request=named(InputSerializer, "VolumeShareSnapshotDeleteRequest"),
        responses={200: SNAPSHOT_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        snapshot = selectors.snapshot_get(volume=volume, uuid=data["snapshot_uuid"])
        busy_retry(
            snapshot_services.snapshot_delete,
            actor=self.actor(request),
            volume=volume,
            snapshot=snapshot,
            name=data["snapshot_name"],
        )
        return success(snapshot_wrapper(None))


class VolumeShareSnapshotRollbackApi(VolumeApi):
    """POST /v1/volume/share/snapshot/rollback: put the volume back to any snapshot of its tree.

    `snapshot_first` (extension, default false) snapshots the current state first, so the rollback
    can be undone; that snapshot is returned in `snapshot` (null otherwise).
    """

    class InputSerializer(VolumeApi.InputSerializer):
        snapshot_uuid = StrictUUIDField()
        snapshot_first = StrictBooleanField(required=False, default=False)
        snapshot_first_name = StrictCharField(
            required=False,
            allow_blank=True,
            allow_null=True,
            trim_whitespace=False,
            default="",
            max_length=4096,
        )

    @extend_schema(
        request=named(InputSerializer, "VolumeShareSnapshotRollbackRequest"),
        responses={200: SNAPSHOT_ENVELOPE, **error_responses(400, 401, 404, 409)},
    )
    def post(self, request):
        data = self.validated(request)
        volume = self.volume(request, data)
        snapshot = selectors.snapshot_get(volume=volume, uuid=data["snapshot_uuid"])
        operation, first = busy_retry(
            snapshot_services.snapshot_rollback,
            actor=self.actor(request),
            volume=volume,
            snapshot=snapshot,
            snapshot_first=data["snapshot_first"],
            snapshot_first_name=data["snapshot_first_name"] or None,
        )
        short_step_wait(operation)
        return success(snapshot_wrapper(_snapshot_answer(volume, first.uuid) if first else None))


class VolumeShareSnapshotTreeGetApi(VolumeApi):
    """POST /v1/volume/share/snapshot/tree/get: the volume's snapshot tree with the head in it."""

    @extend_schema(
        request=named(VolumeApi.InputSerializer, "VolumeShareSnapshotTreeGetRequest"),
        responses={200: SNAPSHOT_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        volume = self.volume(request, self.validated(request))
        return success(snapshot_wrapper(None, _forest(volume).tree()))


class VolumeShareSnapshotListApi(VolumeApi):
    """POST /v1/volume/share/snapshot/list: the volume's snapshots, oldest first."""

    @extend_schema(
        request=named(VolumeApi.InputSerializer, "VolumeShareSnapshotListRequest"),
        responses={200: SNAPSHOT_LIST_ENVELOPE, **error_responses(400, 401, 404)},
    )
    def post(self, request):
        volume = self.volume(request, self.validated(request))
        forest = _forest(volume)
        return success({"list": [forest.representation(row) for row in forest.visible_rows()]})
