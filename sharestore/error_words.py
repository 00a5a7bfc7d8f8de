"""The words a catalogued message puts around its parameters, in English and Simplified Chinese.

Raise sites pass what they know: object kinds (`volume`), internal action names (`snapshot.create`),
state values with their labels (`7 (snapshotting)`), and English reasons. The catalogue renders
them here (`sharestore.errors.ServiceError.render_message` / `render_message_cn`):

- kinds and actions become words in both languages (`snapshot.create` -> "create snapshot" / "创建快照");
  no internal identifier reaches either message;
- states and statuses keep their API value and show their label, translated through the project's
  zh-hans catalogue in Chinese (`7（快照中）`);
- a reason without a `<name>_cn` companion is translated by the table of known reasons below;
  one the table does not know (storage failures quoting files and tool output) is not quoted in
  Chinese: the Chinese message says the detail is in the English message (`message`, `desc`).

Field names, UUIDs, object names, paths and numbers are values: they stay as they are.
"""

from __future__ import annotations

import functools
import re

from django.utils import translation


def _table(text: str) -> dict[str, tuple[str, str]]:
    """`name | English | Chinese` lines as {name: (English, Chinese)}."""
    rows = (line.split("|") for line in text.strip().splitlines())
    return {name.strip(): (english.strip(), chinese.strip()) for name, english, chinese in rows}


# Object kinds named by `kind`: (English, Chinese).
KINDS = _table(
    """
    volume       | volume       | 卷
    snapshot     | snapshot     | 快照
    backup       | backup       | 备份
    backup point | backup point | 备份点
    backuppoint  | backup point | 备份点
    pool         | pool         | 存储池
    operation    | operation    | 操作
    attachment   | attachment   | 挂载
    """
)

# Verbs of the actions (`<object>.<verb>[.<step>]` or plain words): (English, Chinese).
VERBS = _table(
    """
    create       | create                  | 创建
    delete       | delete                  | 删除
    remove       | remove                  | 移除
    attach       | attach                  | 挂载
    detach       | detach                  | 卸载
    clone        | clone                   | 克隆
    flatten      | flatten                 | 扁平化
    rollback     | roll back to            | 回滚到
    restore      | restore                 | 恢复
    add          | create                  | 创建
    run          | run                     | 运行
    merge        | merge                   | 合并
    retry        | retry                   | 重试
    cancel       | cancel                  | 取消
    takeover     | take over               | 接管
    update       | update                  | 更新
    status       | change the status of {} | 更改{}的状态
    reset_state  | reset the state of {}   | 重置{}的状态
    force_delete | force delete            | 强制删除
    verify       | verify                  | 校验
    mount        | mount                   | 挂载
    unmount      | unmount                 | 卸载
    mark         | mark                    | 标记
    refresh      | refresh                 | 刷新
    """
)

# Actions that are words already, or whose words differ from verb + object.
ACTIONS = _table(
    """
    backup.add                    | create backup                | 创建备份
    backup.run                    | write backup                 | 写入备份
    backup.finish                 | complete backup              | 完成备份
    backup.fail                   | mark backup failed           | 将备份标记为失败
    backup.restore                | restore backup               | 恢复备份
    snapshot.delete.hide          | delete snapshot              | 删除快照
    reset state                   | reset state                  | 重置状态
    force delete                  | force delete                 | 强制删除
    flattening                    | flattening                   | 扁平化
    rolling back                  | rolling back                 | 回滚
    deleting                      | deleting                     | 删除
    deleting this snapshot        | deleting this snapshot       | 删除此快照
    verified                      | verified                     | 校验
    restored                      | restored                     | 恢复
    usage.refresh                 | refresh usage                | 刷新用量
    update used                   | update used                  | 更新已用量
    update snap_length            | update snap_length           | 更新快照占用量
    update used, snap_length      | update used, snap_length     | 更新用量
    reconcile.fix                 | reconcile                    | 对账修复
    reconcile.missing_image       | record a missing image       | 记录缺失的镜像
    reconcile.missing_layer       | record a missing layer       | 记录缺失的层
    reconcile.missing_backup_file | record a missing backup file | 记录缺失的备份文件
    reconcile.remove_orphan       | remove an orphan file        | 移除孤立文件
    """
)

# Steps after the verb in an action name: they do not change what the caller asked for.
_STEPS = {"finish", "fail", "stuck", "hide", "stopped", "succeeded", "failed", "cancelled"}


