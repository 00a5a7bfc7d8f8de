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
        from backups.services.create import BACKUP_CREATE_HANDLER
        from backups.services.delete import BACKUP_DELETE_HANDLER
        from backups.services.restore import BACKUP_RESTORE_HANDLER
        from backups.services.verify import BACKUP_VERIFY_HANDLER

        # The one task entry dispatches on the operation's kind: these are the backups app's kinds.
        from sharestore.core.choices import OperationKind
        from sharestore.core.dispatch import register

        register(OperationKind.BACKUP_CREATE, BACKUP_CREATE_HANDLER)
        register(OperationKind.BACKUP_DELETE, BACKUP_DELETE_HANDLER)
        register(OperationKind.BACKUP_RESTORE, BACKUP_RESTORE_HANDLER)
        register(OperationKind.BACKUP_VERIFY, BACKUP_VERIFY_HANDLER)
        # A failed restore may be retried from the operations screen (volumes' retry service).
        from backups.services import retry

        retry.register()
