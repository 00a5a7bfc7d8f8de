"""The volume page's everyday actions: take, roll back to and delete a snapshot, linked and full
clone. Each previews on GET (where the snapshot sits in the tree, what is lost or copied, the target
pool's room) and runs on POST the same service the API view calls (`volumes.services.snapshots`,
`volumes.services.clones`), as the console user; see `sharestore.core.console_actions`."""

from __future__ import annotations

from django import forms
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore.core.console_actions import ActionPage, ConsoleAction, ConsoleActionsMixin
from sharestore.core.services.waits import latest_operation
from volumes import selectors
from volumes.choices import SnapshotStatus
from volumes.models import Pool, Snapshot, Tenant, Volume
from volumes.services import clones as clone_services
from volumes.services import pools as pool_services
from volumes.services import snapshots as snapshot_services

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


def pool_room(pool: Pool) -> dict:
    """A pool's room for a new volume: the accounting (capacity x overcommit against the live
    volumes' capacities) and the filesystem's free space less the copies in progress (statvfs)."""
    usage = pool_services.pool_usage(pool)
    return {
        "pool": pool,
        "limit": usage.limit,
        "committed": usage.committed,
        "headroom": usage.limit - usage.committed,
        "fs_free": usage.fs_free,
        "reserved": usage.reserved,
    }


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


