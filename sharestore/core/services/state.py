"""The one compare-and-set helper every status change goes through, and the audit trail it writes.

Canonical call form: `transition(obj, ctx=ctx, allowed=..., to=..., action=...)` and
`audit(ctx, action=..., ...)` with an `OperationContext` saying who acts under which operation.
The keyword form (`actor=`, `operation_id=`) still works while the services are converted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone, translation

from sharestore import errors
from sharestore.core.models import AuditEvent, Operation


@dataclass(frozen=True)
class OperationContext:
    """Who acts, and under which operation (if any): what every audit row and transition records."""

    actor: str
    operation: Operation | None = None

    @classmethod
    def of(cls, operation: Operation) -> OperationContext:
        """The context of a running operation: it acts for whoever requested it."""
        return cls(actor=operation.requested_by, operation=operation)

    @property
    def operation_id(self) -> int | None:
        return self.operation.pk if self.operation is not None else None


def _label(model: type[models.Model], field: str, value: Any) -> str:
    # The audit trail is stored in one language whatever the caller's Accept-Language.
    with translation.override(settings.LANGUAGE_CODE):
        choices = dict(model._meta.get_field(field).choices or [])
        label = choices.get(value)
        return f"{value} ({label})" if label is not None and str(label) != str(value) else str(value)


def audit(
    ctx: OperationContext | None = None,
    *,
    action: str,
    object_type: str,
    object_uuid,
    actor: str = "",
    volume_id: int | None = None,
    operation_id: int | None = None,
    from_state: str = "",
    to_state: str = "",
    result: str = "ok",
    message: str = "",
    error: errors.ServiceError | None = None,
) -> AuditEvent:
    """Record one event in the audit trail; a failure's scode and parameters are kept with it, so the
    console renders its message in the reader's language from the catalogue."""
    if ctx is not None:
        actor, operation_id = ctx.actor, ctx.operation_id
        if volume_id is None and ctx.operation is not None:
            volume_id = ctx.operation.volume_id
    if error is not None and not message:
        message = f"scode {error.scode}: {error.render_message()}"
    return AuditEvent.objects.create(
        actor=actor[:128],
        action=action,
        object_type=object_type,
        object_uuid=object_uuid,
        volume_id=volume_id,
        operation_id=operation_id,
        from_state=str(from_state)[:32],
        to_state=str(to_state)[:32],
        result=result,
        message=message,
        scode=error.scode if error is not None else 0,
        message_params=errors.json_params(error.params) if error is not None else {},
    )


def require_state(
    instance: models.Model,
    allowed: Iterable[Any],
    *,
    action: str,
    field: str = "state",
    with_value: bool = True,
) -> None:
    """Refuse (StateConflict) unless `instance.<field>` is one of `allowed`; the state is shown as
    "value (label)", or as its label alone without `with_value`."""
    value = getattr(instance, field)
    if value not in list(allowed):
        label = getattr(instance, f"get_{field}_display")()
        raise errors.StateConflict(
            kind=instance._meta.model_name,
            uuid=instance.uuid,
            state=f"{value} ({label})" if with_value else label,
            action=action,
        )


def audit_of(instance: models.Model, ctx: OperationContext | None = None, **kwargs) -> AuditEvent:
    """`audit` of one row: its model's name is the object type and its UUID the object; the event is
    filed under the volume (the row itself, or the volume a snapshot or a backup belongs to)."""
    object_type = instance._meta.model_name
    kwargs.setdefault(
        "volume_id", instance.pk if object_type == "volume" else getattr(instance, "volume_id", None)
    )
    return audit(ctx, object_type=object_type, object_uuid=instance.uuid, **kwargs)


def transition(
    instance: models.Model,
    *,
    allowed: Iterable[Any],
    to: Any,
    action: str,
    ctx: OperationContext | None = None,
    actor: str = "",
    field: str = "state",
    object_type: str | None = None,
    volume_id: int | None = None,
    operation_id: int | None = None,
    message: str = "",
    error: errors.ServiceError | None = None,
    extra: dict | None = None,
) -> None:
    """Move `instance.<field>` from one of `allowed` to `to` with a conditional UPDATE.

    Exactly one row must change, or StateConflict is raised with the state found. `update()` skips
    `auto_now` and signals, so the modified time and the audit row are written here. The in-memory
    instance is refreshed with what was written.
    """
    model = type(instance)
    allowed = list(allowed)
    now = timezone.now()
    values = {field: to, **(extra or {})}
    if any(f.name == "modified" for f in model._meta.concrete_fields):
        values.setdefault("modified", now)
    rows = model._default_manager.filter(pk=instance.pk, **{f"{field}__in": allowed}).update(**values)
    object_type = object_type or model._meta.model_name
    if rows != 1:
        current = model._default_manager.filter(pk=instance.pk).values_list(field, flat=True).first()
        raise errors.StateConflict(
            kind=object_type,
            uuid=getattr(instance, "uuid", instance.pk),
            state=_label(model, field, current) if current is not None else "gone",
            action=action,
        )
    previous = getattr(instance, field)
    for key, value in values.items():
        setattr(instance, key, value)
    if volume_id is None and object_type == "volume":
        volume_id = instance.pk
    audit(
        ctx,
        actor=actor,
        action=action,
        object_type=object_type,
        object_uuid=getattr(instance, "uuid", None),
        volume_id=volume_id,
        operation_id=operation_id,
        from_state=_label(model, field, previous),
        to_state=_label(model, field, to),
        message=message,
        error=error,
    )


def status_transition(
    instance: models.Model, ctx: OperationContext, *, allowed, to, action: str, **kwargs
) -> None:
    """`transition` of a volume's dependent row (a snapshot, a backup): its `status`, audited under its
    volume."""
    transition(
        instance,
        ctx=ctx,
        field="status",
        volume_id=instance.volume_id,
        allowed=allowed,
        to=to,
        action=action,
        **kwargs,
    )
