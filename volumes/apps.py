from django.apps import AppConfig


class VolumesConfig(AppConfig):
    """Zones, clusters, hosts, tenants, pools, volumes, snapshots and operations."""

    name = "volumes"
    verbose_name = "Volumes"
    default_auto_field = "django.db.models.BigAutoField"
