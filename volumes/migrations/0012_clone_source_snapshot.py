"""Lineage kept on the volume: the snapshot a clone was made from (a full clone had no link to it, a
flatten cleared the linked clone's) and the backup a volume was restored from. Existing rows are
filled from the operations that made them."""

import django.db.models.deletion
from django.db import migrations, models


def fill_lineage(apps, schema_editor):
    """Clones and restores made before these fields: read back from their clone/restore operation."""
    Volume = apps.get_model("volumes", "Volume")
    Snapshot = apps.get_model("volumes", "Snapshot")
    Operation = apps.get_model("core", "Operation")
    for volume in Volume.objects.filter(parent_snapshot__isnull=False, clone_source_snapshot__isnull=True):
        Volume.objects.filter(pk=volume.pk).update(clone_source_snapshot_id=volume.parent_snapshot_id)
    operations = Operation.objects.filter(
        kind__in=["clone.linked", "clone.full", "backup.restore"], volume__isnull=False
    ).order_by("created", "id")
    for operation in operations.iterator():
        params = operation.params or {}
        if operation.kind == "backup.restore" and params.get("backup"):
            Volume.objects.filter(pk=operation.volume_id, restored_from_backup_uuid__isnull=True).update(
                restored_from_backup_uuid=params["backup"]
            )
        elif operation.kind != "backup.restore" and params.get("snapshot"):
            snapshot = Snapshot.objects.filter(uuid=params["snapshot"]).values_list("pk", flat=True).first()
            if snapshot is not None:
                Volume.objects.filter(pk=operation.volume_id, clone_source_snapshot__isnull=True).update(
                    clone_source_snapshot_id=snapshot
                )


class Migration(migrations.Migration):
    dependencies = [
        ("volumes", "0011_actions_permissions"),
        ("core", "0005_operation_space_reservation"),
    ]

    operations = [
        migrations.AddField(
            model_name="volume",
            name="clone_source_snapshot",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                help_text="For a clone (linked or full): the snapshot of the source volume it was made from.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="cloned_into",
                to="volumes.snapshot",
                verbose_name="cloned from snapshot",
            ),
        ),
        migrations.AddField(
            model_name="volume",
            name="restored_from_backup_uuid",
            field=models.UUIDField(
                blank=True,
                editable=False,
                help_text="For a volume restored from a backup: that backup's UUID.",
                null=True,
                verbose_name="restored from backup",
            ),
        ),
        migrations.RunPython(fill_lineage, migrations.RunPython.noop),
    ]
