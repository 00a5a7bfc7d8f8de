from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup points and backups."""

    name = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"
