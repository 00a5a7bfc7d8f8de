"""The scode catalogue: every error the service can answer with, in one place.

Each condition is one exception class with a unique `scode`, the HTTP status it answers with, and
an English and a Simplified Chinese message template. Services raise these; one exception handler
(`sharestore.api.exception_handler`) turns them into the envelope. Nothing here imports DRF.

Ranges: 1xxx request, 2xxx authentication and authorization, 3xxx not found, 4xxx conflict and
state, 5xxx storage and internal. Codes are stable: never reuse or renumber one.
"""

from __future__ import annotations

__all__ = ["ServiceError", "CATALOGUE", "json_params", "render"]


class _Missing(dict):
    """Format parameters for one language: kinds, actions and states in words, a `<x>_cn` companion
    (or a translation of `<x>`) in Chinese, `{x}` left as it is when missing (`sharestore.error_words`)."""

    def __init__(self, params: dict, *, chinese: bool = False):
        super().__init__(params)
        self.chinese = chinese

    def __getitem__(self, key):
        from sharestore.error_words import param_text

        return param_text(dict(self), key, chinese=self.chinese)


CATALOGUE: dict[int, type[ServiceError]] = {}


class ServiceError(Exception):
    """Base of every catalogued error: scode, HTTP status and bilingual message templates."""

    scode: int = 5000
    http_status: int = 500
    message: str = "internal error"
    message_cn: str = "内部错误"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "scode" in cls.__dict__:
            if cls.scode in CATALOGUE:
                raise RuntimeError(
                    f"scode {cls.scode} is used twice ({CATALOGUE[cls.scode].__name__}, {cls.__name__})"
                )
            CATALOGUE[cls.scode] = cls

    def __init__(self, desc: str = "", **params):
        self.params = params
        self.desc = desc
        super().__init__(self.render_message())

    def render_message(self) -> str:
        return self.message.format_map(_Missing(self.params))

    def render_message_cn(self) -> str:
        return self.message_cn.format_map(_Missing(self.params, chinese=True))


class InternalError(ServiceError):
    """An unexpected failure inside the service."""

    scode = 5000


# 1xxx: the request itself is wrong -------------------------------------------------------------


class MalformedRequest(ServiceError):
    """The body is not a JSON object."""

    scode, http_status = 1000, 400
    message = "malformed request body: {reason}"
    message_cn = "请求体格式错误：{reason}"


class InvalidParameter(ServiceError):
    """A field is present but its value is invalid (type, format, range)."""

    scode, http_status = 1001, 400
    message = "invalid parameter {field}: {reason}"
    message_cn = "参数 {field} 无效：{reason}"


class MissingParameter(ServiceError):
    """A required field is absent."""

    scode, http_status = 1002, 400
    message = "missing required parameter {field}"
    message_cn = "缺少必填参数 {field}"


class InvalidVolumeType(ServiceError):
    """volume_type is not one of block, share, fs."""

    scode, http_status = 1003, 400
    message = "invalid volume_type {value!r}: expected one of block, share, fs"
    message_cn = "卷类型 {value!r} 无效，应为 block、share、fs 之一"


class InvalidCapacity(ServiceError):
    """capacity or snap_capacity is out of range or misaligned."""

    scode, http_status = 1004, 400
    message = "invalid {field}: {reason}"
    message_cn = "{field} 无效：{reason_cn}"


class InvalidName(ServiceError):
    """A name is empty, too long or contains forbidden characters."""

    scode, http_status = 1005, 400
    message = "invalid {field}: {reason}"
    message_cn = "{field} 无效：{reason_cn}"


class VolumeNameMismatch(ServiceError):
    """volume_name does not match the volume named by volume_uuid."""

    scode, http_status = 1006, 400
    message = "volume_name {given!r} does not match volume {uuid}"
    message_cn = "卷名称 {given!r} 与卷 {uuid} 不符"


