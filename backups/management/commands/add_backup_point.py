"""manage.py add_backup_point: register a directory as a backup point (the same services as the
console's add form). Exit codes: 0 created (or, with --dry-run, valid), 2 rejected."""

from django.core.management.base import BaseCommand

from backups.choices import BackupPointType
from backups.services.points import backup_point_create, backup_point_create_check
from sharestore import errors
from sharestore.core import commands
from volumes.models import Cluster, Tenant


class Command(BaseCommand):
    help = "Register a directory (existing, writable) as a backup point of a cluster. Exit: 0 ok, 2 rejected."

    def add_arguments(self, parser):
        commands.add_location_arguments(
            parser, path_help="absolute directory where workers reach the backup point"
        )
        parser.add_argument(
            "--tenant",
            type=commands.uuid_arg,
            metavar="UUID",
            help="only this tenant may use it (default: every tenant)",
        )
        parser.add_argument("--type", default=BackupPointType.LOCAL, choices=BackupPointType.values)
        parser.add_argument(
            "--uuid", type=commands.uuid_arg, help="the backup point's UUID (default: a new one)"
        )
        parser.add_argument("--dry-run", action="store_true", help="validate only")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        cluster = commands.get_by_uuid(Cluster, options["cluster"], "cluster")
        tenant = commands.get_by_uuid(Tenant, options["tenant"], "tenant") if options["tenant"] else None
        capacity = commands.parse_size(options["capacity"])
        with commands.service_errors_as_usage():
            values = backup_point_create_check(
                name=options["name"], cluster=cluster, path=options["path"], capacity=capacity
            )
            if options["uuid"] and not options["dry_run"]:
                # backup_point_create returns an existing point with this UUID unchanged: say so.
                from backups.models import BackupPoint

                if BackupPoint.objects.filter(uuid=options["uuid"]).exists():
                    raise errors.InvalidParameter(
                        field="uuid", reason=f"a backup point with UUID {options['uuid']} already exists"
                    )
            if options["dry_run"]:
                result = commands.location_result(capacity=capacity, checked=values)
            else:
                point = backup_point_create(
                    name=options["name"],
                    cluster=cluster,
                    path=options["path"],
                    capacity=capacity,
                    btype=options["type"],
                    tenant=tenant,
                    uuid=options["uuid"],
                )
                result = commands.location_result(capacity=capacity, created=point)
        commands.write_location_result(self.stdout, "backup point", result, as_json=options["json"])
