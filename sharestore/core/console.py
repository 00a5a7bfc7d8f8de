"""The operator console's toolkit, shared by every app's admin: the view-only base admin, badges,
translatable list filters, count/sum subqueries, the actor and language a console action runs
with, bytes and bars, and errors in the reader's language from the one scode catalogue.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime
from django.utils.translation import get_language, gettext, gettext_lazy, pgettext, pgettext_lazy

from sharestore import errors
from sharestore.core.choices import OperationState

# Declared on the volume model (repairs act on volumes, pools and backup points); named here as a
# string so that the core app imports nothing from the apps built on it.
REPAIR_PERMISSION = "volumes.run_repairs"


def can_run_repairs(user) -> bool:
    """Superusers, and holders of `volumes.run_repairs` (superusers pass every has_perm)."""
    return bool(user and user.is_active and user.is_staff and user.has_perm(REPAIR_PERMISSION))


# -- bytes and bars ----------------------------------------------------------------------------------


def human_bytes(value) -> str:
    """1536 -> '1.5 KiB' (binary units, as capacities are given)."""
    if value is None or value == "":
        return "-"
    value = int(value)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{sign}{value} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} PiB"


def percent(part, whole) -> float:
    """part / whole in percent, not capped: 12.1 GiB committed on 1 GiB is 1210 %. Nothing of
    nothing is 0; something of nothing is infinite."""
    part = float(part or 0)
    if not whole:
        return float("inf") if part > 0 else 0.0
    return max(0.0, 100.0 * part / float(whole))


def capacity_level(share: float) -> str:
    """'low', 'mid' (at or above SHARESTORE_CAPACITY_WARNING_PERCENT) or 'high' (at or above
    SHARESTORE_CAPACITY_CRITICAL_PERCENT) for a share in percent."""
    if share >= settings.SHARESTORE_CAPACITY_CRITICAL_PERCENT:
        return "high"
    if share >= settings.SHARESTORE_CAPACITY_WARNING_PERCENT:
        return "mid"
    return "low"


# -- errors in the reader's language ------------------------------------------------------------------


def _chinese(language: str | None) -> bool:
    return (language or get_language() or "en").lower().startswith("zh")


def localized_error(
    scode: int | None, message: str, params: dict | None = None, language: str | None = None
) -> str:
    """A failure in the reader's language, rendered from the catalogue with its stored parameters
    (the stored English `message` when there are none to render from)."""
    if not scode:
        return message
    return errors.render(int(scode), params, fallback=message, chinese=_chinese(language))


def localized_event_message(event, language: str | None = None) -> str:
    """An audit event's message; a failure's is rendered from its scode and parameters."""
    if not event.scode:
        return event.message
    text = errors.render(
        event.scode, event.message_params, fallback=event.message, chinese=_chinese(language)
    )
    if text == event.message:
        # Nothing to render from (an event written before parameters were kept): as stored.
        return event.message
    return f"scode {event.scode}: {text}"


def service_error_message(exc: errors.ServiceError, language: str | None = None) -> str:
    """A service error just raised, in the reader's language (it still has its parameters)."""
    return exc.render_message_cn() if _chinese(language) else exc.render_message()


def service_error_text(exc: errors.ServiceError) -> str:
    """A service error for a console message: its scode and its message in the reader's language."""
    return f"scode {exc.scode}: {service_error_message(exc)}"


# -- the admin toolkit ---------------------------------------------------------------------------------


def neutral_language():
    """Run a service in the site language: `transition` writes state labels into the audit trail,
    and those must not depend on the language of the operator who clicked."""
    return translation.override(settings.LANGUAGE_CODE)


def console_actor(request) -> str:
    """Who a console action is recorded as in the audit trail."""
    return f"console:{request.user.get_username()}"