class ImportRejected(ServiceError):
    """backing_file cannot be imported (outside the import roots, not a regular file, unsafe image)."""

    scode, http_status = 1010, 422
    message = "backing_file rejected: {reason}"
    message_cn = "已有卷文件不可导入：{reason}"


class CapacityTooSmall(ServiceError):
    """capacity is smaller than the imported image's virtual size."""

    scode, http_status = 1011, 400
    message = "capacity {capacity} is smaller than the image's virtual size {virtual_size}"
    message_cn = "容量 {capacity} 小于镜像的虚拟大小 {virtual_size}"


class PageSizeTooLarge(ServiceError):
    """page_size exceeds the maximum page size."""

    scode, http_status = 1012, 400
    message = "page_size {page_size} exceeds the maximum {maximum}"
    message_cn = "每页条数 {page_size} 超过上限 {maximum}"


class MethodNotAllowed(ServiceError):
    """The endpoint does not accept this HTTP method."""

    scode, http_status = 1007, 405
    message = "method {method} not allowed on this endpoint"
    message_cn = "此接口不支持 {method} 方法"


class UnsupportedMediaType(ServiceError):
    """The body is not application/json."""

    scode, http_status = 1008, 415
    message = "unsupported content type {media_type!r}: send application/json"
    message_cn = "不支持的内容类型 {media_type!r}，请使用 application/json"


class RequestTooLarge(ServiceError):
    """The body is larger than the API accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)."""

    scode, http_status = 1013, 413
    message = "request body is larger than {limit} bytes"
    message_cn = "请求体超过 {limit} 字节的上限"


class RequestTooDeep(ServiceError):
    """The JSON body nests arrays and objects deeper than the API accepts."""

    scode, http_status = 1014, 400
    message = "request body nests deeper than {limit} levels"
    message_cn = "请求体的嵌套超过 {limit} 层"


class HostNotServed(ServiceError):
    """The request's Host header names no host in SHARESTORE_ALLOWED_HOSTS."""

    scode, http_status = 1015, 400
    message = "this service does not answer for host {host}"
    message_cn = "本服务不响应主机 {host} 的请求"


class ImportFormatUnsupported(ServiceError):
    """backing_file holds a format that cannot be imported faithfully (only standalone qcow2 and raw can)."""

    scode, http_status = 1016, 422
    message = (
        "backing_file is {format}, which cannot be imported faithfully: only standalone qcow2 and raw "
        "disk images are accepted (convert it first: qemu-img convert -O qcow2)"
    )
    message_cn = (
        "已有卷文件为{format_cn}，无法如实导入：仅接受独立的 qcow2 或 raw 磁盘镜像"
        "（请先用 qemu-img convert -O qcow2 转换）"
    )


class PoolTypeUnsupported(ServiceError):
    """A pool type that no registered storage driver serves (pool/share/pool_type/support lists those that are)."""

    scode, http_status = 1021, 400
    message = "pool type {value} is not supported here: supported types are {supported}"
    message_cn = "不支持存储池类型 {value}：支持的类型为 {supported}"


class ObjectNameMismatch(ServiceError):
    """A request names a pool or backup point by UUID and by a name that is not its name."""

    scode, http_status = 1022, 400
    message = "{field} {given!r} does not match {kind} {uuid}"
    message_cn = "{field} {given!r} 与{kind_cn} {uuid} 不符"


# 2xxx: authentication and authorization -------------------------------------------------------


class NotAuthenticated(ServiceError):
    """No valid `Authorization: Token <key>` header."""

    scode, http_status = 2001, 401
    message = "authentication required: send 'Authorization: Token <key>'"
    message_cn = "需要认证：请携带 'Authorization: Token <key>'"


class InvalidToken(ServiceError):
    """The token is unknown, revoked or expired."""

    scode, http_status = 2002, 401
    message = "invalid, revoked or expired token"
    message_cn = "令牌无效、已吊销或已过期"


class PermissionDenied(ServiceError):
    """The caller may not perform this action."""

    scode, http_status = 2003, 403
    message = "permission denied: {reason}"
    message_cn = "无权限：{reason}"


