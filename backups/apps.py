from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackupsConfig(AppConfig):
    """Backup points and backups."""

    name = "backups"
    verbose_name = _("backups")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the backup-point scope with volumes' reconcile (volumes never imports backups).
        from backups.services import reconcile  # noqa: F401
