from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VolumesConfig(AppConfig):
    """Zones, clusters, hosts, tenants, pools, volumes, snapshots and operations."""

    name = "volumes"
    verbose_name = _("volumes")
    default_auto_field = "django.db.models.BigAutoField"
