"""Writes on pools: register one (admin and `manage.py add_pool`) and edit it, with the directory
checked first; plus the usage figures the console draws as bars."""

from __future__ import annotations

import os
import uuid as uuid_lib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import models, transaction
from django.db.models import ProtectedError, Sum
from django.utils import timezone

from sharestore import errors
from sharestore.core.services.state import audit, audit_of, transition
from volumes.choices import LIVE_STATES, EventState, PoolDriver, PoolStatus, PoolType
from volumes.drivers import DRIVERS, get_driver
from volumes.models import Cluster, Host, Pool, PoolMount, Tenant, Volume, Zone
from volumes.services.space import pool_reserved
from volumes.services.volumes import pool_driver, validate_name


def validate_pool_location(driver_name: str, path) -> str:
    """The pool's location as its driver checks it (for a directory driver: an existing writable
    directory), in the canonical form the driver returns."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise errors.InvalidParameter(field="path", reason="must be an absolute directory path")
    if driver_name not in DRIVERS:
        raise errors.InvalidParameter(field="driver", reason=f"must be one of {', '.join(PoolDriver.values)}")
    return get_driver(driver_name, path).validate_location()


def rbd_location(*, ceph_pool: str, conf: str, namespace: str = "", user: str = "", keyring: str = "") -> str:
    """An RBD pool's location (its `path`) from its settings: the Ceph pool (and namespace), the
    cluster's ceph.conf, and the client's id and keyring (docs/storage.md "Ceph RBD pools")."""
    for field_name, value in (("ceph_pool", ceph_pool), ("namespace", namespace), ("user", user)):
        if any(c in value for c in ":@/\x00"):
            raise errors.InvalidParameter(field=field_name, reason="must not contain ':', '@' or '/'")
    for field_name, value in (("conf", conf), ("keyring", keyring)):
        if value and (not os.path.isabs(value) or ":" in value or "\x00" in value):
            raise errors.InvalidParameter(field=field_name, reason="must be an absolute path without ':'")
    if not ceph_pool or not conf:
        raise errors.InvalidParameter(field="ceph_pool" if not ceph_pool else "conf", reason="is required")
    where = f"{ceph_pool}/{namespace}" if namespace else ceph_pool
    options = [f"{k}={v}" for k, v in (("conf", conf), ("id", user), ("keyring", keyring)) if v]
    return ":".join([where, *options])


def validate_pool_kind(pool_type: str, driver: str) -> None:
    """An `rbd` pool runs the RBD driver, and the RBD driver runs only `rbd` pools."""
    if (pool_type == PoolType.RBD) != (driver == PoolDriver.RBD):
        raise errors.InvalidParameter(
            field="driver", reason="pool type rbd goes with driver rbd (and only it)"
        )


def validate_byte_capacity(capacity) -> int:
    """A capacity in bytes: a non-negative integer."""
    if capacity is None or isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise errors.InvalidParameter(field="capacity", reason="must be a non-negative number of bytes")
    return capacity


def validate_choice(value, choices, *, field: str):
    """One of `choices` (a choices enum's values), or InvalidParameter listing them."""
    if value not in choices:
        raise errors.InvalidParameter(field=field, reason=f"must be one of {', '.join(choices)}")
    return value


def reject_unknown_fields(changes: dict, editable) -> None:
    """An update names only fields that may be changed; the first other one (sorted) is refused."""
    unknown = set(changes) - set(editable)
    if unknown:
        raise errors.InvalidParameter(field=sorted(unknown)[0], reason="cannot be changed")


def changed_values(obj, values: dict, *, status, statuses) -> dict:
    """The end of an update check: the requested `status` (if any) must be one of `statuses`; answers
    the `values` that differ from `obj`'s."""
    if status is not None:
        validate_choice(status, statuses, field="status")
    return {k: v for k, v in values.items() if getattr(obj, k) != v}


def write_changes(obj, values: dict, *, actor: str, object_type: str) -> None:
    """Write an update's changed columns and record each, old -> new, in the audit trail."""
    type(obj).objects.filter(pk=obj.pk).update(**values, modified=timezone.now())
    audit(
        actor=actor,
        action=f"{object_type}.update",
        object_type=object_type,
        object_uuid=obj.uuid,
        message=", ".join(f"{k}: {getattr(obj, k)} -> {v}" for k, v in values.items()),
    )


def change_status(obj, status, *, actor: str, object_type: str) -> None:
    """The status change an update asks for (if any), through `transition` from the status it has now."""
    if status is not None and status != obj.status:
        transition(
            obj,
            allowed=[obj.status],
            to=status,
            field="status",
            object_type=object_type,
            action=f"{object_type}.status",
            actor=actor,
        )


@dataclass
class SettingsEdit:
    """An edit of a pool's or a backup point's settings: the locked row, its changed columns, who edits."""

    row: models.Model
    values: dict
    actor: str
    object_type: str

    @classmethod
    def begin(cls, row: models.Model, check, *, actor: str, object_type: str) -> SettingsEdit:
        """Lock the row until the transaction commits and validate the edit against it (`check`: the
        locked row -> the column values that differ)."""
        locked = type(row).objects.select_for_update().get(pk=row.pk)
        return cls(row=locked, values=check(locked), actor=actor, object_type=object_type)

    def write(self) -> None:
        """Write the changed columns (if any), each audited old -> new."""
        if self.values:
            write_changes(self.row, self.values, actor=self.actor, object_type=self.object_type)

    def finish(self, status) -> models.Model:
        """The row as written, after the status change the edit asks for (if any)."""
        self.row.refresh_from_db()
        change_status(self.row, status, actor=self.actor, object_type=self.object_type)
        return self.row


def validate_overcommit(ratio, *, field: str = "overcommit_ratio") -> Decimal:
    """The one over-allocation rule: live volumes' capacities may sum to capacity x this ratio (the
    pool API's `Attr.overAllocationThreshold` is this ratio written as a string)."""
    if isinstance(ratio, bool):
        raise errors.InvalidParameter(field=field, reason="must be a number")
    try:
        value = Decimal(str(ratio).strip())
    except (InvalidOperation, ValueError):
        raise errors.InvalidParameter(field=field, reason="must be a number") from None
    if not value.is_finite() or value <= 0 or value >= 10000:
        raise errors.InvalidParameter(field=field, reason="must be greater than 0 and below 10000")
    value = value.quantize(Decimal("0.01"))
    if value <= 0:
        raise errors.InvalidParameter(field=field, reason="must be at least 0.01")
    return value


def check_name_matches(obj, given: str, *, field: str, kind: str, kind_cn: str) -> None:
    """A request that names an object by UUID and name: the name must be the object's."""
    if given != obj.name:
        raise errors.ObjectNameMismatch(field=field, given=given, kind=kind, kind_cn=kind_cn, uuid=obj.uuid)


def _check_name_free(*, cluster: Cluster, name: str, exclude_pk: int | None = None) -> None:
    taken = Pool.objects.filter(cluster=cluster, name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise errors.InvalidParameter(
            field="name", reason=f"cluster {cluster.name} already has a pool named {name!r}"
        )


def _check_volumes_present(pool: Pool, driver_name: str, path: str) -> None:
    """A pool that holds volumes may only be re-pointed at a directory where their images are."""
    driver = get_driver(driver_name, path)
    missing = [
        str(uuid)
        for uuid in Volume.objects.filter(pool=pool, state__in=LIVE_STATES).values_list("uuid", flat=True)
        if not driver.exists(f"volume/{uuid}")
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise errors.InvalidParameter(
            field="path", reason=f"{len(missing)} volume image(s) of this pool are not in {path}: {shown}"
        )


def pool_create_check(
    *,
    name: str,
    cluster: Cluster,
    path: str,
    capacity: int,
    pool_type: str = PoolType.DISK,
    driver: str = PoolDriver.QCOW2_DIRECTORY,
    overcommit_ratio=1,
    uuid=None,
) -> dict:
    """Validate a new pool's settings without writing; return them cleaned (the form calls this too).

    `capacity` None: the size of the filesystem under the pool (the driver's `space().total`)."""
    validate_pool_kind(pool_type, driver)
    values = {
        "name": validate_name(name, field="name"),
        "path": validate_pool_location(driver, path),
        "overcommit_ratio": validate_overcommit(overcommit_ratio),
    }
    if capacity is None:
        capacity = get_driver(driver, values["path"]).space().total
    values["capacity"] = validate_byte_capacity(capacity)
    validate_choice(pool_type, PoolType.values, field="pool_type")
    validate_choice(driver, PoolDriver.values, field="driver")
    if uuid is not None and Pool.objects.filter(uuid=uuid).exists():
        raise errors.InvalidParameter(field="uuid", reason=f"a pool with UUID {uuid} already exists")
    _check_name_free(cluster=cluster, name=values["name"])
    if Pool.objects.filter(path=values["path"]).exists():
        raise errors.InvalidParameter(field="path", reason=f"another pool already uses {values['path']}")
    return values


@transaction.atomic
def pool_create(
    *,
    actor: str,
    name: str,
    cluster: Cluster,
    path: str,
    capacity: int | None,
    zone: Zone | None = None,
    pool_type: str = PoolType.DISK,
    driver: str = PoolDriver.QCOW2_DIRECTORY,
    overcommit_ratio=1,
    tenants: list[Tenant] | None = None,
    mounts: dict[Host, str] | None = None,
    uuid=None,
    origin: dict | None = None,
) -> Pool:
    """Register a directory as a pool. Without `mounts`, every host of the cluster mounts it at `path`.

    `origin`: what the platform's pool API records about the storage (ip, port, source, username,
    limit_host), kept as given."""
    values = pool_create_check(
        name=name,
        cluster=cluster,
        path=path,
        capacity=capacity,
        pool_type=pool_type,
        driver=driver,
        overcommit_ratio=overcommit_ratio,
        uuid=uuid,
    )
    if mounts is not None:
        for host in mounts:
            if host.cluster_id != cluster.pk:
                raise errors.InvalidParameter(
                    field="mount", reason=f"host {host.uuid} is not in cluster {cluster.name}"
                )
    pool = Pool.objects.create(
        uuid=uuid or uuid_lib.uuid4(),
        cluster=cluster,
        zone=zone or cluster.zone,
        pool_type=pool_type,
        driver=driver,
        **(origin or {}),
        **values,
    )
    if tenants:
        pool.tenants.set(tenants)
    if mounts is None:
        mounts = {host: values["path"] for host in Host.objects.filter(cluster=cluster)}
    for host, mount_path in mounts.items():
        PoolMount.objects.create(pool=pool, host=host, mount_path=mount_path)
    # The identity marker: every storage step checks it, so an empty mount point is never written.
    pool_driver(pool).mark_identity(str(pool.uuid), name=pool.name)
    audit_of(
        pool,
        actor=actor,
        action="pool.create",
        message=f"name={pool.name} path={pool.path} capacity={pool.capacity} overcommit={pool.overcommit_ratio}",
    )
    return pool


EDITABLE_POOL_FIELDS = (
    "name",
    "zone",
    "pool_type",
    "path",
    "capacity",
    "overcommit_ratio",
    "status",
    "tenants",
)


def pool_update_check(*, pool: Pool, **changes) -> dict:
    """Validate changes to a pool without writing; return the column values that differ.

    A new path must exist, be writable, be no other pool's, and hold this pool's volume images.
    """
    reject_unknown_fields(changes, EDITABLE_POOL_FIELDS)
    values: dict = {}
    if "name" in changes and changes["name"] != pool.name:
        values["name"] = validate_name(changes["name"], field="name")
        _check_name_free(cluster=pool.cluster, name=values["name"], exclude_pk=pool.pk)
    if "path" in changes and changes["path"] != pool.path:
        path = validate_pool_location(pool.driver, changes["path"])
        if path != pool.path:
            if Pool.objects.filter(path=path).exclude(pk=pool.pk).exists():
                raise errors.InvalidParameter(field="path", reason=f"another pool already uses {path}")
            _check_volumes_present(pool, pool.driver, path)
            values["path"] = path
    if "capacity" in changes:
        values["capacity"] = validate_byte_capacity(changes["capacity"])
    if "overcommit_ratio" in changes:
        values["overcommit_ratio"] = validate_overcommit(changes["overcommit_ratio"])
    if "pool_type" in changes:
        values["pool_type"] = validate_choice(changes["pool_type"], PoolType.values, field="pool_type")
    if changes.get("zone") is not None:
        values["zone"] = changes["zone"]
    return changed_values(pool, values, status=changes.get("status"), statuses=PoolStatus.values)


@transaction.atomic
def pool_update(*, actor: str, pool: Pool, **changes) -> Pool:
    """Edit a pool's settings (see `pool_update_check`); a status change goes through `transition`."""
    edit = SettingsEdit.begin(
        pool, lambda locked: pool_update_check(pool=locked, **changes), actor=actor, object_type="pool"
    )
    pool = edit.row
    if "path" in edit.values:
        get_driver(pool.driver, edit.values["path"]).mark_identity(str(pool.uuid), name=pool.name)
    edit.write()
    if changes.get("tenants") is not None:
        before = set(pool.tenants.values_list("pk", flat=True))
        after = {t.pk for t in changes["tenants"]}
        if before != after:
            pool.tenants.set(changes["tenants"])
            audit_of(
                pool,
                actor=actor,
                action="pool.update",
                message=f"tenants: {sorted(before)} -> {sorted(after)}",
            )
    return edit.finish(changes.get("status"))


@transaction.atomic
def pool_mount_set(*, actor: str, pool: Pool, host: Host, mount_path: str) -> PoolMount:
    """Record where a host mounts the pool (the AccessPath the API hands out for that host)."""
    if host.cluster_id != pool.cluster_id:
        raise errors.InvalidParameter(field="host", reason=f"host {host} is not in the pool's cluster")
    if not isinstance(mount_path, str) or not os.path.isabs(mount_path) or "\x00" in mount_path:
        raise errors.InvalidParameter(field="mount_path", reason="must be an absolute path")
    mount, created = PoolMount.objects.update_or_create(
        pool=pool, host=host, defaults={"mount_path": mount_path}
    )
    audit_of(
        pool,
        actor=actor,
        action="pool.mount",
        message=f"{'added' if created else 'changed'}: host {host.uuid} at {mount_path}",
    )
    return mount


@transaction.atomic
def pool_mount_remove(*, actor: str, mount: PoolMount) -> None:
    pool, host = mount.pool, mount.host
    mount.delete()
    audit_of(pool, actor=actor, action="pool.unmount", message=f"removed: host {host.uuid}")


@dataclass(frozen=True)
class PoolUsage:
    """Figures behind a pool's bars: what volumes promise, what their files occupy, what the disk has."""

    capacity: int
    limit: int
    committed: int
    allocated: int
    fs_total: int | None
    fs_free: int | None
    reserved: int = 0


def pool_usage(pool: Pool, *, filesystem: bool = True) -> PoolUsage:
    """Sums from the database; with `filesystem`, the driver's `space()` (one statvfs for a directory)."""
    sums = Volume.objects.filter(pool=pool, state__in=LIVE_STATES).aggregate(
        committed=Sum("capacity"), used=Sum("used"), snaps=Sum("snap_length")
    )
    fs_total = fs_free = None
    if filesystem:
        try:
            space = get_driver(pool.driver, pool.path).space()
            fs_total, fs_free = space.total, space.free
        except (OSError, KeyError, errors.ServiceError):
            pass
    return PoolUsage(
        capacity=pool.capacity,
        limit=pool.capacity_limit,
        committed=sums["committed"] or 0,
        allocated=(sums["used"] or 0) + (sums["snaps"] or 0),
        fs_total=fs_total,
        fs_free=fs_free,
        # What the copies accepted into the pool have still to write (volumes.services.space).
        reserved=pool_reserved(pool) if filesystem else 0,
    )


def pool_marker_problem(pool: Pool) -> str:
    """ "" when this host sees the pool's directory with its identity marker, else why not.

    A plain function for health endpoints (`/readyz`) and the console: one stat and one small read.
    """
    try:
        pool_driver(pool).check_available()
    except errors.ServiceError as error:
        return error.render_message()
    return ""


def pool_mark(*, actor: str, pool: Pool, force: bool = False) -> bool:
    """Write the identity marker of a pool registered before markers existed; whether one was written.

    Refused when the directory holds another pool's marker, and when it is empty unless `force`:
    an empty directory is what a share that is not mounted looks like, so the operator confirms.
    """
    if not pool_driver(pool).mark_identity(str(pool.uuid), name=pool.name, adopt=True, force=force):
        return False
    audit_of(pool, actor=actor, action="pool.mark", message=f"marker written in {pool.path}")
    return True


def pools_health_refresh(*, actor: str, pools=None, problems: dict[str, str] | None = None) -> dict[str, str]:
    """Check the marker of each pool (default: all not in maintenance) and show the result in its
    status: healthy <-> unavailable, with an audit event on each change. Returns {uuid: problem}.
    `problems`: what was found already (by uuid), recorded instead of checking the marker."""
    known = problems or {}
    problems = {}
    queryset = pools if pools is not None else Pool.objects.exclude(status=PoolStatus.MAINTENANCE)
    for pool in queryset:
        problem = known[str(pool.uuid)] if str(pool.uuid) in known else pool_marker_problem(pool)
        problems[str(pool.uuid)] = problem
        wanted = PoolStatus.UNAVAILABLE if problem else PoolStatus.HEALTHY
        if pool.status == PoolStatus.MAINTENANCE or pool.status == wanted:
            continue
        rows = Pool.objects.filter(pk=pool.pk, status=pool.status).update(
            status=wanted, modified=timezone.now()
        )
        if rows == 1:
            audit_of(
                pool,
                actor=actor,
                action="pool.status",
                from_state=pool.status,
                to_state=wanted,
                message=problem or "marker ok",
            )
    return problems


@transaction.atomic
def pool_delete(*, actor: str, pool: Pool) -> None:
    """Forget a pool that holds no volume (its directory and files stay where they are).

    Rows of deleted volumes go with it; any other volume (live, or still being deleted) refuses."""
    pool = Pool.objects.select_for_update().get(pk=pool.pk)
    held = Volume.objects.filter(pool=pool).exclude(state=EventState.DELETED).count()
    if held:
        raise errors.PoolHasVolumes(pool=pool.name, count=held)
    try:
        Volume.objects.filter(pool=pool, state=EventState.DELETED).delete()
        uuid, name = pool.uuid, pool.name
        pool.delete()
    except ProtectedError as error:
        raise errors.PoolHasVolumes(pool=pool.name, count=len(error.protected_objects)) from None
    audit(actor=actor, action="pool.delete", object_type="pool", object_uuid=uuid, message=f"name={name}")


def pool_status_check(*, actor: str, pool: Pool) -> Pool:
    """Check the mount again (identity marker) and that its filesystem answers for its size: the
    pool's status follows (healthy <-> unavailable, audited); a problem is raised after it is recorded."""
    problem = pool_marker_problem(pool)
    if not problem:
        try:
            pool_driver(pool).space()
        except (OSError, errors.ServiceError) as error:
            problem = f"its filesystem cannot be measured: {error}"
    pools_health_refresh(actor=actor, pools=[pool], problems={str(pool.uuid): problem})
    if problem:
        raise errors.PoolUnavailable(pool=pool.name, reason=problem)
    pool.refresh_from_db()
    return pool
