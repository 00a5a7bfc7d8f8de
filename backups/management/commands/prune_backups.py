"""manage.py prune_backups: delete the backups whose ExpiredTime has passed (protected ones are kept;
a backup that a later one sits on is merged into it). The same service the django-q2 schedule runs."""

import json

from django.core.management.base import BaseCommand

from backups.services.prune import backups_prune


class Command(BaseCommand):
    help = "Delete expired, unprotected backups (dependents are merged, so they stay restorable)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be deleted, change nothing"
        )
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def handle(self, *args, **options):
        results = backups_prune(actor="manage.py prune_backups", dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "backups": results}, indent=2))
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
