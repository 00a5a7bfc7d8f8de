"""django-q2 schedules of the backups app: expire backups every 5 minutes, verify backups daily."""

from django.db import migrations

SCHEDULES = {
    "sharestore: delete expired backups": {
        "func": "backups.tasks.prune_task",
        "schedule_type": "I",
        "minutes": 5,
        "repeats": -1,
    },
    "sharestore: verify backups": {
        "func": "backups.tasks.verify_task",
        "schedule_type": "D",
        "repeats": -1,
    },
}


def add_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, values in SCHEDULES.items():
        Schedule.objects.update_or_create(name=name, defaults=values)


def remove_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("backups", "0002_backup_details"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