# 3xxx: not found ------------------------------------------------------------------------------


class ClusterNotFound(ServiceError):
    """No cluster with this UUID."""

    scode, http_status = 3001, 404
    message = "cluster {uuid} not found"
    message_cn = "集群 {uuid} 不存在"


class TenantNotFound(ServiceError):
    """No tenant with this UUID visible to the caller."""

    scode, http_status = 3002, 404
    message = "tenant {uuid} not found"
    message_cn = "租户 {uuid} 不存在"


class PoolNotFound(ServiceError):
    """No pool with this UUID in the cluster usable by the tenant."""

    scode, http_status = 3003, 404
    message = "pool {uuid} not found in cluster {cluster}"
    message_cn = "集群 {cluster} 中不存在存储池 {uuid}"


class VolumeNotFound(ServiceError):
    """No live volume with this UUID for this tenant and cluster (another tenant's volume answers the same)."""

    scode, http_status = 3004, 404
    message = "volume {uuid} not found"
    message_cn = "卷 {uuid} 不存在"


class SnapshotNotFound(ServiceError):
    """No snapshot with this UUID on the volume."""

    scode, http_status = 3005, 404
    message = "snapshot {uuid} not found on volume {volume}"
    message_cn = "卷 {volume} 上不存在快照 {uuid}"


class BackupPointNotFound(ServiceError):
    """No backup point with this UUID."""

    scode, http_status = 3006, 404
    message = "backup point {uuid} not found"
    message_cn = "备份点 {uuid} 不存在"


class BackupNotFound(ServiceError):
    """No backup with this UUID for this tenant."""

    scode, http_status = 3007, 404
    message = "backup {uuid} not found"
    message_cn = "备份 {uuid} 不存在"


class OperationNotFound(ServiceError):
    """No operation for this volume."""

    scode, http_status = 3008, 404
    message = "no operation found for {uuid}"
    message_cn = "未找到 {uuid} 的操作记录"


class ZoneNotFound(ServiceError):
    """No zone with this UUID."""

    scode, http_status = 3009, 404
    message = "zone {uuid} not found"
    message_cn = "可用区 {uuid} 不存在"


class HostNotFound(ServiceError):
    """No host with this UUID in the cluster."""

    scode, http_status = 3010, 404
    message = "host {uuid} not found in cluster {cluster}"
    message_cn = "集群 {cluster} 中不存在主机 {uuid}"


class NotFoundRoute(ServiceError):
    """The URL is not part of the API."""

    scode, http_status = 3099, 404
    message = "no such endpoint: {path}"
    message_cn = "接口不存在：{path}"


# 4xxx: conflicts with the current state -------------------------------------------------------


class StateConflict(ServiceError):
    """The object is in a state that does not allow the action (another action is running)."""

    scode, http_status = 4001, 409
    message = "{kind} {uuid} is {state}: cannot {action} now"
    message_cn = "{kind} {uuid} 当前状态为 {state}，现在无法执行{action}"


class VolumeNameExists(ServiceError):
    """The tenant already has a live volume with this name in the cluster."""

    scode, http_status = 4002, 409
    message = "a volume named {name!r} already exists for this tenant in this cluster"
    message_cn = "该租户在此集群中已存在名为 {name!r} 的卷"


class VolumeAttached(ServiceError):
    """The volume is attached to a VM."""

    scode, http_status = 4003, 409
    message = "volume {uuid} is attached to VM {vm}: detach it first{hint}"
    message_cn = "卷 {uuid} 已挂载到虚拟机 {vm}，请先卸载{hint_cn}"


class VolumeHasSnapshots(ServiceError):
    """The volume has snapshots and force was not given."""

    scode, http_status = 4004, 409
    message = "volume {uuid} has {count} snapshot(s): delete them or pass force=true"
    message_cn = "卷 {uuid} 有 {count} 个快照：请先删除或使用 force=true"


