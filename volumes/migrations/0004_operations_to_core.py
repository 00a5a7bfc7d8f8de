"""Operations, audit events and API tokens now belong to the core app (core 0001 takes them into its
state; their tables keep their names, so nothing moves in the database). This drops them from the
volumes app's state only, and carries over what the database knows them by: their content types
(so permission grants and admin log entries follow them) and the repair permission, which stays
`volumes.run_repairs` by moving from the operation's content type to the volume's."""

from django.db import migrations

MOVED_MODELS = ["operation", "auditevent", "apitoken"]


def to_core(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    types = ContentType.objects.using(db)
    old_operation = types.filter(app_label="volumes", model="operation").first()
    if old_operation is not None:
        volume_type, _ = types.get_or_create(app_label="volumes", model="volume")
        Permission.objects.using(db).filter(content_type=old_operation, codename="run_repairs").update(
            content_type=volume_type
        )
    for model in MOVED_MODELS:
        # On a fresh database post_migrate creates core's content types later: nothing to carry.
        if not types.filter(app_label="core", model=model).exists():
            types.filter(app_label="volumes", model=model).update(app_label="core")


def to_volumes(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    types = ContentType.objects.using(db)
    for model in MOVED_MODELS:
        if not types.filter(app_label="volumes", model=model).exists():
            types.filter(app_label="core", model=model).update(app_label="volumes")
    operation_type = types.filter(app_label="volumes", model="operation").first()
    if operation_type is not None:
        Permission.objects.using(db).filter(
            content_type__app_label="volumes", content_type__model="volume", codename="run_repairs"
        ).update(content_type=operation_type)


class Migration(migrations.Migration):
    dependencies = [
        ("volumes", "0003_verbose_names"),
        ("core", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(to_core, to_volumes),
        migrations.AlterModelOptions(
            name="volume",
            options={
                "ordering": ["-created", "-id"],
                "permissions": [
                    ("run_repairs", "Can run repair actions (reconcile, reset state, force delete)")
                ],
                "verbose_name": "volume",
                "verbose_name_plural": "volumes",
            },
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(model_name="auditevent", name="operation"),
                migrations.RemoveField(model_name="auditevent", name="volume"),
                migrations.RemoveField(model_name="operation", name="volume"),
                migrations.DeleteModel(name="ApiToken"),
                migrations.DeleteModel(name="AuditEvent"),
                migrations.DeleteModel(name="Operation"),
            ],
        ),
    ]