def kind_words(value) -> tuple[str, str]:
    text = str(value)
    return KINDS.get(text.lower(), (text, "对象"))


@functools.cache
def _operation_kinds() -> dict[str, tuple[str, str]]:
    """Operation kinds (`backup.restore`) in the words of their choice labels, both languages (the
    labels and catalogues are fixed for the process: read once)."""
    from sharestore.core.choices import OperationKind

    with translation.override("en"):
        english = {kind.value: str(kind.label) for kind in OperationKind}
    return {value: (label, label_cn(label)) for value, label in english.items()}


def operation_kind_words(kind) -> tuple[str, str]:
    """(English, Chinese) words of an operation kind: `snapshot.create` -> create snapshot / 创建快照."""
    return _operation_kinds()[str(kind)]


def action_words(value) -> tuple[str, str]:
    """(English, Chinese) words for an action name: `snapshot.create` -> create snapshot / 创建快照."""
    text = str(value)
    if text in ACTIONS:
        return ACTIONS[text]
    kinds = _operation_kinds()
    if text in kinds:
        return kinds[text]
    parts = text.split(".")
    while len(parts) > 1 and parts[-1] in _STEPS:
        parts.pop()
    if ".".join(parts) in ACTIONS:
        return ACTIONS[".".join(parts)]
    if len(parts) == 2 and parts[1] in VERBS:
        obj_en, obj_cn = kind_words(parts[0])
        verb_en, verb_cn = VERBS[parts[1]]
        if "{}" in verb_en:
            return verb_en.format(obj_en), verb_cn.format(obj_cn)
        return f"{verb_en} {obj_en}", f"{verb_cn}{obj_cn}"
    words = text.split(" ", 1)
    if words[0] in VERBS:
        verb_en, verb_cn = VERBS[words[0]]
        rest = words[1] if len(words) > 1 else ""
        rest_en, rest_cn = kind_words(rest) if rest in KINDS else (rest, "")
        return (
            (f"{verb_en} {rest_en}".strip(), f"{verb_cn}{rest_cn}")
            if rest_cn or not rest
            else (text, verb_cn)
        )
    return text.replace("_", " ").replace(".", " "), "此操作"


def label_cn(label: str) -> str:
    """A choice's English label in the project's zh-hans catalogue."""
    with translation.override("zh-hans"):
        return translation.gettext(label)


_VALUE_AND_LABEL = re.compile(r"(?P<value>\S+) \((?P<label>.+)\)")
_CAMEL_STATUS = re.compile(r"(Backup|Operation)(?P<word>[A-Z][a-z]+)")


def state_words(value) -> tuple[str, str]:
    """A state as raise sites pass it (`7 (snapshotting)`, `snapshotting`, `BackupRunning`, `gone`)."""
    text = str(value)
    if text == "gone":
        return "gone", "已不存在"
    match = _VALUE_AND_LABEL.fullmatch(text)
    if match:
        return text, f"{match['value']}（{label_cn(match['label'])}）"
    match = _CAMEL_STATUS.fullmatch(text)
    if match:
        return text, label_cn(match["word"].lower())
    return text, label_cn(text.lower())


