"""django-q2 schedules of the volumes app beside the sweep: refresh usage hourly, and a daily
reconcile report (report only: nothing is fixed by the schedule)."""

from django.db import migrations

SCHEDULES = {
    "sharestore: refresh volume usage": {
        "func": "volumes.tasks.refresh_usage_task",
        "schedule_type": "H",
        "repeats": -1,
    },
    "sharestore: reconcile report": {
        "func": "volumes.tasks.reconcile_report_task",
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
        ("volumes", "0005_live_volume_index"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