class VolumeHasDependents(ServiceError):
    """Linked clones (or running backups) depend on the volume's snapshots; force does not override this."""

    scode, http_status = 4005, 409
    message = "volume {uuid} has dependents that read its snapshots: {dependents}"
    message_cn = "卷 {uuid} 的快照仍被依赖：{dependents}"


class PoolCapacityExceeded(ServiceError):
    """The pool cannot take the requested capacity (with its overcommit ratio)."""

    scode, http_status = 4006, 409
    message = (
        "pool {pool} cannot take {requested} bytes: {available} of {limit} bytes left (overcommit {ratio})"
    )
    message_cn = (
        "存储池 {pool} 容量不足：请求 {requested} 字节，剩余 {available}/{limit} 字节（超分比 {ratio}）"
    )


class AlreadyAttached(ServiceError):
    """A block/fs volume is already attached to another VM, or this VM already has it."""

    scode, http_status = 4007, 409
    message = "volume {uuid} is already attached to VM {vm}"
    message_cn = "卷 {uuid} 已挂载到虚拟机 {vm}"


class NotAttached(ServiceError):
    """detach names a VM the volume is not attached to."""

    scode, http_status = 4008, 409
    message = "volume {uuid} is not attached to VM {vm}"
    message_cn = "卷 {uuid} 未挂载到虚拟机 {vm}"


class OperationNotRetryable(ServiceError):
    """The operation cannot be retried safely in its current state."""

    scode, http_status = 4009, 409
    message = "operation {uuid} cannot be retried: {reason}"
    message_cn = "操作 {uuid} 无法重试：{reason}"


class VolumeBusy(StateConflict):
    """The volume is busy with another operation: a short one is waited for (bounded), a long one (a
    copy or a merge) is named with its progress at once. A StateConflict, answered with its own scode."""

    scode, http_status = 4010, 409
    message = (
        "volume {uuid} is busy: {operation_kind} (operation {operation}) is {progress}% done; "
        "cannot {action} now, retry when it finishes"
    )
    message_cn = (
        "卷 {uuid} 正忙：{operation_kind_cn}（操作 {operation}）已完成 {progress}%，"
        "暂时无法{action_cn}，请在其完成后重试"
    )
    # Set by the raise site: which operation holds the volume, and whether a request may wait for it.
    operation_id: int | None = None
    short: bool = False


# 41xx: the snapshot tree -------------------------------------------------------------------------


class SnapshotNameExists(ServiceError):
    """The volume already has a visible snapshot with this name (hidden layers do not hold names)."""

    scode, http_status = 4101, 409
    message = "volume {volume} already has a snapshot named {name!r}"
    message_cn = "卷 {volume} 已存在名为 {name!r} 的快照"


class SnapCapReached(ServiceError):
    """The volume's snapshot layers already occupy its SnapCap: no new snapshot until some are deleted."""

    scode, http_status = 4102, 409
    message = (
        "volume {uuid} snapshots occupy {snap_length} of {snap_cap} bytes (SnapCap): "
        "delete snapshots before taking a new one"
    )
    message_cn = "卷 {uuid} 的快照已占用 {snap_length}/{snap_cap} 字节（快照容量）：请先删除快照再创建"


class SnapshotsDisabled(ServiceError):
    """The volume's SnapCap is 0: it was created to take no snapshots (deleting snapshots cannot help)."""

    scode, http_status = 4107, 409
    message = (
        "volume {uuid} takes no snapshots: its SnapCap is 0 (snap_capacity 0 at create disables "
        "snapshots; create the volume with a positive snap_capacity to take them)"
    )
    message_cn = (
        "卷 {uuid} 不允许创建快照：其快照容量为 0（创建卷时快照容量为 0 即禁用快照；"
        "如需快照，请以大于 0 的快照容量创建卷）"
    )


class SnapshotHasDependents(ServiceError):
    """Linked clones or running backups read the snapshot's layer (Ref > 0): it cannot be deleted now."""

    scode, http_status = 4103, 409
    message = "snapshot {uuid} ({name}) is read by {dependents}: it cannot be deleted while they depend on it"
    message_cn = "快照 {uuid}（{name}）正被 {dependents} 读取，存在依赖时无法删除"


