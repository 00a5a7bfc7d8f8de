from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackupsConfig(AppConfig):
    """Backup points and backups."""

    name = "backups"
    verbose_name = _("backups")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The one task entry dispatches on the operation's kind: these are the backups app's kinds.
        from backups import services
        from sharestore.core.choices import OperationKind
        from sharestore.core.dispatch import register

        register(OperationKind.BACKUP_CREATE, services.BACKUP_CREATE_HANDLER)
        register(OperationKind.BACKUP_DELETE, services.BACKUP_DELETE_HANDLER)
        register(OperationKind.BACKUP_RESTORE, services.BACKUP_RESTORE_HANDLER)
        register(OperationKind.BACKUP_VERIFY, services.BACKUP_VERIFY_HANDLER)