def titled(base: type[admin.FieldListFilter], title) -> type[admin.FieldListFilter]:
    """A list filter with a translatable title (model fields without verbose names give English ones)."""

    class Titled(base):
        """`base` with the given title."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

    Titled.__name__ = f"Titled{base.__name__}"
    return Titled


def related(title):
    return titled(admin.RelatedFieldListFilter, title)


def choices(title):
    return titled(admin.ChoicesFieldListFilter, title)


def count_of(model, field: str, **filters) -> Subquery:
    """A correlated COUNT subquery: one query for the page whatever its row count, no join fan-out."""
    return Coalesce(
        Subquery(
            model.objects.filter(**{field: OuterRef("pk")}, **filters)
            .order_by()
            .values(field)
            .annotate(n=Count("pk"))
            .values("n")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def sum_of(model, field: str, column: str, **filters) -> Subquery:
    return Coalesce(
        Subquery(
            model.objects.filter(**{field: OuterRef("pk")}, **filters)
            .order_by()
            .values(field)
            .annotate(total=Sum(column))
            .values("total")[:1]
        ),
        Value(0),
    )


OPERATION_COLOURS = {
    OperationState.SUCCEEDED: "ok",
    OperationState.FAILED: "bad",
    OperationState.CANCELLED: "off",
}


def badge(label, value, *, kind: str = "", colours: dict | None = None) -> str:
    """A coloured state label: `kind` names the colour, else `colours` (default: operation states)
    maps the value to one; anything else is shown as busy."""
    colour = kind or (OPERATION_COLOURS if colours is None else colours).get(value, "busy")
    return format_html('<span class="ss-badge ss-badge-{}">{}</span>', colour, label)


def health_badge(obj) -> str:
    """The status of a storage location (a pool, a backup point): healthy, or anything else (bad)."""
    return badge(obj.get_status_display(), obj.status, kind="ok" if obj.status == "healthy" else "bad")


def short_uuid(value) -> str:
    """A UUID as its first 8 characters, the whole one in the tooltip (lists that must fit a screen)."""
    return format_html('<span class="ss-uuid" title="{}">{}</span>', value, str(value)[:8])


def usage_table(rows) -> str:
    """(label, bar) rows as the usage table of a storage location's page."""
    return format_html(
        '<table class="ss-usage">{}</table>', format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
    )


def location_filters(scope: str, scope_title, type_field: str) -> tuple:
    """List filters of a storage location: its cluster, its `scope` (zone, tenant), type and status."""
    return (
        ("cluster", related(gettext_lazy("cluster"))),
        (scope, related(scope_title)),
        (type_field, choices(gettext_lazy("type"))),
        ("status", choices(gettext_lazy("status"))),
    )


def repair_redirect(url_name: str, param: str, queryset) -> HttpResponseRedirect:
    """An admin action's redirect to a repair page (`url_name`) previewing the selected rows, named by
    UUID in the query parameter `param` (repeated)."""
    query = urlencode([(param, str(row.uuid)) for row in queryset])
    return HttpResponseRedirect(f"{reverse(url_name)}?{query}")


def rows_link(url_name: str, field: str, obj, count) -> str:
    """`count` linked to the changelist (`url_name`) of the rows whose `field` is `obj`."""
    return format_html('<a href="{}">{}</a>', f"{reverse(url_name)}?{field}__id__exact={obj.pk}", count)


def service_error_to_form(form, exc: errors.ServiceError) -> None:
    """A service's refusal on the form: on the field it names, when the form has it, else on the form."""
    field = exc.params.get("field")
    form.add_error(field if field in form.fields else None, service_error_message(exc))


class ConsoleAdmin(admin.ModelAdmin):
    """Base of the console's admins: view-only (only the storage layer writes these rows)."""

    list_per_page = 50
    show_full_result_count = True

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_run_repairs_permission(self, request):
        return can_run_repairs(request.user)

    def get_readonly_fields(self, request, obj=None):
        if self.has_change_permission(request, obj):
            return super().get_readonly_fields(request, obj)
        if self.fieldsets:
            return flatten_fieldsets(self.fieldsets)
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"] + list(
            self.readonly_fields
        )

    def guard_repairs(self, request) -> None:
        if not can_run_repairs(request.user):
            raise PermissionDenied

    def repair_context(self, request, title, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "app_label": self.model._meta.app_label,
            **extra,
        }