class SnapshotChainTooDeep(ServiceError):
    """A new snapshot would make the active layer's backing chain deeper than the limit."""

    scode, http_status = 4104, 409
    message = (
        "volume {uuid}: a new snapshot would put {depth} layers under the active layer, over the limit of "
        "{limit} ({hidden} of them hidden layers kept for other branches): delete older snapshots on this "
        "branch first (each deletion merges its layer away)"
    )
    message_cn = (
        "卷 {uuid}：新快照将使活动层下的层数达到 {depth}，超过上限 {limit}"
        "（其中 {hidden} 个为其他分支保留的隐藏层）："
        "请先删除此分支上较早的快照（删除时会合并其层）"
    )


class SnapshotsBeingRead(ServiceError):
    """Backups or clones read the volume's snapshot layers (each named with its operation and progress)."""

    scode, http_status = 4105, 409
    message = (
        "volume {uuid}: {action} would rewrite snapshot layers that are being read, "
        "retry when these finish: {readers}"
    )
    message_cn = "卷 {uuid}：{action}会改写正被读取的快照层，请在以下读取完成后重试：{readers}"


class SnapshotNameMismatch(ServiceError):
    """snapshot_name does not match the snapshot named by snapshot_uuid."""

    scode, http_status = 4106, 400
    message = "snapshot_name {given!r} does not match snapshot {uuid}"
    message_cn = "快照名称 {given!r} 与快照 {uuid} 不符"


# 46xx: pools and backup points ----------------------------------------------------------------


class PoolHasVolumes(ServiceError):
    """A pool that still holds volumes cannot be deleted."""

    scode, http_status = 4600, 409
    message = "pool {pool} holds {count} volume(s): delete them before the pool"
    message_cn = "存储池 {pool} 中仍有 {count} 个卷：请先删除这些卷"


class BackupPointHasBackups(ServiceError):
    """A backup point that still holds backups cannot be deleted."""

    scode, http_status = 4601, 409
    message = "backup point {point} holds {count} backup(s): delete them before the backup point"
    message_cn = "备份点 {point} 中仍有 {count} 个备份：请先删除这些备份"


# 5xxx: storage and internal -------------------------------------------------------------------


class StorageError(ServiceError):
    """qemu-img or the filesystem failed; desc carries the command's stderr."""

    scode, http_status = 5001, 500
    message = "storage operation failed: {reason}"
    message_cn = "存储操作失败：{reason}"


class StorageTimeout(ServiceError):
    """A storage command did not finish within its time limit."""

    scode, http_status = 5002, 504
    message = "storage command timed out after {seconds} s: {command}"
    message_cn = "存储命令执行超时（{seconds} 秒）：{command}"


class PoolUnavailable(ServiceError):
    """The pool's directory is missing or not writable on this host."""

    scode, http_status = 5003, 503
    message = "pool {pool} is unavailable: {reason}"
    message_cn = "存储池 {pool} 不可用：{reason}"


class NoSpace(ServiceError):
    """The filesystem under a pool or backup point is full."""

    scode, http_status = 5004, 507
    message = "no space left on {where}"
    message_cn = "{where} 空间不足"


class PoolIdentityMismatch(ServiceError):
    """The directory at the pool's path is not that pool: its identity marker is missing or names
    another pool (an empty mount point, or another pool's share mounted there)."""

    scode, http_status = 5005, 503
    message = "pool {pool} refused at {path}: {reason}"
    message_cn = "存储池 {pool} 在 {path} 的身份校验失败：{reason}"


class OperationLeaseLost(ServiceError):
    """This attempt no longer holds its operation's lease: another attempt took it over, so this one
    must not publish anything."""

    scode, http_status = 5006, 500
    message = "operation {uuid} attempt {attempt} lost its lease; it publishes nothing"
    message_cn = "操作 {uuid} 的第 {attempt} 次尝试已失去租约，不发布任何结果"


