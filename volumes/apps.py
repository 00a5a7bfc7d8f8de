from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VolumesConfig(AppConfig):
    """Zones, clusters, hosts, tenants, pools, volumes and snapshots."""

    name = "volumes"
    verbose_name = _("volumes")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The one task entry dispatches on the operation's kind: these are the volumes app's kinds.
        from sharestore.core.choices import OperationKind
        from sharestore.core.dispatch import register, register_retry
        from volumes.services import clones, repair, snapshots, volumes

        register(OperationKind.VOLUME_CREATE, volumes.VOLUME_CREATE_HANDLER)
        register(OperationKind.VOLUME_IMPORT, volumes.VOLUME_CREATE_HANDLER)
        register(OperationKind.VOLUME_DELETE, volumes.VOLUME_DELETE_HANDLER)
        register(OperationKind.SNAPSHOT_CREATE, snapshots.SNAPSHOT_CREATE_HANDLER)
        register(OperationKind.SNAPSHOT_DELETE, snapshots.SNAPSHOT_DELETE_HANDLER)
        register(OperationKind.SNAPSHOT_ROLLBACK, snapshots.SNAPSHOT_ROLLBACK_HANDLER)
        register(OperationKind.CLONE_LINKED, clones.CLONE_LINKED_HANDLER)
        register(OperationKind.CLONE_FULL, clones.CLONE_FULL_HANDLER)
        register(OperationKind.FLATTEN, clones.FLATTEN_HANDLER)
        register_retry(check=repair.operation_retry_check, run=repair.operation_retry)

        # Placement on storage hosts, and the beats the worker agent runs in every qcluster.
        from sharestore.core import agent
        from sharestore.core.services.placement import set_placement
        from volumes.services import hosts

        set_placement(
            route=hosts.operation_route, runs_here=hosts.this_host_mounts, preflight=hosts.operation_preflight
        )
        agent.register_beat(hosts.host_beat)
        agent.register_beat(hosts.pools_beat)

        # /readyz judges each pool with the same check every storage step makes.
        from sharestore.monitoring import health
        from volumes.services.pools import pool_marker_problem

        health.set_pool_problem(pool_marker_problem)
