"""manage.py set_quota: set a tenant's quotas, or show them with what the tenant holds.

    manage.py set_quota --tenant UUID --volumes 100 --bytes 2T --snapshots 500 --backups none

A limit given as `none` (or `unlimited`) is lifted; a limit not named keeps its value. Without any
limit the command only shows the quotas. Exit codes: 0 done, 2 usage error (unknown tenant, bad value).
"""

from django.core.management.base import BaseCommand, CommandError

from sharestore.core import commands
from volumes.models import Tenant
from volumes.quota_selectors import QUOTA_FIELDS, tenant_quota
from volumes.services.quotas import quota_set

UNLIMITED = {"none", "unlimited"}


def _count(text: str) -> int | None:
    if text.strip().lower() in UNLIMITED:
        return None
    if not text.strip().isdigit():
        raise CommandError(
            f"invalid count {text!r}: a whole number or 'none'", returncode=commands.EXIT_USAGE
        )
    return int(text)


def _bytes(text: str) -> int | None:
    return None if text.strip().lower() in UNLIMITED else commands.parse_size(text)


class Command(BaseCommand):
    help = "Set a tenant's quotas (volumes, bytes, snapshots, backups; 'none' = unlimited) and show them."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", type=commands.uuid_arg, required=True, metavar="UUID")
        parser.add_argument("--volumes", metavar="N|none", help="volumes the tenant may hold")
        parser.add_argument("--bytes", metavar="SIZE|none", help="sum of capacities, e.g. 2T or 500G")
        parser.add_argument("--snapshots", metavar="N|none", help="snapshots the tenant may hold")
        parser.add_argument("--backups", metavar="N|none", help="backups the tenant may hold")

    def handle(self, *args, **options):
        tenant = commands.get_by_uuid(Tenant, options["tenant"], "tenant")
        limits = {
            key: (_bytes if key == "bytes" else _count)(options[key])
            for key in QUOTA_FIELDS
            if options[key] is not None
        }
        if limits:
            with commands.service_errors_as_usage():
                quota_set(actor=commands.command_actor("set_quota"), tenant=tenant, **limits)
        for key, usage in tenant_quota(tenant=tenant).items():
            limit = "unlimited" if usage["limit"] is None else usage["limit"]
            self.stdout.write(f"{key:<10} {usage['used']:>20} used of {limit}")