# Reasons raise sites pass in English, and their Chinese: a full-match pattern (named groups are
# values: names, paths, numbers) and a template over those groups.
_REASONS_TABLE = [
    # request bodies (parsers, views)
    (r"the body is empty; send a JSON object", "请求体为空，请发送 JSON 对象"),
    (r"the body is not UTF-8 text", "请求体不是 UTF-8 文本"),
    (r"the body must be a JSON object", "请求体必须是 JSON 对象"),
    (r"the request was refused as suspicious", "请求被判定为可疑而拒绝"),
    (r"not JSON \(.*\)", "不是合法的 JSON"),
    (r"JSON parse error - .*", "不是合法的 JSON"),
    # field values (the API's own fields, then the services)
    (r"A JSON integer is required\.", "必须是 JSON 整数"),
    (r"A JSON boolean \(true or false\) is required\.", "必须是 JSON 布尔值（true 或 false）"),
    (r"A JSON string is required\.", "必须是 JSON 字符串"),
    (r"Must be a valid UUID\.", "必须是合法的 UUID"),
    (r"epoch seconds are required", "必须是纪元秒数"),
    (r"must be a string", "必须是字符串"),
    (r"must be a number", "必须是数字"),
    (r"must be an integer", "必须是整数"),
    (r"must be positive", "必须为正数"),
    (r"must not be empty", "不能为空"),
    (r"cannot be changed", "不可更改"),
    (r"contains control characters", "包含控制字符"),
    (r"must be a non-negative number of bytes", "必须是非负的字节数"),
    (r"must be an absolute path", "必须是绝对路径"),
    (r"must be an absolute directory path", "必须是目录的绝对路径"),
    (r"must be epoch seconds \(0 = never expires\)", "必须是纪元秒数（0 表示永不过期）"),
    (r"must be greater than (?P<low>\S+) and below (?P<high>\S+)", "必须大于 {low} 且小于 {high}"),
    (r"must be one of (?P<values>.+)", "必须是 {values} 之一"),
    (r"longer than (?P<n>\d+) characters", "长度超过 {n} 个字符"),
    (r"exceeds the maximum (?P<n>\d+) bytes", "超过上限 {n} 字节"),
    (r"must be a multiple of (?P<n>\d+) bytes", "必须是 {n} 字节的整数倍"),
    (r"must be at least (?P<n>\d+) bytes", "不能小于 {n} 字节"),
    (r"(?P<value>.+) is not a UUID", "{value} 不是合法的 UUID"),
    (r"no (?P<kind>pool|backup point) with UUID (?P<uuids>.+)", "不存在 UUID 为 {uuids} 的{kind_cn}"),
    (
        r"a (?P<kind>pool|backup point) with UUID (?P<uuid>.+) already exists",
        "UUID 为 {uuid} 的{kind_cn}已存在",
    ),
    (r"another (?P<kind>pool|backup point) already uses (?P<path>.+)", "另一个{kind_cn}已在使用 {path}"),
    (
        r"cluster (?P<cluster>.+) already has a (?P<kind>pool|backup point) named (?P<name>.+)",
        "集群 {cluster} 中已有名为 {name} 的{kind_cn}",
    ),
    (r"host (?P<host>.+) is not in the pool's cluster", "主机 {host} 不属于该存储池所在的集群"),
    (r"host (?P<host>.+) is not in cluster (?P<cluster>.+)", "主机 {host} 不属于集群 {cluster}"),
    (r"unknown reconcile scope (?P<scopes>.+)", "未知的对账范围 {scopes}"),
    (
        r"(?P<n>\d+) backup file\(s\) of this backup point are not in (?P<path>.+)",
        "此备份点的 {n} 个备份文件不在 {path} 中",
    ),
    (
        r"(?P<n>\d+) volume image\(s\) of this pool are not in (?P<path>\S+): (?P<shown>.+)",
        "此存储池的 {n} 个卷镜像不在 {path} 中：{shown}",
    ),
    # directories of pools and backup points
    (r"directory (?P<path>.+) does not exist", "目录 {path} 不存在"),
    (r"directory (?P<path>.+) is not writable", "目录 {path} 不可写"),
    (r"directory does not exist", "目录不存在"),
    (r"directory is not writable", "目录不可写"),
    (r"does not exist", "不存在"),
    (r"marked (?P<status>\S+)", "已被标记为{status_cn}"),
    (r"recorded capacity", "登记的容量"),
    (r"filesystem free space", "文件系统剩余空间"),
    (
        r"the directory is empty \(is the share mounted\?\); pass force to mark it anyway",
        "目录为空（共享是否已挂载？）；如仍要标记，请使用 force",
    ),
    (r"the directory is pool (?P<uuid>.+)", "该目录属于存储池 {uuid}"),
    (
        r"no (?P<marker>\S+) marker \(is the pool mounted here\?\)",
        "缺少 {marker} 标记文件（存储池是否挂载在此？）",
    ),
    (r"unreadable marker: .*", "标记文件不可读"),
    # imports
    (r"backing_file must be an absolute path", "backing_file 必须是绝对路径"),
    (r"backing_file contains a NUL byte", "backing_file 包含 NUL 字节"),
    (r"backing_file does not exist", "backing_file 不存在"),
    (r"backing_file is not a regular file", "backing_file 不是普通文件"),
    (r"backing_file is not a regular file \(a FIFO\)", "backing_file 不是普通文件（是命名管道）"),
    (r"backing_file is not a regular file \(a socket\)", "backing_file 不是普通文件（是套接字）"),
    (r"backing_file is not a regular file \(a character device\)", "backing_file 不是普通文件（是字符设备）"),
    (r"backing_file is not a regular file \(a block device\)", "backing_file 不是普通文件（是块设备）"),
    (r"backing_file is not a regular file \(a directory\)", "backing_file 不是普通文件（是目录）"),
    (r"backing_file is not a regular file \(.+\)", "backing_file 不是普通文件"),
    (r"backing_file is outside the allowed import roots", "backing_file 不在允许的导入目录内"),
    (r"backing_file changed format since the request", "backing_file 的格式在请求之后发生了变化"),
    (r"backing_file cannot be opened: .*", "backing_file 无法打开"),
    (
        r"no import roots are configured \(SHARESTORE_IMPORT_ROOTS\)",
        "未配置导入目录（SHARESTORE_IMPORT_ROOTS）",
    ),
    (r"encrypted qcow2", "qcow2 镜像已加密"),
    (r"image is empty", "镜像为空"),
    (r"qcow2 is marked corrupt", "qcow2 镜像被标记为已损坏"),
    (r"qcow2 fails 'qemu-img check'", "qcow2 镜像未通过 qemu-img check 检查"),
    (
        r"qcow2 with a backing file; flatten it first \(qemu-img convert -O qcow2\)",
        "qcow2 镜像带有后端文件，请先将其扁平化（qemu-img convert -O qcow2）",
    ),
    (r"qcow2 with an external data-file", "qcow2 镜像使用了外部数据文件"),
    (r"not a readable (?P<fmt>\S+) image", "不是可读取的 {fmt} 镜像"),
    # repairs and retries
    (r"no retry service is installed", "未安装重试服务"),
    (r"now (?P<label>[^-]+?) -> (?P<proposed>.+)", "当前为{label_cn}，将变为{proposed_cn}"),
    (r"now (?P<label>.+)", "当前为{label_cn}"),
    (
        r"operation (?P<uuid>\S+) \((?P<op>\S+)\) came alive: look at the preview again",
        "操作 {uuid}（{op_cn}）已重新运行，请重新预览",
    ),
    (r"expired at (?P<time>.+)", "已于 {time} 过期"),
    # retries of full clones, restores and backups (volumes/services/repair/retry.py, backups/services/retry.py)
    (r"its source snapshot is gone", "其源快照已不存在"),
    (r"its source snapshot is (?P<label>.+)", "其源快照为{label_cn}"),
    (r"its backup is gone", "其备份已不存在"),
    (r"its backup is (?P<label>.+)", "其备份为{label_cn}"),
    (r"the volume is gone", "卷已不存在"),
    (r"it was retried already", "已经重试过"),
    # pools, backup points and quotas
    (r"limit_host needs at least one host", "limit_host 至少需要一个主机"),
    (r"must be a path", "必须是路径"),
    (r"must be at least (?P<n>[0-9.]+)", "不能小于 {n}"),
    (
        r"not a quota \(volumes, bytes, snapshots, backups\)",
        "不是配额项（volumes、bytes、snapshots、backups）",
    ),
    (r"must be a relative path inside root_dir", "必须是 root_dir 之内的相对路径"),
    (r"unknown attribute \(known: (?P<known>.+)\)", "未知属性（已知：{known}）"),
    (
        r"filesystem free space, (?P<n>\d+) bytes of it reserved by backups in progress",
        "文件系统可用空间，其中 {n} 字节已被进行中的备份预留",
    ),
    # RBD pools
    (r"pool type rbd goes with driver rbd \(and only it\)", "存储池类型 rbd 只能使用 rbd 驱动"),
    (r"must not contain ':', '@' or '/'", "不能包含 ':'、'@' 或 '/'"),
    (r"must be an absolute path without ':'", "必须是不含 ':' 的绝对路径"),
    (r"is required", "为必填项"),
    (r"cannot list the RBD pool: (?P<detail>.+)", "无法列出 RBD 存储池：{detail}"),
    (r"Ceph configuration file (?P<path>.+) does not exist", "Ceph 配置文件 {path} 不存在"),
    (
        r"an RBD location is pool\[/namespace\]:conf=<conf file>\[:id=<user>\]\[:keyring=<path>\]",
        "RBD 位置的格式为 pool[/namespace]:conf=<配置文件>[:id=<用户>][:keyring=<路径>]",
    ),
    (r"the pool is empty; pass force to mark it anyway", "存储池为空；如仍要标记请使用 force"),
    (r"the pool marker names (?P<name>.+)", "存储池标记指向 {name}"),
    # permissions (DRF's texts)
    (r"You do not have permission to perform this action\.", "无权执行此操作"),
]
REASONS = [(re.compile(pattern), template) for pattern, template in _REASONS_TABLE]

