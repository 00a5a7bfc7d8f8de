from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackupsConfig(AppConfig):
    """Backup points and backups."""

    name = "backups"
    verbose_name = _("backups")
    default_auto_field = "django.db.models.BigAutoField"
