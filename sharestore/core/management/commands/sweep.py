"""manage.py sweep: re-run operations whose lease expired so they finish or roll back."""

import json

from django.core.management.base import BaseCommand

from sharestore.core.services.operations import operations_sweep


class Command(BaseCommand):
    help = "Re-enqueue operations whose worker stopped renewing its lease (idempotent tasks resume or roll back)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        expired = operations_sweep(dry_run=options["dry_run"])
        rows = [
            {"uuid": str(o.uuid), "kind": o.kind, "state": o.state, "attempts": o.attempts} for o in expired
        ]
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "operations": rows}))
        else:
            verb = "would re-enqueue" if options["dry_run"] else "re-enqueued"
            self.stdout.write(f"{verb} {len(rows)} operation(s)")
            for row in rows:
                self.stdout.write(f"  {row['uuid']} {row['kind']} {row['state']} attempts={row['attempts']}")
