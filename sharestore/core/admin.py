"""The console's screens of the core app: operations (progress, errors, retry where safe), the
audit trail and API tokens, all view-only."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, pgettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core import dispatch
from sharestore.core.choices import ACTIVE_OPERATION_STATES, OperationState
from sharestore.core.console import (
    ConsoleAdmin,
    LeaseListFilter,
    badge,
    can_run_repairs,
    choices,
    console_actor,
    error_cause,
    human_bytes,
    human_duration,
    human_rate,
    lease_marker,
    localized_error,
    localized_event_message,
    neutral_language,
    operation_phase_text,
    operation_rates,
    related,
    service_error_text,
)
from sharestore.core.models import ApiToken, AuditEvent, Operation
from sharestore.core.services.cancel import cancel_refusal, operation_cancel
from sharestore.core.services.leases import expected_takeover_at, lease_expired
from sharestore.core.services.operations import heartbeat_seconds
from sharestore.core.templatetags.console_tags import progress_bar
from sharestore.core.token_actions import TokenActionsMixin
from sharestore.core.words import action_text, audit_result_text, object_type_text, state_text, words_filter


def _bytes_text(operation) -> str:
    if not operation.bytes_total:
        return human_bytes(operation.bytes_done) if operation.bytes_done else "-"
    return f"{human_bytes(operation.bytes_done)} / {human_bytes(operation.bytes_total)}"


def _progress_entry(operation, now) -> dict:
    """One operation's live figures, with their texts in the reader's language."""
    rates = operation_rates(operation, now)
    expired = lease_expired(operation, now)
    return {
        "id": operation.pk,
        "uuid": str(operation.uuid),
        "state": operation.state,
        "state_label": str(operation.get_state_display()),
        "active": operation.state in ACTIVE_OPERATION_STATES,
        "phase": operation.phase,
        "phase_text": operation_phase_text(operation.phase) if operation.phase else "-",
        "progress": round(float(operation.progress), 1),
        "bytes_done": operation.bytes_done,
        "bytes_total": operation.bytes_total,
        "bytes_text": _bytes_text(operation),
        "throughput": None if rates["throughput"] is None else round(rates["throughput"]),
        "throughput_text": human_rate(rates["throughput"]),
        "eta_seconds": None if rates["eta"] is None else round(rates["eta"]),
        "eta_text": human_duration(rates["eta"]),
        "lease_expired": expired,
        "takeover_at": expected_takeover_at(operation.lease_expires_at).isoformat() if expired else None,
        "lease_html": str(lease_marker(operation, now)),
    }


@admin.register(Operation)
class OperationAdmin(ConsoleAdmin):
    """Long-running operations: progress, phase, bytes, error, owner; retry where safe."""

    list_display = (
        "kind",
        "target",
        "state_badge",
        "progress_bar",
        "phase_text",
        "bytes_h",
        "throughput",
        "eta",
        "error",
        "next_step",
        "owner",
        "requested_by",
        "attempts",
        "created",
        "finished",
    )
    list_filter = (
        ("state", choices(_("state"))),
        LeaseListFilter,
        ("kind", choices(_("kind"))),
        ("volume__cluster", related(_("cluster"))),
        ("volume__pool", related(_("pool"))),
        ("volume__tenant", related(_("tenant"))),
    )
    list_select_related = ("volume",)
    search_fields = ("uuid", "target_uuid", "volume__name", "requested_by", "owner", "request_id")
    actions = ["retry_action"]
    fieldsets = (
        (None, {"fields": ("uuid", "kind", "state", "volume", "target_type_text", "target_uuid", "params")}),
        (
            _("Progress"),
            {"fields": ("phase_text", "progress", "bytes_done", "bytes_total", "throughput", "eta")},
        ),
        (_("Error"), {"fields": ("error_scode", "error", "cause", "error_params", "error_detail")}),
        (
            _("Lease"),
            {
                "fields": (
                    "requested_by",
                    "request_id",
                    "owner",
                    "lease_expires_at",
                    "lease_state",
                    "attempts",
                    "created",
                    "started",
                    "finished",
                )
            },
        ),
    )

    @admin.display(description=_("target"))
    def target(self, obj):
        if obj.volume_id:
            url = reverse("admin:volumes_volume_change", args=[obj.volume_id])
            label = (
                obj.volume.name
                if obj.target_type == "volume"
                else f"{object_type_text(obj.target_type)} {obj.target_uuid} ({obj.volume.name})"
            )
            return format_html('<a href="{}">{}</a>', url, label)
        return f"{object_type_text(obj.target_type)} {obj.target_uuid}"

    class Media:
        # Live progress: polls progress.json while an operation on the page runs (no external script).
        js = ("core/progress.js",)

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        # The retry link leads to a repair screen, the cancel link to a cancel preview: each only for
        # those who may use it.
        if not can_run_repairs(request.user):
            shown.remove("next_step")
        if self._may_cancel(request):
            shown.append("cancel_link")
        return shown

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return format_html(
            '<span data-ss-op="{}" data-ss-field="state" data-ss-active="{}" data-ss-url="{}">{}</span>'
            '<span data-ss-op="{}" data-ss-field="lease">{}</span>',
            obj.pk,
            "1" if obj.state in ACTIVE_OPERATION_STATES else "",
            reverse("admin:core_operation_progress"),
            badge(obj.get_state_display(), obj.state),
            obj.pk,
            lease_marker(obj),
        )

    @admin.display(description=_("target type"))
    def target_type_text(self, obj):
        return object_type_text(obj.target_type)

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj):
        return format_html(
            '<span data-ss-op="{}" data-ss-field="progress">{}</span>', obj.pk, progress_bar(obj.progress)
        )

    @admin.display(description=_("phase"), ordering="phase")
    def phase_text(self, obj):
        return format_html(
            '<span data-ss-op="{}" data-ss-field="phase">{}</span>',
            obj.pk,
            operation_phase_text(obj.phase) if obj.phase else "-",
        )

    @admin.display(description=_("bytes"))
    def bytes_h(self, obj):
        return format_html('<span data-ss-op="{}" data-ss-field="bytes">{}</span>', obj.pk, _bytes_text(obj))

    @admin.display(description=pgettext_lazy("operations console", "throughput"))
    def throughput(self, obj):
        rate = operation_rates(obj)["throughput"]
        return format_html(
            '<span data-ss-op="{}" data-ss-field="throughput">{}</span>', obj.pk, human_rate(rate)
        )

    @admin.display(description=pgettext_lazy("operations console", "time left"))
    def eta(self, obj):
        left = operation_rates(obj)["eta"]
        return format_html(
            '<span data-ss-op="{}" data-ss-field="eta">{}</span>', obj.pk, human_duration(left)
        )

    @admin.display(description=_("error"))
    def error(self, obj):
        if not obj.error_scode and not obj.error_message:
            return "-"
        cause = error_cause(obj.error_detail)
        return format_html(
            '<span class="ss-error" title="{}">{}: {}</span>{}',
            obj.error_detail[:2000],
            obj.error_scode,
            localized_error(obj.error_scode, obj.error_message, obj.error_params),
            format_html(
                '<br><span class="ss-cause">{}: {}</span>', pgettext("operations console", "cause"), cause
            )
            if cause
            else "",
        )

    @admin.display(description=pgettext_lazy("operations console", "cause"))
    def cause(self, obj):
        return error_cause(obj.error_detail) or "-"

    @admin.display(description=pgettext_lazy("operations console", "lease"))
    def lease_state(self, obj):
        return lease_marker(obj) or "-"

    @admin.display(description=pgettext_lazy("operations console", "next step"))
    def next_step(self, obj):
        if obj.state != "failed":
            return "-"
        url = f"{reverse('admin:core_operation_retry')}?{urlencode([('operation', obj.pk)])}"
        return format_html(
            '<a class="ss-retry" href="{}">{}</a>', url, pgettext("operations console", "retry…")
        )

    def progress_view(self, request):
        """progress.json?ids=1,2,3: the live figures of those operations, in one query, for the
        console's polling script (the list and the volume page)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [int(v) for v in request.GET.get("ids", "").split(",") if v.strip().isdigit()][:500]
        now = timezone.now()
        rows = Operation.objects.filter(pk__in=ids).only(
            "pk", "uuid", "kind", "state", "phase", "progress", "bytes_done", "bytes_total",
            "started", "finished", "lease_expires_at",
        )  # fmt: skip
        answer = [_progress_entry(operation, now) for operation in rows.order_by("pk")]
        return JsonResponse(
            {
                "now": now.isoformat(),
                "running": any(entry["active"] for entry in answer),
                "operations": answer,
            }
        )

    def get_urls(self):
        return [
            path("retry/", self.admin_site.admin_view(self.retry_view), name="core_operation_retry"),
            path(
                "progress.json",
                self.admin_site.admin_view(self.progress_view),
                name="core_operation_progress",
            ),
            path(
                "<int:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="core_operation_cancel",
            ),
            *super().get_urls(),
        ]

    # -- cancel a copy (preview, then confirm) ------------------------------------------------------

    change_form_template = "admin/core/operation_cancel_change_form.html"
    CANCEL_PERMISSION = "core.cancel_operation"

    def _may_cancel(self, request) -> bool:
        return (
            request.user.is_active and request.user.is_staff and request.user.has_perm(self.CANCEL_PERMISSION)
        )

    @admin.display(description=pgettext_lazy("operation cancel", "cancel"))
    def cancel_link(self, obj):
        if cancel_refusal(obj) is not None:
            return "-"
        return format_html(
            '<a class="ss-cancel" href="{}">{}</a>',
            reverse("admin:core_operation_cancel", args=[obj.pk]),
            pgettext("operation cancel", "Cancel…"),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = dict(extra_context or {})
        operation = Operation.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if operation is not None and self._may_cancel(request) and cancel_refusal(operation) is None:
            extra["cancel_url"] = reverse("admin:core_operation_cancel", args=[operation.pk])
        return super().change_view(request, object_id, form_url, extra)

    def cancel_view(self, request, object_id: int):
        """GET: what is running, how far, and what a cancel does; POST: cancel it (the API's service)."""
        if not self._may_cancel(request):
            raise PermissionDenied
        operation = get_object_or_404(Operation.objects.select_related("volume"), pk=object_id)
        change_url = reverse("admin:core_operation_change", args=[operation.pk])
        if request.method == "POST":
            try:
                with neutral_language():
                    operation = operation_cancel(actor=console_actor(request), operation=operation)
            except errors.ServiceError as exc:
                self.message_user(request, service_error_text(exc), messages.ERROR)
            else:
                text = (
                    gettext("Cancelled %(uuid)s before it started.")
                    if operation.state == OperationState.CANCELLED
                    else gettext(
                        "Cancel of %(uuid)s asked: its worker stops the copy and removes the partial file."
                    )
                )
                self.message_user(request, text % {"uuid": operation.uuid})
            return HttpResponseRedirect(change_url)
        refusal = cancel_refusal(operation)
        context = self.repair_context(
            request,
            gettext("Cancel operation: preview"),
            operation=operation,
            volume=operation.volume,
            refusal=service_error_text(refusal) if refusal is not None else "",
            bytes_done=human_bytes(operation.bytes_done),
            bytes_total=human_bytes(operation.bytes_total) if operation.bytes_total else "",
            heartbeat=int(round(heartbeat_seconds())),
            change_url=change_url,
        )
        return TemplateResponse(request, "admin/core/cancel.html", context)

    @admin.action(description=_("Retry failed operations (preview first)"), permissions=["run_repairs"])
    def retry_action(self, request, queryset):
        query = urlencode([("operation", o.pk) for o in queryset])
        return HttpResponseRedirect(f"{reverse('admin:core_operation_retry')}?{query}")

    def retry_view(self, request):
        """GET: which of the chosen operations can be retried safely and why not; POST: retry those."""
        self.guard_repairs(request)
        source = request.POST if request.method == "POST" else request.GET
        ids = [int(v) for v in source.getlist("operation") if v.isdigit()]
        operations = list(
            Operation.objects.filter(pk__in=ids).select_related("volume", "volume__pool").order_by("-created")
        )
        if request.method == "POST" and source.get("apply") == "1":
            retried = 0
            for operation in operations:
                try:
                    with neutral_language():
                        new = dispatch.retry(actor=console_actor(request), operation=operation)
                except errors.ServiceError as exc:
                    self.message_user(request, service_error_text(exc), messages.ERROR)
                else:
                    retried += 1
                    self.message_user(
                        request,
                        gettext("Queued %(uuid)s again as %(new)s.")
                        % {"uuid": operation.uuid, "new": new.uuid},
                    )
            return HttpResponseRedirect(
                reverse("admin:core_operation_changelist") + ("" if not retried else "?state__exact=queued")
            )
        rows = [(operation, dispatch.retry_check(operation)) for operation in operations]
        context = self.repair_context(
            request,
            gettext("Retry operations: preview"),
            rows=rows,
            retryable=sum(1 for _, reason in rows if not reason),
            targets=[("operation", o.pk) for o in operations],
        )
        return TemplateResponse(request, "admin/core/retry.html", context)


@admin.register(AuditEvent)
class AuditEventAdmin(ConsoleAdmin):
    """The audit trail: who asked what, from which state to which, with what result."""

    # A row's columns: who asked what of which object, then what came of it. Its page adds the
    # operation it belongs to, and the result's stored scode and parameters.
    REQUEST_FIELDS = ("created", "actor", "action_text", "object_type_text", "object_uuid", "volume")
    OUTCOME_FIELDS = ("change", "result_badge", "message_text")

    list_display = (*REQUEST_FIELDS, *OUTCOME_FIELDS)
    list_filter = (
        ("result", words_filter(_("result"), audit_result_text)),
        ("object_type", words_filter(_("object type"), object_type_text)),
        ("volume__cluster", related(_("cluster"))),
        ("volume__pool", related(_("pool"))),
        ("volume__tenant", related(_("tenant"))),
    )
    list_select_related = ("volume",)
    search_fields = ("actor", "action", "object_uuid", "message", "volume__name", "volume__uuid")
    date_hierarchy = None
    fieldsets = (
        (None, {"fields": (*REQUEST_FIELDS, "operation", *OUTCOME_FIELDS, "scode", "message_params")}),
    )

    @admin.display(description=_("state change"))
    def change(self, obj):
        if not obj.from_state and not obj.to_state:
            return "-"
        return f"{state_text(obj.from_state) or '-'} → {state_text(obj.to_state) or '-'}"

    @admin.display(description=_("action"), ordering="action")
    def action_text(self, obj):
        return action_text(obj.action)

    @admin.display(description=_("object type"), ordering="object_type")
    def object_type_text(self, obj):
        return object_type_text(obj.object_type)

    @admin.display(description=_("result"), ordering="result")
    def result_badge(self, obj):
        return badge(audit_result_text(obj.result), obj.result, kind="ok" if obj.result == "ok" else "bad")

    @admin.display(description=_("message"))
    def message_text(self, obj):
        return localized_event_message(obj)


@admin.register(ApiToken)
class ApiTokenAdmin(TokenActionsMixin, ConsoleAdmin):
    """API tokens (only their hash is stored): issue (the key shown once) and revoke, as
    `manage.py create_token` does."""

    list_display = ("name", "key_prefix", "tenant", "created", "expires_at", "revoked_at", "last_used")
    list_filter = (("tenant", related(_("tenant"))),)
    list_select_related = ("tenant",)
    search_fields = ("name", "key_prefix")
    fieldsets = ((None, {"fields": list_display}),)


# -- users and groups: the project's permissions in the reader's language ------------------------------


class TranslatedPermissionsMixin:
    """Permission pickers name the project's own permissions in the reader's language: their names
    are stored in English (auth_permission.name), and the catalogue translates them."""

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name in ("permissions", "user_permissions"):
            field.label_from_instance = lambda permission: (
                f"{permission.content_type} | {gettext(permission.name)}"
            )
        return field


class ConsoleGroupAdmin(TranslatedPermissionsMixin, GroupAdmin):
    """Django's group admin with translated permission names."""


class ConsoleUserAdmin(TranslatedPermissionsMixin, UserAdmin):
    """Django's user admin with translated permission names."""


for _model, _admin in ((Group, ConsoleGroupAdmin), (get_user_model(), ConsoleUserAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
