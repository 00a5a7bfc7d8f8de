"""manage.py reconcile: compare the database with the files of every pool and backup point.

The same service as the console's reconcile screen (`volumes.services.repair.reconcile`). Without
--fix it is a dry run. Exit codes: 0 consistent (or everything fixed), 1 findings remain, 2 usage
error, 3 a pool or backup point directory could not be read.
"""

import json

from django.core.management.base import BaseCommand

from sharestore.core import commands
from volumes.services.repair.findings import DEFAULT_GRACE_SECONDS
from volumes.services.repair.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Compare the database with the files in each pool and backup point: orphan files, missing files, "
        "backing chains that disagree with the snapshot tree, sizes out of date, stuck states. "
        "Dry run unless --fix. Exit: 0 consistent, 1 findings remain, 2 usage error, 3 a directory unreadable."
    )

    def add_arguments(self, parser):
        commands.add_fix_arguments(
            parser,
            fix_help="remove orphans older than --grace, mark objects whose file is missing as error, "
            "refresh sizes",
        )
        commands.add_uuid_lists(
            parser, {"--pool": "only this pool", "--backup-point": "only this backup point"}
        )
        commands.add_non_negative(
            parser,
            "--grace",
            int,
            default=DEFAULT_GRACE_SECONDS,
            metavar="SECONDS",
            help=f"leave orphans younger than this (default {DEFAULT_GRACE_SECONDS})",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def handle(self, *args, **options):
        fix = commands.fix_requested(options)
        commands.require_non_negative(options, "--grace")
        targets = {}
        if options["pool"]:
            targets["pool"] = options["pool"]
        if options["backup_point"]:
            targets["backup_point"] = options["backup_point"]
        progress = commands.terminal_progress(self.stderr, options)
        try:
            with commands.service_errors_as_usage():
                reports = reconcile(
                    actor=commands.command_actor("reconcile"),
                    fix=fix,
                    targets=targets or None,
                    grace_seconds=options["grace"],
                    progress=progress,
                )
        finally:
            progress.close()
        unreadable = [r for r in reports if r.error]
        remaining = sum(len(r.remaining) for r in reports)
        fixed = sum(1 for r in reports for f in r.findings if f.fixed)
        if unreadable:
            code = commands.EXIT_UNAVAILABLE
        elif remaining:
            code = commands.EXIT_FINDINGS
        else:
            code = commands.EXIT_OK
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "fix": fix,
                        "grace_seconds": options["grace"],
                        "reports": [r.as_dict() for r in reports],
                        "summary": {
                            "targets": len(reports),
                            "findings": sum(len(r.findings) for r in reports),
                            "fixed": fixed,
                            "remaining": remaining,
                            "unreadable": len(unreadable),
                        },
                        "exit_code": code,
                    },
                    indent=2,
                )
            )
        else:
            for report in reports:
                self.stdout.write(
                    f"{report.scope} {report.name} ({report.uuid}) at {report.path}: "
                    f"{report.files_checked} file(s), {len(report.findings)} finding(s)"
                )
                if report.error:
                    self.stdout.write(f"  ERROR {report.error}")
                for f in report.findings:
                    if f.fixed:
                        outcome = f"fixed: {f.fix}"
                    elif f.error:
                        outcome = f"fix failed: {f.error}"
                    elif f.kept:
                        outcome = f"kept: {f.kept_label}"
                    else:
                        outcome = f"would {f.fix}" if f.fix and not fix else (f.fix or "report only")
                    what = f"{f.object_type} {f.object_uuid} " if f.object_type else ""
                    facts = " ".join(
                        x
                        for x in (
                            f.detail,
                            f"db={f.expected}" if f.expected else "",
                            f"disk={f.found}" if f.found else "",
                        )
                        if x
                    )
                    self.stdout.write(f"  {f.kind:<16} {f.name}  {what}{facts}  [{outcome}]")
            verb = "fixed" if fix else "dry run"
            self.stdout.write(
                f"{verb}: {sum(len(r.findings) for r in reports)} finding(s), {fixed} fixed, {remaining} remaining"
            )
        commands.exit_with(
            code,
            f"{remaining} finding(s) remain"
            if code == commands.EXIT_FINDINGS
            else f"{len(unreadable)} location(s) unreadable"
            if code
            else "",
        )