# Lists of dependents, readers and busy backups: one phrase per item, joined by ", " or "; ".
_ITEMS_TABLE = [
    (r"backup (?P<uuid>\S+) \(of snapshot (?P<name>.+)\)", "备份 {uuid}（快照 {name}）"),
    (r"clone (?P<uuid>\S+) \(being copied\)", "克隆 {uuid}（正在复制）"),
    (r"linked clone (?P<uuid>\S+) \(being flattened\)", "链接克隆 {uuid}（正在扁平化）"),
    (r"backup (?P<uuid>\S+) (?P<status>Backup[A-Z][a-z]+)", "备份 {uuid}（{status_cn}）"),
    (r"(?P<op>[a-z]+\.[a-z]+) (?P<uuid>\S+)", "{op_cn} {uuid}"),
    (r"linked clone\(s\) (?P<uuids>.+)", "链接克隆 {uuids}"),
    (r"running backup\(s\) (?P<uuids>.+)", "运行中的备份 {uuids}"),
    (r"linked clones? (?P<uuids>.+)", "链接克隆 {uuids}"),
]
ITEMS = [(re.compile(pattern), template) for pattern, template in _ITEMS_TABLE]
_UUID_LIST = re.compile(r"[0-9a-fA-F-]{36}(, [0-9a-fA-F-]{36})*")

