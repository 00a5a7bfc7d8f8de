"""manage.py verify_backups: `qemu-img check` each backup's files and recompute every chunk digest of its
content against the chunk index recorded at backup time; results are stored on the backups.

Selection: UUIDs (or `--backup`), `--point`, `--volume` (each repeatable), `--older-than DAYS`
(never verified, or last verified before that), `--limit N`; least recently verified first.
A progress bar on a terminal (stderr). Exit codes: 0 every verified backup is ok, 1 one or more
failed, 2 bad arguments."""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import F, Q
from django.utils import timezone

from backups.choices import BackupStatus, VerifyResult
from backups.models import Backup, BackupPoint
from backups.services.verify import backup_verify
from sharestore import errors
from sharestore.core import commands


class Command(BaseCommand):
    help = (
        "Verify completed backups (qemu-img check, every chunk digest recomputed), selected by backup, "
        "backup point, volume and age. Exit 1 on failures."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "backups",
            nargs="*",
            type=commands.uuid_arg,
            metavar="UUID",
            help="backups to verify (as --backup)",
        )
        commands.add_uuid_lists(
            parser,
            {
                "--backup": "this backup",
                "--point": "backups on this backup point",
                "--volume": "backups of this volume",
            },
        )
        commands.add_non_negative(
            parser,
            "--older-than",
            float,
            metavar="DAYS",
            help="only backups never verified or last verified more than DAYS ago",
        )
        commands.add_non_negative(
            parser, "--limit", int, default=0, help="verify at most N, least recently verified first"
        )
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def _targets(self, options) -> list[Backup]:
        wanted = list(dict.fromkeys([*options["backups"], *options["backup"]]))
        if wanted:
            found = set(map(str, Backup.objects.filter(uuid__in=wanted).values_list("uuid", flat=True)))
            missing = [u for u in wanted if u not in found]
            if missing:
                raise CommandError(f"no backup with UUID {', '.join(missing)}", returncode=2)
        if options["point"]:
            found = set(
                map(str, BackupPoint.objects.filter(uuid__in=options["point"]).values_list("uuid", flat=True))
            )
            missing = [u for u in options["point"] if u not in found]
            if missing:
                raise CommandError(f"no backup point with UUID {', '.join(missing)}", returncode=2)
        commands.require_non_negative(options, "--older-than", "--limit")
        queryset = Backup.objects.select_related("backup_point")
        if wanted:
            queryset = queryset.filter(uuid__in=wanted)
        else:
            # Without explicit UUIDs only completed backups are candidates (explicit ones are tried
            # and reported "skipped" with the reason when they cannot be verified).
            queryset = queryset.filter(status=BackupStatus.COMPLETED)
        if options["point"]:
            queryset = queryset.filter(backup_point__uuid__in=options["point"])
        if options["volume"]:
            queryset = queryset.filter(volume_uuid__in=options["volume"])
        if options["older_than"] is not None:
            cutoff = timezone.now() - timedelta(days=options["older_than"])
            queryset = queryset.filter(Q(verified_at__isnull=True) | Q(verified_at__lt=cutoff))
        queryset = queryset.order_by(F("verified_at").asc(nulls_first=True), "created", "id")
        if options["limit"]:
            queryset = queryset[: options["limit"]]
        targets = list(queryset)
        if wanted and not any(options[k] for k in ("point", "volume", "older_than", "limit")):
            order = {u: i for i, u in enumerate(wanted)}
            targets.sort(key=lambda b: order[str(b.uuid)])
        return targets

    def handle(self, *args, **options):
        targets = self._targets(options)
        results = []
        progress = commands.terminal_progress(self.stderr, options)
        try:
            for index, backup in enumerate(targets):
                progress(index, len(targets), backup.name)
                entry = {"uuid": str(backup.uuid), "name": backup.name}
                try:
                    verification = backup_verify(actor="manage.py verify_backups", backup=backup)
                except errors.ServiceError as exc:
                    entry.update(result="skipped", scode=exc.scode, message=exc.render_message())
                else:
                    entry.update(
                        result=verification.result,
                        scode=verification.scode,
                        message=verification.message,
                        checksum_expected=verification.checksum_expected,
                        checksum_found=verification.checksum_found,
                        check_exit=verification.image_check.get("exit"),
                    )
                results.append(entry)
                if not options["json"]:
                    progress.close()
                    line = f"{entry['result']}: {entry['name']} {entry['uuid']}"
                    if entry.get("message"):
                        line += f": {entry['message']}"
                    self.stdout.write(line)
            progress(len(targets), len(targets))
        finally:
            progress.close()
        failed = sum(1 for r in results if r["result"] == VerifyResult.FAILED)
        if options["json"]:
            self.stdout.write(
                json.dumps({"verified": len(results), "failed": failed, "backups": results}, indent=2)
            )
        elif not results:
            self.stdout.write("no completed backups to verify")
        if failed:
            raise SystemExit(1)