class EditableConsoleAdmin(ConsoleAdmin):
    """A console admin whose rows operators add and edit through a service-backed form (pools, backup
    points): the model's own add/change permissions apply, `fixed_fields` are set once at creation,
    and `editable_fields` make up the form after the UUID, with usage and times read-only beside them."""

    editable_fields: tuple[str, ...] = ()
    fixed_fields: tuple[str, ...] = ()

    def has_add_permission(self, request):
        return admin.ModelAdmin.has_add_permission(self, request)

    def has_change_permission(self, request, obj=None):
        return admin.ModelAdmin.has_change_permission(self, request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = ["uuid", "usage", "created", "modified"]
        if obj is not None:
            fields += self.fixed_fields
        if not self.has_change_permission(request, obj):
            fields += [f for f in self.editable_fields if f not in fields]
        return fields

    def get_fieldsets(self, request, obj=None):
        main = list(self.editable_fields)
        if obj is None:
            return [(None, {"fields": main})]
        return [
            (None, {"fields": ["uuid", *main]}),
            (gettext_lazy("Usage"), {"fields": ["usage"]}),
            (gettext_lazy("Times"), {"fields": ["created", "modified"]}),
        ]


# -- live work: rates, leases, causes -------------------------------------------------------------------


def error_cause(detail: str) -> str:
    """The meaningful line of a failing command's output (its stderr, `Operation.error_detail`): the
    last non-empty line, without the program's name, reduced to its last clause when it is a chain of
    "context: context: cause" (`qemu-img: Could not open 'x': Operation not permitted` -> `Operation
    not permitted`). "" when there is nothing to say."""
    lines = [line.strip() for line in (detail or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    head, sep, rest = line.partition(": ")
    if sep and " " not in head and "/" not in head.strip("'\""):
        line = rest  # `qemu-img: ...`, `qemu-nbd: ...`
    clause = line.rsplit(": ", 1)[-1].strip()
    # A last clause that is a value (a quoted name, a number) says less than the line.
    return clause if clause and clause[0].isalpha() and "'" not in clause else line


def operation_rates(operation, now=None) -> dict:
    """Throughput (bytes/s, over the running time of the current attempt) and the time left (s) of an
    operation; None where nothing can be said (queued, no bytes yet, finished for the ETA)."""
    now = now or timezone.now()
    rates = {"throughput": None, "eta": None}
    if not operation.started or operation.state == OperationState.QUEUED:
        return rates
    end = operation.finished or now
    elapsed = (end - operation.started).total_seconds()
    if elapsed <= 0:
        return rates
    if operation.bytes_done:
        rates["throughput"] = operation.bytes_done / elapsed
    if operation.state != OperationState.RUNNING:
        return rates
    if rates["throughput"] and operation.bytes_total > operation.bytes_done:
        rates["eta"] = (operation.bytes_total - operation.bytes_done) / rates["throughput"]
    elif 0 < operation.progress < 100:
        rates["eta"] = elapsed * (100 - operation.progress) / operation.progress
    return rates


def human_rate(value) -> str:
    return "-" if value is None else f"{human_bytes(int(value))}/s"


def human_duration(seconds) -> str:
    """62 -> '1 min 2 s' (the words translated)."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return gettext("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
    if minutes:
        return gettext("%(m)d min %(s)d s") % {"m": minutes, "s": secs}
    return gettext("%(s)d s") % {"s": secs}


def lease_marker(operation, now=None) -> str:
    """For a running operation whose lease expired: the marker, and when the sweeper takes it over."""
    from sharestore.core.services.leases import expected_takeover_at, lease_expired

    now = now or timezone.now()
    if not lease_expired(operation, now):
        return ""
    takeover = expected_takeover_at(operation.lease_expires_at)
    if takeover > now:
        when = gettext("takeover expected by %(time)s (in %(left)s)") % {
            "time": localtime(takeover).strftime("%H:%M:%S"),
            "left": human_duration((takeover - now).total_seconds()),
        }
    else:
        when = gettext("takeover overdue since %(time)s: is any worker running?") % {
            "time": localtime(takeover).strftime("%H:%M:%S")
        }
    return format_html(
        '<span class="ss-badge ss-badge-bad ss-lease-expired" title="{}">{}</span> <small>{}</small>',
        gettext("The worker stopped renewing the lease at %(time)s.")
        % {"time": localtime(operation.lease_expires_at).strftime("%H:%M:%S")},
        pgettext("operations console", "lease expired"),
        when,
    )


class LeaseListFilter(admin.SimpleListFilter):
    """Operations by lease: running ones whose worker stopped renewing it (awaiting takeover)."""

    title = pgettext_lazy("operations console", "lease")
    parameter_name = "lease"

    def lookups(self, request, model_admin):
        return [("expired", pgettext_lazy("operations console", "lease expired"))]

    def queryset(self, request, queryset):
        from sharestore.core.services.placement import expired_lease_q

        if self.value() == "expired":
            return queryset.filter(expired_lease_q())
        return queryset


# -- operation phases in the reader's language --------------------------------------------------------


def operation_phase_text(phase: str) -> str:
    """An operation's stored phase (English, as the API answers it) in the reader's language, from
    the table keyed by the stored phase (`sharestore.core.phases`)."""
    from sharestore.core.phases import phase_words

    return phase_words(phase or "")
