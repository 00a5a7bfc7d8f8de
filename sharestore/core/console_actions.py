"""The console's everyday actions (snapshot, clone, backup, restore, tokens...): one permission per
kind of action, checked in the view (a 403 page that names the missing permission); GET previews
what will happen and what it costs, POST runs the same service the API view calls, as the console
user, and shows a refusal on the form in the reader's language (docs/console.md "Actions").
An action is a ConsoleAction subclass (its ActionPage, title and steps); a model admin lists its
actions' routes in `action_routes` (ConsoleActionsMixin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.models import Permission
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
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


@dataclass(frozen=True)
class ActionPage:
    """Who may open an action page, the form it asks for, and the template that draws it."""

    permission: str
    form_class: type[forms.Form]
    template: str


class ConsoleAction:
    """One action page: its ActionPage and title stated once, its steps (preview, apply, done) as methods."""

    page: ActionPage
    # Lazy, formatted with the subject's name in the reader's language.
    title: str
    # The context entry the subject (a volume, a backup, a token) is passed to the template as.
    subject_key: str | None = None

    def __init__(self, model_admin, request, object_id=None):
        self.model_admin = model_admin
        self.request = request
        self.subject = self.get_subject(object_id)

    def get_subject(self, object_id):
        """The row the action is about (404 when it is missing); None for an action about none."""
        return None

    def form_options(self) -> dict:
        """Keyword arguments of the form besides its data (`volume=`, `initial=`)."""
        return {}

    def preview(self, data) -> dict:
        """Context entries of the confirmation; nothing to show but the button by default."""
        return {"ready": True}

    def apply(self, data, actor):
        """Run the service (in the site language) and return what it made."""
        raise NotImplementedError

    def done(self, result):
        """The answer once `apply` returned `result`: usually `tell(...)`."""
        raise NotImplementedError

    def tell(self, row, text: str):
        """The answer of a done action: `text` as a success message, and the page of `row`."""
        self.model_admin.message_user(self.request, text, messages.SUCCESS)
        opts = row._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
        )

    def response(self):
        """The page: `action_view` with this action's parts."""
        name = getattr(self.subject, "name", "")
        return action_view(
            self.model_admin,
            self.request,
            permission=self.page.permission,
            form=self.page.form_class(bound_data(self.request), **self.form_options()),
            title=str(self.title) % {"name": name},
            template=self.page.template,
            preview=self.preview,
            apply=self.apply,
            done=self.done,
            context={self.subject_key: self.subject} if self.subject_key else None,
        )


def action_urls(model_admin, routes) -> list:
    """The URL entries of a model admin's action pages: (route, ConsoleAction subclass, URL name)."""

    def view_of(action: type[ConsoleAction]):
        def view(request, object_id=None):
            return action(model_admin, request, object_id).response()

        return model_admin.admin_site.admin_view(view)

    return [path(route, view_of(action), name=name) for route, action, name in routes]


class ConsoleActionsMixin:
    """Mixed into a model admin: its action pages (`action_routes`: route, ConsoleAction subclass, URL
    name), their URLs ahead of the admin's own."""

    action_routes: tuple = ()

    def get_urls(self):
        return [*action_urls(self, self.action_routes), *super().get_urls()]
