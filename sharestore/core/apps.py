import sys

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    """Operations, the task entry and its dispatcher, the audit trail, API tokens and the console toolkit."""

    name = "sharestore.core"
    label = "core"
    verbose_name = _("operations and audit")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The worker agent (lease sweep, host liveness) runs in each `manage.py qcluster` process.
        if len(sys.argv) > 1 and sys.argv[1] == "qcluster":
            from sharestore.core import agent

            agent.start()