UNTRANSLATED = "详情见英文消息"


def _fill(template: str, match: re.Match) -> str:
    groups = match.groupdict()
    extra = {}
    for key, value in groups.items():
        if key == "kind":
            extra["kind_cn"] = kind_words(value)[1]
        elif key in ("status", "label", "proposed"):
            extra[f"{key}_cn"] = state_words(value)[1]
        elif key == "op":
            extra["op_cn"] = action_words(value)[1]
    return template.format(**groups, **extra)


def reason_cn(text) -> str | None:
    """The Chinese of an English reason the table knows; None for any other."""
    text = str(text)
    for pattern, template in REASONS:
        match = pattern.fullmatch(text)
        if match:
            return _fill(template, match)
    return None


def items_cn(text) -> str | None:
    """The Chinese of a list of dependents, readers or busy backups; None if an item is unknown."""
    text = str(text)
    if _UUID_LIST.fullmatch(text):
        return text
    separator = "; " if "; " in text else ", "
    translated = []
    for item in text.split(separator):
        for pattern, template in ITEMS:
            match = pattern.fullmatch(item)
            if match:
                translated.append(_fill(template, match))
                break
        else:
            return None
    return "；".join(translated) if separator == "; " else "，".join(translated)


def _with_kind_words(text: str) -> str:
    """English prose with the operation kinds it names (`backup.restore`) in words."""
    kinds = _operation_kinds()
    pattern = re.compile(r"\b(" + "|".join(re.escape(kind) for kind in kinds) + r")\b")
    return pattern.sub(lambda match: kinds[match[0]][0], text)


# Parameters whose value is English prose (not a name, path or number).
_PROSE = {"reason", "hint", "dependents", "readers", "busy"}
_ITEM_LISTS = {"dependents", "readers", "busy"}


def param_text(params: dict, key: str, *, chinese: bool):
    """The text of parameter `key` for a message in one language (see the module's docstring)."""
    if key.endswith("_cn"):
        if key in params:
            return params[key]
        return param_text(params, key[:-3], chinese=True)
    if chinese and f"{key}_cn" in params:
        return params[f"{key}_cn"]
    if key not in params:
        return "{" + key + "}"
    value = params[key]
    if key == "kind":
        return kind_words(value)[chinese]
    if key == "action":
        return action_words(value)[chinese]
    if key in ("state", "status"):
        return state_words(value)[chinese]
    if key in _PROSE and not chinese:
        return _with_kind_words(str(value))
    if not chinese or key not in _PROSE:
        return value
    translated = items_cn(value) if key in _ITEM_LISTS else reason_cn(value)
    return UNTRANSLATED if translated is None else translated
