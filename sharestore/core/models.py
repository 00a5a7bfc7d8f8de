"""Models of the core app: operations (long-running actions), the audit trail and API tokens.

They belong to no storage app: every app records its operations and events here, and the API
authenticates with these tokens. Foreign keys to the volumes app are lazy strings.
"""

from __future__ import annotations

import uuid as uuid_lib

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from sharestore.core.choices import OperationKind, OperationState

__all__ = ["Operation", "AuditEvent", "ApiToken"]


class Operation(models.Model):
    """A long-running action with progress, a lease held by its worker, and its outcome."""

    uuid = models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))
    kind = models.CharField(max_length=32, choices=OperationKind.choices, verbose_name=_("kind"))
    state = models.CharField(
        max_length=16, choices=OperationState.choices, default=OperationState.QUEUED, verbose_name=_("state")
    )
    # A lazy reference: core imports nothing from the apps built on it.
    volume = models.ForeignKey(
        "volumes.Volume",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="operations",
        verbose_name=_("volume"),
    )
    target_type = models.CharField(
        max_length=32, help_text=_("volume, snapshot, backup ..."), verbose_name=_("target type")
    )
    target_uuid = models.UUIDField(db_index=True, verbose_name=_("target uuid"))
    params = models.JSONField(default=dict, blank=True, verbose_name=_("params"))
    phase = models.CharField(max_length=64, blank=True, default="", verbose_name=_("phase"))
    progress = models.FloatField(
        default=0, help_text=_("Percent, 0-100, never decreasing."), verbose_name=_("progress")
    )
    bytes_done = models.BigIntegerField(default=0, verbose_name=_("bytes done"))
    bytes_total = models.BigIntegerField(default=0, verbose_name=_("bytes total"))
    # Space reservation: a copy reserves what it will write while the operation is active (queued or
    # running) and releases it by ending, whatever the end: nothing else has to remember to free it.
    reserved_on = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text=_("Where the copy reserves space while active: pool:<uuid> or backup-point:<uuid>."),
        verbose_name=_("reserved on"),
    )
    reserved_bytes = models.BigIntegerField(
        default=0,
        help_text=_("Bytes the copy is expected to write there (its reservation)."),
        verbose_name=_("reserved bytes"),
    )
    error_scode = models.IntegerField(default=0, verbose_name=_("error scode"))
    error_message = models.TextField(
        blank=True,
        default="",
        help_text=_("The English message, as the API answers it."),
        verbose_name=_("error message"),
    )
    error_params = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Parameters of the catalogue message, to render it in any language."),
        verbose_name=_("error params"),
    )
    error_detail = models.TextField(
        blank=True, default="", help_text=_("stderr of the failing command."), verbose_name=_("error detail")
    )
    requested_by = models.CharField(max_length=128, blank=True, default="", verbose_name=_("requested by"))
    request_id = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text=_("X-Request-ID of the request that created it; the worker logs it with every line."),
        verbose_name=_("request id"),
    )
    owner = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text=_("Worker holding the lease."),
        verbose_name=_("owner"),
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True, verbose_name=_("lease expires at"))
    waiting_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the operation began waiting for a live host that mounts its pools; it fails with "
            "NoLiveHost once SHARESTORE_HOST_WAIT_SECONDS have passed since."
        ),
        verbose_name=_("waiting since"),
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    # A cancel of a running copy is recorded here by compare-and-set; its worker reads it with each
    # lease renewal and stops the copy (`sharestore.core.services.cancel`).
    cancel_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("cancel requested at"),
        help_text=_("When a cancel of this copy was asked; its worker stops it."),
    )
    cancel_requested_by = models.CharField(
        max_length=128,
        blank=True,
        default="",
        verbose_name=_("cancel requested by"),
        help_text=_("Who asked to cancel it."),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    started = models.DateTimeField(null=True, blank=True, verbose_name=pgettext_lazy("timestamp", "started"))
    finished = models.DateTimeField(null=True, blank=True, verbose_name=_("finished"))

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

    created = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created"))
    actor = models.CharField(max_length=128, blank=True, default="", verbose_name=_("actor"))
    action = models.CharField(max_length=64, verbose_name=_("action"))
    object_type = models.CharField(max_length=32, verbose_name=_("object type"))
    object_uuid = models.UUIDField(db_index=True, verbose_name=_("object uuid"))
    volume = models.ForeignKey(
        "volumes.Volume",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("volume"),
    )
    operation = models.ForeignKey(
        Operation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("operation"),
    )
    from_state = models.CharField(max_length=32, blank=True, default="", verbose_name=_("from state"))
    to_state = models.CharField(max_length=32, blank=True, default="", verbose_name=_("to state"))
    result = models.CharField(max_length=16, blank=True, default="ok", verbose_name=_("result"))
    message = models.TextField(blank=True, default="", verbose_name=_("message"))
    scode = models.IntegerField(
        default=0,
        help_text=_("The failure's scode; 0 when the event is no failure."),
        verbose_name=_("scode"),
    )
    message_params = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Parameters of the scode's catalogue message."),
        verbose_name=_("message params"),
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

    name = models.CharField(max_length=128, verbose_name=_("name"))
    key_prefix = models.CharField(
        max_length=12,
        editable=False,
        help_text=_("First characters, to recognise it."),
        verbose_name=_("key prefix"),
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False, verbose_name=_("key hash"))
    tenant = models.ForeignKey(
        "volumes.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tokens",
        help_text=_("Empty: a platform token that may act for any tenant."),
        verbose_name=_("tenant"),
    )
    created = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created"))
    expires_at = models.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))
    last_used = models.DateTimeField(null=True, blank=True, editable=False, verbose_name=_("last used"))

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
