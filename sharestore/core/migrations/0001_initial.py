"""Operations, audit events and API tokens move from the volumes app to core: their tables stay
(`volumes_operation`, `volumes_auditevent`, `volumes_apitoken`), so this only tells the migration
state that core owns them now; volumes 0004 drops them from its own state."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("volumes", "0003_verbose_names"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ApiToken",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("name", models.CharField(max_length=128)),
                        (
                            "key_prefix",
                            models.CharField(
                                editable=False, help_text="First characters, to recognise it.", max_length=12
                            ),
                        ),
                        ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        ("created", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ("expires_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        ("last_used", models.DateTimeField(blank=True, editable=False, null=True)),
                        (
                            "tenant",
                            models.ForeignKey(
                                blank=True,
                                help_text="Empty: a platform token that may act for any tenant.",
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="tokens",
                                to="volumes.tenant",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API token",
                        "verbose_name_plural": "API tokens",
                        "db_table": "volumes_apitoken",
                        "ordering": ["name"],
                    },
                ),
                migrations.CreateModel(
                    name="Operation",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("uuid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("volume.create", "create volume"),
                                    ("volume.import", "import volume"),
                                    ("volume.delete", "delete volume"),
                                    ("snapshot.create", "create snapshot"),
                                    ("snapshot.delete", "delete snapshot"),
                                    ("snapshot.rollback", "roll back to snapshot"),
                                    ("clone.linked", "linked clone"),
                                    ("clone.full", "full clone"),
                                    ("volume.flatten", "flatten volume"),
                                    ("backup.create", "create backup"),
                                    ("backup.delete", "delete backup"),
                                    ("backup.restore", "restore backup"),
                                    ("backup.verify", "verify backup"),
                                ],
                                max_length=32,
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("queued", "queued"),
                                    ("running", "running"),
                                    ("succeeded", "succeeded"),
                                    ("failed", "failed"),
                                    ("cancelled", "cancelled"),
                                ],
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        (
                            "target_type",
                            models.CharField(help_text="volume, snapshot, backup ...", max_length=32),
                        ),
                        ("target_uuid", models.UUIDField(db_index=True)),
                        (
                            "task",
                            models.CharField(
                                help_text="Dotted path of the task that runs it (re-enqueued by the sweeper).",
                                max_length=128,
                            ),
                        ),
                        ("params", models.JSONField(blank=True, default=dict)),
                        ("phase", models.CharField(blank=True, default="", max_length=64)),
                        (
                            "progress",
                            models.FloatField(default=0, help_text="Percent, 0-100, never decreasing."),
                        ),
                        ("bytes_done", models.BigIntegerField(default=0)),
                        ("bytes_total", models.BigIntegerField(default=0)),
                        ("error_scode", models.IntegerField(default=0)),
                        ("error_message", models.TextField(blank=True, default="")),
                        (
                            "error_detail",
                            models.TextField(
                                blank=True, default="", help_text="stderr of the failing command."
                            ),
                        ),
                        ("requested_by", models.CharField(blank=True, default="", max_length=128)),
                        (
                            "owner",
                            models.CharField(
                                blank=True, default="", help_text="Worker holding the lease.", max_length=128
                            ),
                        ),
                        ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("created", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ("started", models.DateTimeField(blank=True, null=True)),
                        ("finished", models.DateTimeField(blank=True, null=True)),
                        (
                            "volume",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="operations",
                                to="volumes.volume",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "operation",
                        "verbose_name_plural": "operations",
                        "db_table": "volumes_operation",
                        "ordering": ["-created", "-id"],
                    },
                ),
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("created", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ("actor", models.CharField(blank=True, default="", max_length=128)),
                        ("action", models.CharField(max_length=64)),
                        ("object_type", models.CharField(max_length=32)),
                        ("object_uuid", models.UUIDField(db_index=True)),
                        ("from_state", models.CharField(blank=True, default="", max_length=32)),
                        ("to_state", models.CharField(blank=True, default="", max_length=32)),
                        ("result", models.CharField(blank=True, default="ok", max_length=16)),
                        ("message", models.TextField(blank=True, default="")),
                        (
                            "volume",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="events",
                                to="volumes.volume",
                            ),
                        ),
                        (
                            "operation",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="events",
                                to="core.operation",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "audit event",
                        "verbose_name_plural": "audit events",
                        "db_table": "volumes_auditevent",
                        "ordering": ["-created", "-id"],
                    },
                ),
                migrations.AddIndex(
                    model_name="operation",
                    index=models.Index(fields=["state", "lease_expires_at"], name="volumes_op_state_lease"),
                ),
                migrations.AddIndex(
                    model_name="operation",
                    index=models.Index(fields=["volume", "-created"], name="volumes_op_volume_created"),
                ),
                migrations.AddConstraint(
                    model_name="operation",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("progress__gte", 0), ("progress__lte", 100)),
                        name="volumes_operation_progress_range",
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(fields=["volume", "-created"], name="volumes_audit_volume_created"),
                ),
            ],
        ),
    ]
