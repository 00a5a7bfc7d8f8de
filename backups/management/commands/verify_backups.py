"""manage.py verify_backups: `qemu-img check` each backup's files and recompute every chunk digest of its
content against the chunk index recorded at backup time; results are stored on the backups.
Exit codes: 0 every verified backup is ok, 1 one or more failed, 2 bad arguments."""

import json
import uuid

from django.core.management.base import BaseCommand, CommandError

from backups.choices import BackupStatus, VerifyResult
from backups.models import Backup
from backups.selectors import backups_to_verify
from backups.services.verify import backup_verify
from sharestore import errors


def _uuid(value: str) -> str:
    return str(uuid.UUID(value))


class Command(BaseCommand):
    help = "Verify completed backups (qemu-img check, every chunk digest recomputed). Exit 1 on failures."

    def add_arguments(self, parser):
        parser.add_argument(
            "backups", nargs="*", type=_uuid, metavar="UUID", help="backups to verify (default: all)"
        )
        parser.add_argument(
            "--limit", type=int, default=0, help="verify at most N, least recently verified first"
        )
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def handle(self, *args, **options):
        if options["backups"]:
            found = {
                str(b.uuid): b
                for b in Backup.objects.filter(uuid__in=options["backups"]).select_related("backup_point")
            }
            missing = [u for u in options["backups"] if u not in found]
            if missing:
                raise CommandError(f"no backup with UUID {', '.join(missing)}", returncode=2)
            targets = [found[u] for u in options["backups"]]
        else:
            total = Backup.objects.filter(status=BackupStatus.COMPLETED).count()
            targets = backups_to_verify(limit=options["limit"] or total)
        results = []
        for backup in targets:
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
                line = f"{entry['result']}: {entry['name']} {entry['uuid']}"
                if entry.get("message"):
                    line += f": {entry['message']}"
                self.stdout.write(line)
        failed = sum(1 for r in results if r["result"] == VerifyResult.FAILED)
        if options["json"]:
            self.stdout.write(
                json.dumps({"verified": len(results), "failed": failed, "backups": results}, indent=2)
            )
        elif not results:
            self.stdout.write("no completed backups to verify")
        if failed:
            raise SystemExit(1)
