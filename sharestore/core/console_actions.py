"""The console's everyday actions (snapshot, clone, backup, restore, tokens...): one permission per
kind of action, checked in the view (a 403 page that names the missing permission); GET previews
what will happen and what it costs, POST runs the same service the API view calls, as the console
user, and shows a refusal on the form in the reader's language (docs/console.md "Actions")."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import Permission
from django.template.response import TemplateResponse
from django.utils.translation import gettext

from sharestore import errors
from sharestore.core.console import console_actor, neutral_language, service_error_to_form


def permission_label(permission: str) -> str:
    """The permission's name as declared in its model's Meta, in the reader's language."""
    app_label, _sep, codename = permission.partition(".")
    name = (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .values_list("name", flat=True)
        .first()
    )
    return gettext(name) if name else permission


def action_denied(model_admin, request, permission: str) -> TemplateResponse:
    """The 403 page of an action: which permission is missing, by code and by name."""
    context = model_admin.repair_context(
        request,
        gettext("Permission needed"),
        permission=permission,
        permission_label=permission_label(permission),
    )
    return TemplateResponse(request, "admin/core/action_denied.html", context, status=403)


def action_view(
    model_admin,
    request,
    *,
    permission: str,
    form,
    title: str,
    template: str,
    preview: Callable[[dict], dict],
    apply: Callable[[dict, str], object],
    done: Callable[[object], object],
    context: dict | None = None,
):
    """One action page. `form` is bound to POST, or to GET once the operator asked for a preview
    (`?preview=1`); a valid form gets `preview(cleaned_data)` (context entries, no storage work but
    constant-time reads). POST runs `apply(cleaned_data, actor)` in the site language (the audit
    trail must not depend on the reader's) and answers `done(result)`; a ServiceError from the
    preview or the service lands on the form, and nothing changed."""
    if not request.user.has_perm(permission):
        return action_denied(model_admin, request, permission)
    shown: dict = {}
    if form.is_bound and form.is_valid():
        if request.method == "POST":
            try:
                with neutral_language():
                    result = apply(form.cleaned_data, console_actor(request))
            except errors.ServiceError as exc:
                service_error_to_form(form, exc)
            else:
                return done(result)
        try:
            shown = preview(form.cleaned_data)
        except errors.ServiceError as exc:
            service_error_to_form(form, exc)
    page = model_admin.repair_context(
        request,
        title,
        form=form,
        preview=shown,
        confirm=bool(form.is_bound and not form.errors and shown),
        permission=permission,
        **(context or {}),
    )
    return TemplateResponse(request, template, page)


def bound_data(request):
    """What an action's form is bound to: the POST, or the GET once a preview is asked for."""
    if request.method == "POST":
        return request.POST
    return request.GET if request.GET.get("preview") else None