class NoLiveHost(ServiceError):
    """No live storage host mounts every pool the operation touches, and the wait deadline passed."""

    scode, http_status = 5007, 503
    message = "no live host mounts pool {pool} (waited {seconds} s)"
    message_cn = "没有在线的主机挂载存储池 {pool}（已等待 {seconds} 秒）"


# 45xx: operator repairs (console and manage.py) -----------------------------------------------


class RepairBlocked(ServiceError):
    """A repair action cannot run on the object now (a live operation holds it, or the files do not allow it)."""

    scode, http_status = 4500, 409
    message = "cannot {action} {kind} {uuid}: {reason}"
    message_cn = "无法对{kind} {uuid} 执行{action}：{reason}"


class RepairPreviewStale(ServiceError):
    """What the repair found on disk or in the database changed since the operator's preview."""

    scode, http_status = 4501, 409
    message = "{kind} {uuid} changed since the preview ({reason}): look at the preview again"
    message_cn = "{kind} {uuid} 在预览之后已发生变化（{reason}），请重新预览"


class RepairAwaitingTakeover(ServiceError):
    """An operation on the object lost its lease, but the sweeper has not had its chance to give it to
    a live worker yet: a repair now could throw away work that is about to finish."""

    scode, http_status = 4740, 409
    message = (
        "cannot {action} {kind} {uuid} yet: the lease of operation {operation} ({operation_kind}) "
        "expired at {expired_at} and the sweeper takes it over by {takeover_at}; retry after {retry_at}"
    )
    message_cn = (
        "暂时无法对{kind} {uuid} 执行{action}：操作 {operation}（{operation_kind_cn}）的租约已于 "
        "{expired_at} 过期，清扫器将在 {takeover_at} 之前接管它；请在 {retry_at} 之后重试"
    )


# 43xx: backups ---------------------------------------------------------------------------------


class BackupPointFull(ServiceError):
    """The backup point's recorded capacity (or its filesystem) cannot take the backup's estimated size."""

    scode, http_status = 4301, 409
    message = "backup point {point} cannot take about {needed} bytes: {available} bytes left ({reason})"
    message_cn = "备份点 {point} 空间不足：约需 {needed} 字节，剩余 {available} 字节（{reason}）"


class BackupChainBusy(ServiceError):
    """Another backup, delete, restore or verification works on the same volume's backups on this backup point."""

    scode, http_status = 4302, 409
    message = "backups of volume {volume} on backup point {point} are busy ({busy}): retry when that finishes"
    message_cn = "卷 {volume} 在备份点 {point} 上的备份正忙（{busy}），请在其完成后重试"


class BackupHasDependents(ServiceError):
    """A later incremental backup is still being written on top of this backup: it cannot be merged now."""

    scode, http_status = 4303, 409
    message = (
        "backup {uuid} has dependent backup(s) {dependents} that are not complete: it cannot be deleted now"
    )
    message_cn = "备份 {uuid} 有未完成的依赖备份 {dependents}，暂时无法删除"


class BackupProtected(ServiceError):
    """The backup is protected: it is never deleted, by request or by expiry, until unprotected."""

    scode, http_status = 4304, 409
    message = "backup {uuid} is protected: unprotect it before deleting it"
    message_cn = "备份 {uuid} 受保护：请先取消保护再删除"


class BackupNotRestorable(ServiceError):
    """Only a completed backup can be restored or verified."""

    scode, http_status = 4305, 409
    message = "backup {uuid} is {status}: only a BackupCompleted backup can be {action}"
    message_cn = "备份 {uuid} 的状态为 {status}：只有已完成的备份才能{action_cn}"


# 53xx: backup storage ----------------------------------------------------------------------------


class BackupPointUnavailable(ServiceError):
    """The backup point's directory is missing or not writable on this host, or it is marked unavailable."""

    scode, http_status = 5301, 503
    message = "backup point {point} is unavailable: {reason}"
    message_cn = "备份点 {point} 不可用：{reason}"


