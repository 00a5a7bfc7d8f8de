"""manage.py prune_backups: delete the backups whose ExpiredTime has passed (protected ones are kept;
a backup that a later one sits on is merged into it). The same service the django-q2 schedule runs.

Like every destructive command (docs/console.md "Commands"), it only reports unless `--fix`.
A progress bar on a terminal (stderr), as every long command.
Exit codes: 0 nothing (left) to delete, 1 expired backups remain (the report without --fix)."""

import json

from django.core.management.base import BaseCommand

from backups.services.prune import backups_prune
from sharestore.core import commands


class Command(BaseCommand):
    help = (
        "Delete expired, unprotected backups (dependents are merged, so they stay restorable). "
        "Reports only unless --fix."
    )

    def add_arguments(self, parser):
        commands.add_fix_arguments(parser, fix_help="delete them (without it: report only)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def handle(self, *args, **options):
        dry_run = not commands.fix_requested(options)
        progress = commands.terminal_progress(self.stderr, options)
        try:
            results = backups_prune(actor="manage.py prune_backups", dry_run=dry_run, progress=progress)
        finally:
            progress.close()
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": dry_run, "backups": results}, indent=2))
            return
        if not results:
            self.stdout.write("no expired backups")
        for entry in results:
            line = f"{entry['action']}: {entry['name']} {entry['uuid']} (expired at {entry['expired_time']})"
            if entry.get("merge_into"):
                line += f", merged into {', '.join(entry['merge_into'])}"
            if entry.get("reason"):
                line += f": scode {entry['scode']} {entry['reason']}"
            self.stdout.write(line)
