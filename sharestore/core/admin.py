"""The console's screens of the core app: operations (progress, errors, retry where safe), the
audit trail and API tokens, all view-only."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from sharestore import errors
from sharestore.core import dispatch
from sharestore.core.console import (
    ConsoleAdmin,
    badge,
    choices,
    console_actor,
    human_bytes,
    localized_error,
    localized_event_message,
    neutral_language,
    operation_phase_text,
    related,
    service_error_text,
)
from sharestore.core.models import ApiToken, AuditEvent, Operation
from sharestore.core.templatetags.console_tags import progress_bar
from sharestore.core.words import action_text, audit_result_text, object_type_text, state_text, words_filter


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
        "error",
        "owner",
        "requested_by",
        "attempts",
        "created",
        "finished",
    )
    list_filter = (
        ("state", choices(_("state"))),
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
        (_("Progress"), {"fields": ("phase_text", "progress", "bytes_done", "bytes_total")}),
        (_("Error"), {"fields": ("error_scode", "error", "error_params", "error_detail")}),
        (
            _("Lease"),
            {
                "fields": (
                    "requested_by",
                    "request_id",
                    "owner",
                    "lease_expires_at",
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

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), obj.state)

    @admin.display(description=_("target type"))
    def target_type_text(self, obj):
        return object_type_text(obj.target_type)

    @admin.display(description=_("progress"), ordering="progress")
    def progress_bar(self, obj):
        return progress_bar(obj.progress)

    @admin.display(description=_("phase"), ordering="phase")
    def phase_text(self, obj):
        return operation_phase_text(obj.phase)

    @admin.display(description=_("bytes"))
    def bytes_h(self, obj):
        if not obj.bytes_total:
            return human_bytes(obj.bytes_done) if obj.bytes_done else "-"
        return format_html("{} / {}", human_bytes(obj.bytes_done), human_bytes(obj.bytes_total))

    @admin.display(description=_("error"))
    def error(self, obj):
        if not obj.error_scode and not obj.error_message:
            return "-"
        return format_html(
            '<span class="ss-error" title="{}">{}: {}</span>',
            obj.error_detail[:2000],
            obj.error_scode,
            localized_error(obj.error_scode, obj.error_message, obj.error_params),
        )

    def get_urls(self):
        return [
            path("retry/", self.admin_site.admin_view(self.retry_view), name="core_operation_retry"),
            *super().get_urls(),
        ]

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

    list_display = (
        "created",
        "actor",
        "action_text",
        "object_type_text",
        "object_uuid",
        "volume",
        "change",
        "result_badge",
        "message_text",
    )
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
        (
            None,
            {
                "fields": (
                    "created",
                    "actor",
                    "action_text",
                    "object_type_text",
                    "object_uuid",
                    "volume",
                    "operation",
                    "change",
                    "result_badge",
                    "message_text",
                    "scode",
                    "message_params",
                )
            },
        ),
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
class ApiTokenAdmin(ConsoleAdmin):
    """API tokens (only their hash is stored; issue them with `manage.py create_token`)."""

    list_display = ("name", "key_prefix", "tenant", "created", "expires_at", "revoked_at", "last_used")
    list_filter = (("tenant", related(_("tenant"))),)
    list_select_related = ("tenant",)
    search_fields = ("name", "key_prefix")
    fieldsets = (
        (
            None,
            {"fields": ("name", "key_prefix", "tenant", "created", "expires_at", "revoked_at", "last_used")},
        ),
    )
