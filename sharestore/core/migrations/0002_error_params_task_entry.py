"""Failures keep their catalogue parameters (operations and audit events), and operations run
through one task entry that dispatches on their kind: the `task` path column goes. A queued
operation needs nothing of it (its kind names its handler); a django-q2 message still naming an
old task path fails to import in the worker, and the sweeper re-enqueues its operation through the
task entry once the lease period has passed. The sweep schedule is renamed to core's task."""

from django.db import migrations, models

OLD_SWEEP, NEW_SWEEP = "volumes.tasks.sweep_task", "sharestore.core.tasks.sweep_task"


# The task each kind ran before the one task entry, for a migration backwards.
FORMER_TASKS = {
    "volume.create": "volumes.tasks.volume_create_task",
    "volume.import": "volumes.tasks.volume_create_task",
    "volume.delete": "volumes.tasks.volume_delete_task",
    "snapshot.create": "volumes.tasks.snapshot_create_task",
    "snapshot.delete": "volumes.tasks.snapshot_delete_task",
    "snapshot.rollback": "volumes.tasks.snapshot_rollback_task",
    "clone.linked": "volumes.tasks.clone_linked_task",
    "clone.full": "volumes.tasks.clone_full_task",
    "volume.flatten": "volumes.tasks.volume_flatten_task",
    "backup.create": "backups.tasks.backup_create_task",
    "backup.delete": "backups.tasks.backup_delete_task",
    "backup.restore": "backups.tasks.backup_restore_task",
    "backup.verify": "backups.tasks.backup_verify_task",
}


def restore_task_paths(apps, schema_editor):
    Operation = apps.get_model("core", "Operation")
    for kind, task in FORMER_TASKS.items():
        Operation.objects.filter(kind=kind).update(task=task)


def rename_sweep(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=OLD_SWEEP).update(func=NEW_SWEEP)


def unrename_sweep(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=NEW_SWEEP).update(func=OLD_SWEEP)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("volumes", "0002_sweep_schedule"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [
        # Reversible: going back re-creates the column with each kind's former task path.
        migrations.RunPython(migrations.RunPython.noop, restore_task_paths),
        migrations.AlterField(
            model_name="operation",
            name="task",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
        migrations.RemoveField(
            model_name="operation",
            name="task",
        ),
        migrations.AddField(
            model_name="auditevent",
            name="message_params",
            field=models.JSONField(
                blank=True, default=dict, help_text="Parameters of the scode's catalogue message."
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="scode",
            field=models.IntegerField(
                default=0, help_text="The failure's scode; 0 when the event is no failure."
            ),
        ),
        migrations.AddField(
            model_name="operation",
            name="error_params",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Parameters of the catalogue message, to render it in any language.",
            ),
        ),
        migrations.AlterField(
            model_name="operation",
            name="error_message",
            field=models.TextField(
                blank=True, default="", help_text="The English message, as the API answers it."
            ),
        ),
        migrations.RunPython(rename_sweep, unrename_sweep),
    ]