class BackupVerifyFailed(ServiceError):
    """A verification found a backup that does not restore to the content recorded when it was taken."""

    scode, http_status = 5302, 500
    message = "backup {uuid} failed verification: {reason}"
    message_cn = "备份 {uuid} 校验失败：{reason}"


# 42xx: clones ------------------------------------------------------------------------------------


class LinkedCloneAcrossPools(ServiceError):
    """A linked clone in another pool would name its base by a relative path that some host cannot follow."""

    scode, http_status = 4201, 409
    message = (
        "a linked clone of volume {source} cannot be placed in pool {pool}: {reason}; "
        "a full clone (is_link=false) can"
    )
    message_cn = "卷 {source} 的链接克隆无法放入存储池 {pool}：{reason_cn}；可改用完整克隆（is_link=false）"


class CloneChainTooDeep(ServiceError):
    """A linked clone would sit on more layers than the chain depth limit allows."""

    scode, http_status = 4202, 409
    message = (
        "a linked clone of snapshot {snapshot} would sit on {depth} layers, over the limit of {limit}: "
        "make a full clone (is_link=false), or flatten the source first"
    )
    message_cn = (
        "快照 {snapshot} 的链接克隆将位于 {depth} 层之上，超过上限 {limit}："
        "请改用完整克隆（is_link=false），或先将源卷扁平化"
    )


class NotALinkedClone(ServiceError):
    """flatten names a volume that reads no other volume's snapshot: it is independent already."""

    scode, http_status = 4203, 409
    message = "volume {uuid} is not a linked clone: it reads no other volume's snapshot, nothing to flatten"
    message_cn = "卷 {uuid} 不是链接克隆：它不读取其他卷的快照，无需扁平化"


class CloneSourceBusy(ServiceError):
    """A volume whose layers the clone or flatten would read is rewriting them (merging, rolling back)."""

    scode, http_status = 4204, 409
    message = "volume {uuid}, whose layers the {action} would read, is {state}: retry when that finishes"
    message_cn = "{action_cn}需要读取卷 {uuid} 的层，而该卷当前状态为 {state}：请在其完成后重试"


# 52xx: clone storage -----------------------------------------------------------------------------


class PoolSpaceShort(ServiceError):
    """The destination pool's filesystem cannot hold the copy (measured before writing) beside what the copies
    already accepted there have still to write (their reservations)."""

    scode, http_status = 5201, 507
    message = (
        "pool {pool} has {free} bytes free on its filesystem, {reserved} of them reserved by copies in "
        "progress; the copy needs about {needed} bytes"
    )
    message_cn = (
        "存储池 {pool} 的文件系统剩余 {free} 字节，其中 {reserved} 字节已为进行中的复制预留；"
        "本次复制约需 {needed} 字节"
    )


# 472x: cancelling copies ------------------------------------------------------------------------


class OperationCancelled(ServiceError):
    """A copy (full clone, backup, restore, flatten) stopped because an operator or a client cancelled
    it: its partial output was removed (the operation's recorded end, not an answer to a request)."""

    scode, http_status = 4720, 409
    message = "{action} operation {uuid} was cancelled by {actor}"
    message_cn = "{action}操作 {uuid} 已被 {actor} 取消"


class OperationNotCancellable(ServiceError):
    """Only a copy can be cancelled: the operation's kind is constant time or rewrites layers in place."""

    scode, http_status = 4721, 409
    message = (
        "{action} operation {uuid} cannot be cancelled: only copies (full clone, create backup, "
        "restore backup, flatten volume) can"
    )
    message_cn = (
        "{action}操作 {uuid} 不能取消：只有复制类操作（完整克隆、创建备份、恢复备份、扁平化卷）可以取消"
    )


class OperationAlreadyEnded(ServiceError):
    """The operation has already ended (succeeded, failed or cancelled): there is nothing to cancel."""

    scode, http_status = 4722, 409
    message = "{action} operation {uuid} has already ended ({state}): nothing to cancel"
    message_cn = "{action}操作 {uuid} 已经结束（{state}），无可取消"


