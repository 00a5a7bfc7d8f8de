"""The volume page's everyday actions: take, roll back to and delete a snapshot, linked and full
clone. Each previews on GET (where the snapshot sits in the tree, what is lost or copied, the target
pool's room) and runs on POST the same service the API view calls (`volumes.services.snapshots`,
`volumes.services.clones`), as the console user; see `sharestore.core.console_actions`."""

from __future__ import annotations

from django import forms
from django.db.models import Sum
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core.console_actions import action_view, bound_data
from sharestore.core.services.waits import latest_operation
from volumes import selectors
from volumes.choices import LIVE_STATES, SnapshotStatus
from volumes.drivers import get_driver
from volumes.models import Pool, Snapshot, Tenant, Volume
from volumes.services import clones as clone_services
from volumes.services import snapshots as snapshot_services
from volumes.services.space import pool_reserved

SNAPSHOT_PERMISSION = "volumes.snapshot_volume"
ROLLBACK_PERMISSION = "volumes.rollback_volume"
CLONE_PERMISSION = "volumes.clone_volume"


# -- reads of the previews (recorded sizes; the only storage read is the constant-time free space) ----


def snapshot_path(snapshot: Snapshot) -> list[Snapshot]:
    """The snapshot's ancestors and itself, root first (one query for the volume's tree)."""
    rows = {s.pk: s for s in Snapshot.objects.filter(volume_id=snapshot.volume_id)}
    chain, node, seen = [], rows.get(snapshot.pk), set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        chain.append(node)
        node = rows.get(node.parent_id)
    return list(reversed(chain))


def chain_bytes(snapshot: Snapshot, capacity: int) -> int:
    """Allocated bytes of the layers a copy of `snapshot` reads, as recorded, at most the capacity."""
    return min(sum(s.size for s in snapshot_path(snapshot)), capacity)


def pool_room(pool: Pool) -> dict:
    """A pool's room for a new volume: the accounting (capacity x overcommit against the live
    volumes' capacities) and the filesystem's free space less the copies in progress (statvfs)."""
    committed = (
        Volume.objects.filter(pool=pool, state__in=LIVE_STATES).aggregate(total=Sum("capacity"))["total"] or 0
    )
    room = {
        "pool": pool,
        "limit": pool.capacity_limit,
        "committed": committed,
        "headroom": pool.capacity_limit - committed,
        "fs_free": None,
        "reserved": pool_reserved(pool),
    }
    try:
        room["fs_free"] = get_driver(pool.driver, pool.path, str(pool.uuid)).space().free
    except (errors.ServiceError, OSError):
        pass
    return room


# -- forms ----------------------------------------------------------------------------------------------


class SnapshotChoice(forms.ModelChoiceField):
    """A snapshot of the volume, named by its UUID in the URL."""

    def __init__(self, volume: Volume, **kwargs):
        queryset = volume.snapshots.filter(status=SnapshotStatus.AVAILABLE).order_by("created", "id")
        super().__init__(queryset=queryset, to_field_name="uuid", label=_("snapshot"), **kwargs)

    def label_from_instance(self, obj):
        return obj.name


class SnapshotCreateForm(forms.Form):
    """Take a snapshot: its name and description."""

    name = forms.CharField(label=pgettext_lazy("action", "snapshot name"), max_length=128)
    desc = forms.CharField(label=pgettext_lazy("action", "description"), max_length=1024, required=False)


class RollbackForm(forms.Form):
    """Roll back to a snapshot, optionally snapshotting the current state first."""

    snapshot_first = forms.BooleanField(
        label=_("snapshot the current state first"),
        required=False,
        help_text=_("Keeps what was written since, so the rollback can be undone."),
    )
    snapshot_first_name = forms.CharField(
        label=_("name of that snapshot"),
        max_length=128,
        required=False,
        help_text=_("Empty: a name is made."),
    )

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {"snapshot": SnapshotChoice(volume), **self.fields}


class SnapshotDeleteForm(forms.Form):
    """Delete a snapshot."""

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        queryset = volume.snapshots.filter(status__in=snapshot_services.DELETABLE_STATUSES)
        self.fields["snapshot"] = SnapshotChoice(volume)
        self.fields["snapshot"].queryset = queryset.order_by("created", "id")


