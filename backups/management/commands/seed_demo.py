"""manage.py seed_demo: the contract's demo topology, pools, backup point and import files (idempotent)."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from backups.services.points import backup_point_create
from volumes.services.demo import demo_import_files_seed, demo_topology_seed

BACKUP_POINT_UUID = "7f74897a-3084-45e1-a413-6cd168ddd4b5"


class Command(BaseCommand):
    help = "Create the demo zone, cluster, host, tenant, pools, backup point and import images (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print what exists as JSON")

    def handle(self, *args, **options):
        data_dir = Path(settings.SHARESTORE_DATA_DIR)
        topology = demo_topology_seed(data_dir=data_dir)
        bp_dir = data_dir / "backup" / f"bp-{BACKUP_POINT_UUID}"
        bp_dir.mkdir(parents=True, exist_ok=True)
        backup_point = backup_point_create(
            name="demo-backup-point",
            cluster=topology["cluster"],
            path=str(bp_dir),
            capacity=1 << 40,
            uuid=BACKUP_POINT_UUID,
        )
        files = demo_import_files_seed()
        summary = {
            "cluster_uuid": str(topology["cluster"].uuid),
            "tenant": str(topology["tenant"].uuid),
            "pools": {str(p.uuid): {"name": p.name, "path": p.path} for p in topology["pools"]},
            "backup_point_uuid": str(backup_point.uuid),
            "import_files": [str(f) for f in files],
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
        else:
            self.stdout.write(f"demo data ready under {data_dir}")
            for f in files:
                self.stdout.write(f"  import file for backing_file: {f}")
