"""manage.py add_backup_point: register a directory as a backup point (the same services as the
console's add form). Exit codes: 0 created (or, with --dry-run, valid), 2 rejected."""

import json

from django.core.management.base import BaseCommand

from backups.choices import BackupPointType
from backups.services.points import backup_point_create, backup_point_create_check
from sharestore import errors
from sharestore.core.commands import get_by_uuid, parse_size, service_errors_as_usage, uuid_arg
from volumes.models import Cluster, Tenant


class Command(BaseCommand):
    help = "Register a directory (existing, writable) as a backup point of a cluster. Exit: 0 ok, 2 rejected."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--cluster", required=True, type=uuid_arg, metavar="UUID")
        parser.add_argument(
            "--path", required=True, help="absolute directory where workers reach the backup point"
        )
        parser.add_argument("--capacity", required=True, help="bytes, or with a unit: 500G, 2T")
        parser.add_argument(
            "--tenant",
            type=uuid_arg,
            metavar="UUID",
            help="only this tenant may use it (default: every tenant)",
        )
        parser.add_argument("--type", default=BackupPointType.LOCAL, choices=BackupPointType.values)
        parser.add_argument("--uuid", type=uuid_arg, help="the backup point's UUID (default: a new one)")
        parser.add_argument("--dry-run", action="store_true", help="validate only")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        cluster = get_by_uuid(Cluster, options["cluster"], "cluster")
        tenant = get_by_uuid(Tenant, options["tenant"], "tenant") if options["tenant"] else None
        capacity = parse_size(options["capacity"])
        with service_errors_as_usage():
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
                result = {
                    "dry_run": True,
                    "valid": True,
                    "name": values["name"],
                    "path": values["path"],
                    "capacity": capacity,
                }
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
                result = {
                    "dry_run": False,
                    "uuid": str(point.uuid),
                    "name": point.name,
                    "path": point.path,
                    "capacity": point.capacity,
                }
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        elif options["dry_run"]:
            self.stdout.write(f"valid: backup point {result['name']} at {result['path']} ({capacity} bytes)")
        else:
            self.stdout.write(
                f"backup point {result['name']} {result['uuid']} at {result['path']} ({result['capacity']} bytes)"
            )
