"""manage.py refresh_usage: measure Used, snapshot sizes and SnapLength from the files.

The same service as the console's refresh-usage screen. Exit codes: 0 done (or, with --dry-run,
nothing out of date), 1 sizes out of date (dry run) or some volumes could not be measured, 2 usage error.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from sharestore.core import commands
from volumes.models import Volume
from volumes.services.repair.reconcile import pool_targets
from volumes.services.repair.usage import refresh_usage


class Command(BaseCommand):
    help = (
        "Re-measure volumes' allocated bytes (metadata only) and write what changed. "
        "Exit: 0 ok, 1 drift or errors, 2 usage."
    )

    def add_arguments(self, parser):
        commands.add_uuid_lists(parser, {"--pool": "only this pool", "--volume": "only this volume"})
        parser.add_argument("--dry-run", action="store_true", help="measure and report, write nothing")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        with commands.service_errors_as_usage():
            pools = pool_targets(options["pool"]) if options["pool"] else None
        volumes = None
        if options["volume"]:
            volumes = list(Volume.objects.filter(uuid__in=options["volume"]))
            missing = set(options["volume"]) - {str(v.uuid) for v in volumes}
            if missing:
                raise CommandError(
                    f"no volume with UUID {', '.join(sorted(missing))}", returncode=commands.EXIT_USAGE
                )
        progress = commands.terminal_progress(self.stderr, options)
        try:
            report = refresh_usage(
                actor=commands.command_actor("refresh_usage"),
                pools=pools,
                volumes=volumes,
                dry_run=options["dry_run"],
                progress=progress,
            )
        finally:
            progress.close()
        drift = options["dry_run"] and report.changes
        code = commands.EXIT_FINDINGS if (report.errors or drift) else commands.EXIT_OK
        if options["json"]:
            self.stdout.write(json.dumps({**report.as_dict(), "exit_code": code}, indent=2))
        else:
            verb = "would write" if options["dry_run"] else "wrote"
            for change in report.changes:
                self.stdout.write(
                    f"  {change.volume_name} ({change.volume_uuid}) {change.field}: {change.old} -> {change.new}"
                )
            for error in report.errors:
                self.stdout.write(f"  ERROR {error['volume_uuid']}: {error['error']}")
            self.stdout.write(
                f"{report.volumes_checked} volume(s) measured, {len(report.skipped)} skipped (busy or not populated), "
                f"{verb} {len(report.changes)} value(s), {len(report.errors)} error(s)"
            )
        commands.exit_with(
            code,
            f"{len(report.errors)} error(s)"
            if report.errors
            else f"{len(report.changes)} value(s) out of date",
        )
