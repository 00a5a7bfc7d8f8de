"""manage.py add_pool: register a directory as a pool (the same service as the console's add form).

Exit codes: 0 created (or, with --dry-run, valid), 2 rejected (the message says why).
"""

from django.core.management.base import BaseCommand, CommandError

from sharestore.core.commands import (
    EXIT_USAGE,
    add_location_arguments,
    add_uuid_list,
    command_actor,
    get_by_uuid,
    location_result,
    parse_size,
    service_errors_as_usage,
    uuid_arg,
    write_location_result,
)
from volumes.choices import PoolDriver, PoolType
from volumes.models import Cluster, Host, Tenant, Zone
from volumes.services.pools import pool_create, pool_create_check, rbd_location


class Command(BaseCommand):
    help = "Register a directory (existing, writable) as a pool of a cluster. Exit: 0 ok, 2 rejected."

    def add_arguments(self, parser):
        add_location_arguments(
            parser,
            path_required=False,
            path_help="absolute directory where this service's workers reach the pool (an RBD pool: built "
            "from the --ceph-* options unless given as pool[/namespace]:conf=…[:id=…][:keyring=…])",
        )
        parser.add_argument("--ceph-pool", help="rbd: the Ceph pool holding the images")
        parser.add_argument("--ceph-namespace", default="", help="rbd: an RBD namespace of that pool")
        parser.add_argument("--ceph-conf", default="/etc/ceph/ceph.conf", help="rbd: the cluster's ceph.conf")
        parser.add_argument("--ceph-user", default="", help="rbd: the client id (default: admin)")
        parser.add_argument("--keyring", default="", help="rbd: the client's keyring file")
        parser.add_argument("--zone", type=uuid_arg, metavar="UUID", help="default: the cluster's zone")
        # Directory types are driven as directories; rbd runs the RBD driver (validated by connecting).
        parser.add_argument("--type", default=PoolType.DISK, choices=PoolType.values)
        parser.add_argument(
            "--driver", choices=PoolDriver.values, help="default: rbd for --type rbd, else qcow2-dir"
        )
        parser.add_argument(
            "--overcommit", default="1", help="sum of capacities may reach capacity x this (default 1)"
        )
        add_uuid_list(parser, "--tenant", "restrict to these tenants (repeatable; default: every tenant)")
        parser.add_argument(
            "--mount",
            action="append",
            default=[],
            metavar="HOST_UUID=PATH",
            help="where a host mounts the pool (repeatable; default: every host of the cluster at --path)",
        )
        parser.add_argument("--uuid", type=uuid_arg, help="the pool's UUID (default: a new one)")
        parser.add_argument("--dry-run", action="store_true", help="validate only")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        cluster = get_by_uuid(Cluster, options["cluster"], "cluster")
        zone = get_by_uuid(Zone, options["zone"], "zone") if options["zone"] else None
        tenants = [get_by_uuid(Tenant, t, "tenant") for t in options["tenant"]]
        mounts = None
        if options["mount"]:
            mounts = {}
            for item in options["mount"]:
                host_uuid, sep, mount_path = item.partition("=")
                if not sep or not mount_path:
                    raise CommandError(f"--mount {item!r}: expected HOST_UUID=PATH", returncode=EXIT_USAGE)
                try:
                    host_uuid = uuid_arg(host_uuid)
                except ValueError:
                    raise CommandError(
                        f"--mount {item!r}: {host_uuid!r} is not a UUID", returncode=EXIT_USAGE
                    ) from None
                mounts[get_by_uuid(Host, host_uuid, "host")] = mount_path
        capacity = parse_size(options["capacity"])
        rbd = options["type"] == PoolType.RBD
        driver = options["driver"] or (PoolDriver.RBD if rbd else PoolDriver.QCOW2_DIRECTORY)
        path = options["path"]
        if rbd and not path:
            with service_errors_as_usage():
                path = rbd_location(
                    ceph_pool=options["ceph_pool"] or "",
                    namespace=options["ceph_namespace"],
                    conf=options["ceph_conf"],
                    user=options["ceph_user"],
                    keyring=options["keyring"],
                )
        if not path:
            raise CommandError("--path is required", returncode=EXIT_USAGE)
        arguments = dict(
            name=options["name"],
            cluster=cluster,
            path=path,
            capacity=capacity,
            pool_type=options["type"],
            driver=driver,
            overcommit_ratio=options["overcommit"],
            uuid=options["uuid"],
        )
        with service_errors_as_usage():
            if options["dry_run"]:
                result = location_result(capacity=capacity, checked=pool_create_check(**arguments))
            else:
                pool = pool_create(
                    actor=command_actor("add_pool"), zone=zone, tenants=tenants, mounts=mounts, **arguments
                )
                result = location_result(
                    capacity=capacity,
                    created=pool,
                    overcommit_ratio=str(pool.overcommit_ratio),
                    mounts={str(m.host.uuid): m.mount_path for m in pool.mounts.select_related("host")},
                )
        write_location_result(self.stdout, "pool", result, as_json=options["json"])