def new_volume_fields(cluster) -> dict:
    """The fields of a volume made from a snapshot or a backup (a clone, a restore): its name, its
    tenant and its pool, one of `cluster`'s."""
    return {
        "name": forms.CharField(label=_("name of the new volume"), max_length=128),
        "tenant": forms.ModelChoiceField(
            Tenant.objects.order_by("name"), to_field_name="uuid", label=_("tenant")
        ),
        "pool": forms.ModelChoiceField(
            Pool.objects.filter(cluster=cluster).order_by("name"),
            to_field_name="uuid",
            label=pgettext_lazy("action", "target pool"),
        ),
    }


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

    def __init__(self, *args, volume: Volume, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields = {"snapshot": SnapshotChoice(volume), **self.fields, **new_volume_fields(volume.cluster)}


# -- the views ------------------------------------------------------------------------------------------


class VolumeAction(ConsoleAction):
    """An action on the volume named by the URL; its preview starts from where the head sits."""

    subject_key = "volume"

    def get_subject(self, object_id):
        return get_object_or_404(
            Volume.objects.select_related("current_snapshot", "pool", "cluster", "tenant"), pk=object_id
        )

    def form_options(self) -> dict:
        return {"volume": self.subject, "initial": self.request.GET.dict()}

    def position(self) -> dict:
        """Where the head sits: the snapshot under it and that one's ancestors, root first."""
        current = self.subject.current_snapshot
        return {"head_path": snapshot_path(current) if current else []}

    def target_position(self, snapshot: Snapshot) -> dict:
        """Where the head sits, and the chosen snapshot with its ancestors."""
        return {**self.position(), "target": snapshot, "target_path": snapshot_path(snapshot)}


class SnapshotCreateAction(VolumeAction):
    """Take a snapshot: the head is frozen as a new layer under the snapshot the head sits on."""

    page = ActionPage(SNAPSHOT_PERMISSION, SnapshotCreateForm, "admin/volumes/actions/snapshot_create.html")
    title = _("Take a snapshot of %(name)s")

    def form_options(self) -> dict:
        # A new snapshot's name and description: nothing of the volume to choose from.
        return {}

    def preview(self, data):
        volume = self.subject
        return {**self.position(), "name": data["name"], "snap_after": volume.snap_length + volume.used}

    def apply(self, data, actor):
        return snapshot_services.snapshot_create(
            actor=actor, volume=self.subject, name=data["name"], desc=data["desc"]
        )

    def done(self, snapshot):
        words = {"name": snapshot.name, "volume": self.subject.name, **_operation_words(snapshot.uuid)}
        text = gettext("Snapshot %(name)s of %(volume)s: %(state)s (operation %(uuid)s).")
        return self.tell(self.subject, text % words)


class RollbackAction(VolumeAction):
    """Roll back: the head is replaced by an empty overlay on the chosen snapshot."""

    page = ActionPage(ROLLBACK_PERMISSION, RollbackForm, "admin/volumes/actions/rollback.html")
    title = _("Roll %(name)s back to a snapshot")

    def preview(self, data):
        return {
            **self.target_position(data["snapshot"]),
            "lost_bytes": 0 if data["snapshot_first"] else self.subject.used,
            "snapshot_first": data["snapshot_first"],
            "attached": self.subject.attachments.count(),
        }

    def apply(self, data, actor):
        operation, _first = snapshot_services.snapshot_rollback(
            actor=actor,
            volume=self.subject,
            snapshot=data["snapshot"],
            snapshot_first=data["snapshot_first"],
            snapshot_first_name=data["snapshot_first_name"] or None,
        )
        return operation

    def done(self, operation):
        words = {"volume": self.subject.name, "state": _refreshed_state(operation), "uuid": operation.uuid}
        text = gettext("Rollback of %(volume)s: %(state)s (operation %(uuid)s).")
        return self.tell(self.subject, text % words)


class SnapshotDeleteAction(VolumeAction):
    """Delete a snapshot: its data is merged away, or the layer is kept hidden while read."""

    page = ActionPage(SNAPSHOT_PERMISSION, SnapshotDeleteForm, "admin/volumes/actions/snapshot_delete.html")
    title = _("Delete a snapshot of %(name)s")

    def preview(self, data):
        snapshot = data["snapshot"]
        clones, backups = selectors.snapshot_dependents(snapshot=snapshot)
        return {
            **self.target_position(snapshot),
            "children": list(snapshot.children.exclude(status=SnapshotStatus.HIDDEN)),
            "head_on_it": self.subject.current_snapshot_id == snapshot.pk,
            "clones": clones,
            "backups": backups,
        }

    def apply(self, data, actor):
        snapshot = data["snapshot"]
        return snapshot_services.snapshot_delete(
            actor=actor, volume=self.subject, snapshot=snapshot, name=snapshot.name
        )

    def done(self, operation):
        if operation is None:
            text = gettext(
                "Snapshot deleted from the tree; its layer is kept hidden while other layers read it."
            )
        else:
            text = gettext("Deletion of the snapshot: %(state)s (operation %(uuid)s).") % {
                "state": _refreshed_state(operation),
                "uuid": operation.uuid,
            }
        return self.tell(self.subject, text)


class CloneAction(VolumeAction):
    """A linked clone (an overlay, constant time) or a full clone (a copy) of a snapshot."""

    page = ActionPage(CLONE_PERMISSION, CloneForm, "admin/volumes/actions/clone.html")
    title = _("Clone %(name)s")

    def form_options(self) -> dict:
        volume = self.subject
        initial = {"tenant": volume.tenant.uuid, "pool": volume.pool.uuid, "kind": CloneForm.LINKED}
        return {"volume": volume, "initial": {**initial, **self.request.GET.dict()}}

    def target_pool(self, data) -> Pool:
        return selectors.pool_get(uuid=data["pool"].uuid, cluster=self.subject.cluster, tenant=data["tenant"])

    def preview(self, data):
        volume, snapshot = self.subject, data["snapshot"]
        linked = data["kind"] == CloneForm.LINKED
        pool = self.target_pool(data)
        if linked:
            clone_services.check_linked_placement(source=volume, source_pool=volume.pool, pool=pool)
        position = self.target_position(snapshot)
        # A full copy reads the snapshot's layers: their recorded sizes, at most the capacity.
        return {
            **position,
            "linked": linked,
            "copy_bytes": 0 if linked else min(sum(s.size for s in position["target_path"]), volume.capacity),
            "room": pool_room(pool),
            "new_capacity": volume.capacity,
        }

    def apply(self, data, actor):
        return clone_services.clone_create(
            actor=actor,
            source=self.subject,
            snapshot=data["snapshot"],
            tenant=data["tenant"],
            pool=self.target_pool(data),
            name=data["name"],
            linked=data["kind"] == CloneForm.LINKED,
        )

    def done(self, clone):
        clone.refresh_from_db()
        words = {"name": clone.name, "source": self.subject.name, "state": clone.get_state_display()}
        return self.tell(clone, gettext("Clone %(name)s of %(source)s: %(state)s.") % words)


class VolumeActionsMixin(ConsoleActionsMixin):
    """The volume page's actions, mixed into VolumeAdmin."""

    action_routes = (
        ("<int:object_id>/actions/snapshot/", SnapshotCreateAction, "volumes_volume_snapshot"),
        ("<int:object_id>/actions/rollback/", RollbackAction, "volumes_volume_rollback"),
        (
            "<int:object_id>/actions/delete-snapshot/",
            SnapshotDeleteAction,
            "volumes_volume_delete_snapshot",
        ),
        ("<int:object_id>/actions/clone/", CloneAction, "volumes_volume_clone"),
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
