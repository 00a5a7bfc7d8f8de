from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_operation_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="operation",
            name="waiting_since",
            field=models.DateTimeField(
                blank=True,
                help_text="When the operation began waiting for a live host that mounts its pools; it fails with NoLiveHost once SHARESTORE_HOST_WAIT_SECONDS have passed since.",
                null=True,
            ),
        ),
    ]
