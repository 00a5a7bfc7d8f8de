"""Template helpers of the operator console: bytes, bars, state badges and localized errors."""

from django import template
from django.utils.html import format_html

from sharestore.core.console import (
    capacity_level,
    human_bytes,
    localized_error,
    localized_event_message,
    operation_phase_text,
    percent,
)
from sharestore.core.words import action_text, audit_result_text, state_text

register = template.Library()

# Filters that are the Python side's own functions: bytes as text, and stored words in the reader's
# language (an audit event's message, an operation's phase, an audit event's result `ok`, action
# `volume.reset_state` and state `9 (merging snapshot)`).
register.filter("bytes", human_bytes)
register.filter("event_message", localized_event_message)
register.filter("phase_text", operation_phase_text)
register.filter("audit_result", audit_result_text)
register.filter("audit_action", action_text)
register.filter("audit_state", state_text)


@register.simple_tag
def bar(part, whole, label=""):
    """A horizontal bar filled to part/whole, with the figures and the real percentage as text (above
    100 % too: the fill stops at the end, the figure does not); amber from the warning threshold,
    red from the critical one (settings SHARESTORE_CAPACITY_*_PERCENT)."""
    share = percent(part, whole)
    level = capacity_level(share)
    over = " ss-bar-over" if share > 100 else ""
    text = label or f"{human_bytes(part)} / {human_bytes(whole)}"
    shown = "∞" if share == float("inf") else f"{share:.0f}"
    return format_html(
        '<span class="ss-bar ss-bar-{}{}" title="{}"><span class="ss-bar-fill" style="width: {}%"></span>'
        '<span class="ss-bar-text">{} ({}%)</span></span>',
        level,
        over,
        text,
        f"{min(share, 100.0):.1f}",
        text,
        shown,
    )


@register.simple_tag
def progress_bar(value):
    """An operation's 0-100 progress."""
    share = max(0.0, min(100.0, float(value or 0)))
    return format_html(
        '<span class="ss-bar ss-bar-low"><span class="ss-bar-fill" style="width: {}%"></span>'
        '<span class="ss-bar-text">{}%</span></span>',
        f"{share:.1f}",
        f"{share:.0f}",
    )


@register.simple_tag
def error_text(scode, message, params=None):
    """A stored failure in the reader's language, from the scode catalogue and its parameters."""
    return localized_error(scode, message, params)


@register.simple_tag
def operation_figures(operation):
    """An operation's live figures for a page that lists it: `{% operation_figures op as f %}`, then
    f.throughput, f.eta, f.lease (the lease-expired marker), f.badge (the state), f.cause (of a
    failure), f.active, f.url (progress.json)."""
    from django.urls import reverse
    from django.utils import timezone

    from sharestore.core.choices import ACTIVE_OPERATION_STATES
    from sharestore.core.console import (
        badge,
        error_cause,
        human_duration,
        human_rate,
        lease_marker,
        operation_rates,
    )

    now = timezone.now()
    rates = operation_rates(operation, now)
    return {
        "throughput": human_rate(rates["throughput"]),
        "eta": human_duration(rates["eta"]),
        "lease": lease_marker(operation, now),
        "badge": badge(operation.get_state_display(), operation.state),
        "cause": error_cause(operation.error_detail),
        "active": operation.state in ACTIVE_OPERATION_STATES,
        "url": reverse("admin:core_operation_progress"),
    }
