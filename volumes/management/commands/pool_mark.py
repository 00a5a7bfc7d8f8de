"""manage.py pool_mark: write the identity marker (`.sharestore-pool`) of pools added before markers
existed, then show each pool's marker health. Run it on a host that mounts the pools.

Exit codes: 0 every named pool is marked, 2 a pool was refused (the message says why).
"""

from django.core.management.base import BaseCommand, CommandError

from sharestore import errors
from sharestore.core.commands import EXIT_USAGE, command_actor
from volumes.models import Pool
from volumes.services.pools import pool_mark, pools_health_refresh


class Command(BaseCommand):
    help = "Write missing pool identity markers (default: every pool) and refresh pool health. Exit: 0 ok, 2 refused."

    def add_arguments(self, parser):
        parser.add_argument("pools", nargs="*", metavar="POOL_UUID", help="default: every pool")
        parser.add_argument(
            "--force", action="store_true", help="also mark an empty directory (confirm the share is mounted)"
        )

    def handle(self, *args, **options):
        pools = Pool.objects.all()
        if options["pools"]:
            pools = pools.filter(uuid__in=options["pools"])
        refused = 0
        actor = command_actor("pool_mark")
        for pool in pools:
            try:
                written = pool_mark(actor=actor, pool=pool, force=options["force"])
            except errors.ServiceError as error:
                refused += 1
                self.stderr.write(f"{pool.uuid} {pool.name}: refused: {error.render_message()}")
                continue
            self.stdout.write(f"{pool.uuid} {pool.name}: {'marked' if written else 'already marked'}")
        pools_health_refresh(actor=actor, pools=pools)
        if refused:
            raise CommandError(f"{refused} pool(s) refused", returncode=EXIT_USAGE)