# 465x: tenant quotas ----------------------------------------------------------------------------


class QuotaExceeded(ServiceError):
    """Base of the tenant quota refusals: the request would take the tenant over one of its limits."""

    http_status = 409
    message = (
        "tenant {tenant} is over its {quota} quota: limit {limit}, {used} in use, the request needs "
        "{requested} more ({over} over the limit)"
    )
    message_cn = (
        "租户 {tenant} 超出{quota_cn}配额：上限 {limit}，已使用 {used}，"
        "本次请求需要 {requested}（超出 {over}）"
    )


class VolumeQuotaExceeded(QuotaExceeded):
    """A new volume (create, import, clone, restore) would exceed the tenant's volume count quota."""

    scode = 4650


class CapacityQuotaExceeded(QuotaExceeded):
    """A new volume's capacity would take the tenant's summed capacities over its bytes quota."""

    scode = 4651


class SnapshotQuotaExceeded(QuotaExceeded):
    """A new snapshot would exceed the tenant's snapshot count quota."""

    scode = 4652


class BackupQuotaExceeded(QuotaExceeded):
    """A new backup would exceed the tenant's backup count quota."""

    scode = 4653


# 466x / 501x: encrypted backups ------------------------------------------------------------------


class BackupPasswordInUse(ServiceError):
    """A backup point's password may not change while encrypted backups written with it exist."""

    scode, http_status = 4660, 409
    message = (
        "the password of backup point {point} cannot change: {count} encrypted backup(s) were written "
        "with it; delete them first"
    )
    message_cn = "备份点 {point} 的密码不能修改：已有 {count} 个使用该密码加密的备份，请先删除它们"


class BackupSecretUnreadable(ServiceError):
    """A stored backup-point password cannot be decrypted (the key setting changed since it was stored)."""

    scode, http_status = 5010, 500
    message = (
        "the stored password of backup point {point} cannot be decrypted: the key setting "
        "(SHARESTORE_BACKUP_SECRET_KEY or SECRET_KEY) changed since it was stored"
    )
    message_cn = "备份点 {point} 保存的密码无法解密：保存之后备份密钥设置已更改（见配置文档）"


# Not a condition of its own ----------------------------------------------------------------------


def json_params(params: dict) -> dict:
    """An error's parameters as stored in a JSON column: numbers, strings and booleans as they are,
    anything else (UUIDs, paths, decimals) as its text."""
    return {
        key: value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        for key, value in params.items()
    }


def render(scode: int, params: dict | None, *, fallback: str = "", chinese: bool = False) -> str:
    """A stored failure's message, rendered from the catalogue with its stored parameters.

    `fallback` (the English text stored with it) answers for unknown codes and for failures stored
    without parameters whose text is not the template's (rows written before parameters were kept,
    operations cancelled by a repair).
    """
    cls = CATALOGUE.get(int(scode or 0))
    if cls is None:
        return fallback
    if not params and fallback and fallback != cls.message:
        return fallback
    template = cls.message_cn if chinese else cls.message
    return template.format_map(_Missing(params or {}, chinese=chinese))


class RecordedFailure(ServiceError):
    """A failure recorded on an operation, answered again later with its own scode, status and messages."""

    def __init__(self, *, scode: int, message: str, params: dict | None = None, desc: str = ""):
        known = CATALOGUE.get(scode, InternalError)
        self.scode, self.http_status = scode, known.http_status
        self._message = message
        super().__init__(desc=desc, **(params or {}))

    def render_message(self) -> str:
        return render(self.scode, self.params, fallback=self._message)

    def render_message_cn(self) -> str:
        text = render(self.scode, self.params, fallback=self._message, chinese=True)
        # A stored English text that is not the template's (a cancellation): not quoted in Chinese.
        return text if text != self._message or not text else f"操作失败（{self.scode}），详情见英文消息"