class CloneForm(forms.Form):
    """A linked or full clone of a snapshot into a pool, for a tenant."""

    LINKED, FULL = "linked", "full"

    kind = forms.ChoiceField(
        label=_("kind of clone"),
        choices=[
            (LINKED, _("linked (an overlay on the snapshot's layer; instant)")),
            (FULL, _("full (an independent copy)")),
        ],
        widget=forms.RadioSelect,
    )
    name = forms.CharField(label=_("name of the new volume"), max_length=128)

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {"snapshot": SnapshotChoice(volume), **self.fields}
        self.fields["tenant"] = forms.ModelChoiceField(
            Tenant.objects.order_by("name"), to_field_name="uuid", label=_("tenant")
        )
        self.fields["pool"] = forms.ModelChoiceField(
            Pool.objects.filter(cluster=volume.cluster).order_by("name"),
            to_field_name="uuid",
            label=pgettext_lazy("action", "target pool"),
        )


# -- the views ------------------------------------------------------------------------------------------


class VolumeActionsMixin:
    """The volume page's actions, mixed into VolumeAdmin (`get_action_urls` joins its URLs)."""

    def get_action_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/actions/snapshot/",
                view(self.snapshot_create_view),
                name="volumes_volume_snapshot",
            ),
            path(
                "<int:object_id>/actions/rollback/",
                view(self.snapshot_rollback_view),
                name="volumes_volume_rollback",
            ),
            path(
                "<int:object_id>/actions/delete-snapshot/",
                view(self.snapshot_delete_view),
                name="volumes_volume_delete_snapshot",
            ),
            path("<int:object_id>/actions/clone/", view(self.clone_view), name="volumes_volume_clone"),
        ]

    def _volume_done(self, request, volume: Volume, message: str):
        from django.contrib import messages

        self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:volumes_volume_change", args=[volume.pk]))

    @staticmethod
    def _position(volume: Volume) -> dict:
        current = volume.current_snapshot
        return {
            "volume": volume,
            "head_path": snapshot_path(current) if current else [],
            "snapshot_count": volume.snapshots.exclude(status=SnapshotStatus.HIDDEN).count(),
        }

    def snapshot_create_view(self, request, object_id):
        """Take a snapshot: the head is frozen as a new layer under the snapshot the head sits on."""
        volume = get_object_or_404(Volume.objects.select_related("current_snapshot", "pool"), pk=object_id)

        def preview(data):
            return {
                **self._position(volume),
                "name": data["name"],
                "snap_after": volume.snap_length + volume.used,
            }

        return action_view(
            self,
            request,
            permission=SNAPSHOT_PERMISSION,
            form=SnapshotCreateForm(bound_data(request)),
            title=gettext("Take a snapshot of %(name)s") % {"name": volume.name},
            template="admin/volumes/actions/snapshot_create.html",
            preview=preview,
            apply=lambda data, actor: snapshot_services.snapshot_create(
                actor=actor, volume=volume, name=data["name"], desc=data["desc"]
            ),
            done=lambda snapshot: self._volume_done(
                request,
                volume,
                gettext("Snapshot %(name)s of %(volume)s: %(state)s (operation %(uuid)s).")
                % {"name": snapshot.name, "volume": volume.name, **_operation_words(snapshot.uuid)},
            ),
            context={"volume": volume},
        )

    def snapshot_rollback_view(self, request, object_id):
        """Roll back: the head is replaced by an empty overlay on the chosen snapshot."""
        volume = get_object_or_404(Volume.objects.select_related("current_snapshot", "pool"), pk=object_id)

        def preview(data):
            target = data["snapshot"]
            return {
                **self._position(volume),
                "target": target,
                "target_path": snapshot_path(target),
                "lost_bytes": 0 if data["snapshot_first"] else volume.used,
                "snapshot_first": data["snapshot_first"],
                "attached": volume.attachments.count(),
            }

        def apply(data, actor):
            operation, _first = snapshot_services.snapshot_rollback(
                actor=actor,
                volume=volume,
                snapshot=data["snapshot"],
                snapshot_first=data["snapshot_first"],
                snapshot_first_name=data["snapshot_first_name"] or None,
            )
            return operation

        return action_view(
            self,
            request,
            permission=ROLLBACK_PERMISSION,
            form=RollbackForm(bound_data(request), volume=volume, initial=request.GET.dict()),
            title=gettext("Roll %(name)s back to a snapshot") % {"name": volume.name},
            template="admin/volumes/actions/rollback.html",
            preview=preview,
            apply=apply,
            done=lambda operation: self._volume_done(
                request,
                volume,
                gettext("Rollback of %(volume)s: %(state)s (operation %(uuid)s).")
                % {"volume": volume.name, "state": _refreshed_state(operation), "uuid": operation.uuid},
            ),
            context={"volume": volume},
        )

    def snapshot_delete_view(self, request, object_id):
        """Delete a snapshot: its data is merged away, or the layer is kept hidden while read."""
        volume = get_object_or_404(Volume.objects.select_related("current_snapshot", "pool"), pk=object_id)

        def preview(data):
            snapshot = data["snapshot"]
            clones, backups = selectors.snapshot_dependents(snapshot=snapshot)
            return {
                **self._position(volume),
                "target": snapshot,
                "target_path": snapshot_path(snapshot),
                "children": list(snapshot.children.exclude(status=SnapshotStatus.HIDDEN)),
                "head_on_it": volume.current_snapshot_id == snapshot.pk,
                "clones": clones,
                "backups": backups,
            }

        def done(operation):
            if operation is None:
                text = gettext(
                    "Snapshot deleted from the tree; its layer is kept hidden while other layers read it."
                )
            else:
                text = gettext("Deletion of the snapshot: %(state)s (operation %(uuid)s).") % {
                    "state": _refreshed_state(operation),
                    "uuid": operation.uuid,
                }
            return self._volume_done(request, volume, text)

        return action_view(
            self,
            request,
            permission=SNAPSHOT_PERMISSION,
            form=SnapshotDeleteForm(bound_data(request), volume=volume, initial=request.GET.dict()),
            title=gettext("Delete a snapshot of %(name)s") % {"name": volume.name},
            template="admin/volumes/actions/snapshot_delete.html",
            preview=preview,
            apply=lambda data, actor: snapshot_services.snapshot_delete(
                actor=actor, volume=volume, snapshot=data["snapshot"], name=data["snapshot"].name
            ),
            done=done,
            context={"volume": volume},
        )

    def clone_view(self, request, object_id):
        """A linked clone (an overlay, constant time) or a full clone (a copy) of a snapshot."""
        volume = get_object_or_404(
            Volume.objects.select_related("current_snapshot", "pool", "cluster", "tenant"), pk=object_id
        )
        initial = {"tenant": volume.tenant.uuid, "pool": volume.pool.uuid, "kind": CloneForm.LINKED}
        initial.update(request.GET.dict())

        def target_pool(data) -> Pool:
            return selectors.pool_get(uuid=data["pool"].uuid, cluster=volume.cluster, tenant=data["tenant"])

        def preview(data):
            snapshot, linked = data["snapshot"], data["kind"] == CloneForm.LINKED
            pool = target_pool(data)
            if linked:
                clone_services.check_linked_placement(source=volume, source_pool=volume.pool, pool=pool)
            return {
                **self._position(volume),
                "target": snapshot,
                "target_path": snapshot_path(snapshot),
                "linked": linked,
                "copy_bytes": 0 if linked else chain_bytes(snapshot, volume.capacity),
                "room": pool_room(pool),
                "new_capacity": volume.capacity,
            }

        def apply(data, actor):
            return clone_services.clone_create(
                actor=actor,
                source=volume,
                snapshot=data["snapshot"],
                tenant=data["tenant"],
                pool=target_pool(data),
                name=data["name"],
                linked=data["kind"] == CloneForm.LINKED,
            )

        def done(clone):
            clone.refresh_from_db()
            return self._volume_done(
                request,
                clone,
                gettext("Clone %(name)s of %(source)s: %(state)s.")
                % {"name": clone.name, "source": volume.name, "state": clone.get_state_display()},
            )

        return action_view(
            self,
            request,
            permission=CLONE_PERMISSION,
            form=CloneForm(bound_data(request), volume=volume, initial=initial),
            title=gettext("Clone %(name)s") % {"name": volume.name},
            template="admin/volumes/actions/clone.html",
            preview=preview,
            apply=apply,
            done=done,
            context={"volume": volume},
        )


def _refreshed_state(operation) -> str:
    operation.refresh_from_db()
    return operation.get_state_display()


def _operation_words(target_uuid) -> dict:
    """The state and UUID of the newest short operation on `target_uuid` (a snapshot just taken)."""
    operation = latest_operation(target_uuid=target_uuid)
    if operation is None:
        return {"state": "-", "uuid": "-"}
    return {"state": operation.get_state_display(), "uuid": operation.uuid}
