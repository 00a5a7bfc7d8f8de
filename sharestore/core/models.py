"""Models of the core app: operations (long-running actions), the audit trail and API tokens.

They belong to no storage app: every app records its operations and events here, and the API
authenticates with these tokens. Foreign keys to the volumes app are lazy strings.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from sharestore.core import fields
from sharestore.core.choices import OperationKind, OperationState

__all__ = ["Operation", "AuditEvent", "ApiToken"]


class Operation(models.Model):
    """A long-running action with progress, a lease held by its worker, and its outcome."""

    uuid = fields.uuid_field()
    kind = fields.choice_field(OperationKind, _("kind"), max_length=32)
    state = fields.choice_field(OperationState, _("state"), default=OperationState.QUEUED)
    # A lazy reference: core imports nothing from the apps built on it.
    volume = fields.set_null_fk("volumes.Volume", "operations", _("volume"))
    target_type = models.CharField(
        max_length=32, help_text=_("volume, snapshot, backup ..."), verbose_name=_("target type")
    )
    target_uuid = models.UUIDField(db_index=True, verbose_name=_("target uuid"))
    params = fields.json_map(_("params"))
    phase = fields.optional_char(64, _("phase"))
    progress = models.FloatField(
        default=0, help_text=_("Percent, 0-100, never decreasing."), verbose_name=_("progress")
    )
    bytes_done = fields.byte_count(_("bytes done"))
    bytes_total = fields.byte_count(_("bytes total"))
    # Space reservation: a copy reserves what it will write while the operation is active (queued or
    # running) and releases it by ending, whatever the end: nothing else has to remember to free it.
    reserved_on = fields.optional_char(
        64,
        _("reserved on"),
        help_text=_("Where the copy reserves space while active: pool:<uuid> or backup-point:<uuid>."),
    )
    reserved_bytes = fields.byte_count(
        _("reserved bytes"), help_text=_("Bytes the copy is expected to write there (its reservation).")
    )
    error_scode = models.IntegerField(default=0, verbose_name=_("error scode"))
    error_message = fields.optional_text(
        _("error message"), help_text=_("The English message, as the API answers it.")
    )
    error_params = fields.json_map(
        _("error params"), help_text=_("Parameters of the catalogue message, to render it in any language.")
    )
    error_detail = fields.optional_text(_("error detail"), help_text=_("stderr of the failing command."))
    requested_by = fields.optional_char(128, _("requested by"))
    request_id = fields.optional_char(
        128,
        _("request id"),
        help_text=_("X-Request-ID of the request that created it; the worker logs it with every line."),
    )
    owner = fields.optional_char(128, _("owner"), help_text=_("Worker holding the lease."))
    lease_expires_at = fields.optional_datetime(_("lease expires at"))
    waiting_since = fields.optional_datetime(
        _("waiting since"),
        help_text=_(
            "When the operation began waiting for a live host that mounts its pools; it fails with "
            "NoLiveHost once SHARESTORE_HOST_WAIT_SECONDS have passed since."
        ),
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    # A cancel of a running copy is recorded here by compare-and-set; its worker reads it with each
    # lease renewal and stops the copy (`sharestore.core.services.cancel`).
    cancel_requested_at = fields.optional_datetime(
        _("cancel requested at"), help_text=_("When a cancel of this copy was asked; its worker stops it.")
    )
    cancel_requested_by = fields.optional_char(
        128, _("cancel requested by"), help_text=_("Who asked to cancel it.")
    )
    created = fields.created_field()
    started = fields.optional_datetime(pgettext_lazy("timestamp", "started"))
    finished = fields.optional_datetime(_("finished"))

    class Meta:
        verbose_name = _("operation")
        verbose_name_plural = _("operations")
        ordering = ["-created", "-id"]
        permissions = [("cancel_operation", _("Can cancel a running copy"))]
        # The tables predate the core app: keep their names (and the names of their indexes).
        db_table = "volumes_operation"
        indexes = [
            models.Index(fields=["state", "lease_expires_at"], name="volumes_op_state_lease"),
            models.Index(fields=["volume", "-created"], name="volumes_op_volume_created"),
            models.Index(fields=["reserved_on", "state"], name="volumes_op_reserved_state"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100), name="volumes_operation_progress_range"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.target_uuid} [{self.state}]"


class AuditEvent(models.Model):
    """One state change or action on an object: who asked, from which state to which, with what result."""

    created = fields.created_field(editable=True, db_index=True)
    actor = fields.optional_char(128, _("actor"))
    action = models.CharField(max_length=64, verbose_name=_("action"))
    object_type = models.CharField(max_length=32, verbose_name=_("object type"))
    object_uuid = models.UUIDField(db_index=True, verbose_name=_("object uuid"))
    volume = fields.set_null_fk("volumes.Volume", "events", _("volume"))
    operation = fields.set_null_fk(Operation, "events", _("operation"))
    from_state = fields.optional_char(32, _("from state"))
    to_state = fields.optional_char(32, _("to state"))
    result = models.CharField(max_length=16, blank=True, default="ok", verbose_name=_("result"))
    message = fields.optional_text(_("message"))
    scode = models.IntegerField(
        default=0,
        help_text=_("The failure's scode; 0 when the event is no failure."),
        verbose_name=_("scode"),
    )
    message_params = fields.json_map(
        _("message params"), help_text=_("Parameters of the scode's catalogue message.")
    )

    class Meta:
        db_table = "volumes_auditevent"
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["volume", "-created"], name="volumes_audit_volume_created")]

    def __str__(self):
        when = f"{self.created:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor} {self.action} {self.object_type} {self.object_uuid}"


class ApiToken(models.Model):
    """An API credential, stored as a SHA-256 hash; bound to one tenant or, if none, a platform token."""

    name = fields.name_field()
    key_prefix = models.CharField(
        max_length=12,
        editable=False,
        help_text=_("First characters, to recognise it."),
        verbose_name=_("key prefix"),
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False, verbose_name=_("key hash"))
    tenant = fields.cascade_fk(
        "volumes.Tenant",
        "tokens",
        _("tenant"),
        optional=True,
        help_text=_("Empty: a platform token that may act for any tenant."),
    )
    created = fields.created_field()
    expires_at = fields.optional_datetime(_("expires at"))
    revoked_at = fields.optional_datetime(_("revoked at"))
    last_used = fields.optional_datetime(_("last used"), editable=False)

    class Meta:
        db_table = "volumes_apitoken"
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["name"]
        # The console's token actions (docs/console.md "Actions").
        permissions = [
            ("issue_token", "Can issue API tokens"),
            ("revoke_token", "Can revoke API tokens"),
        ]

    def __str__(self):
        return f"{self.name} ({self.key_prefix}…)"

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None
