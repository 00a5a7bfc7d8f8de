"""The console's token actions: issue an API token (its key shown once, on the result page; only
its hash is stored, as `manage.py create_token` does through the same service) and revoke one."""

from __future__ import annotations

from django import forms
from django.apps import apps
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore.core.console_actions import action_view, bound_data
from sharestore.core.models import ApiToken
from sharestore.core.services.tokens import token_create, token_revoke

ISSUE_PERMISSION = "core.issue_token"
REVOKE_PERMISSION = "core.revoke_token"


class TokenIssueForm(forms.Form):
    """A token's name, its tenant (none: a platform token) and when it expires."""

    name = forms.CharField(label=_("name"), max_length=128)
    expires_at = forms.DateTimeField(
        label=pgettext_lazy("action", "expires at"),
        required=False,
        help_text=_("YYYY-MM-DD HH:MM; empty: never."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Tenants are the volumes app's: reached through the app registry, as the FK names them.
        tenants = apps.get_model("volumes", "Tenant").objects.order_by("name")
        self.fields["tenant"] = forms.ModelChoiceField(
            tenants,
            to_field_name="uuid",
            required=False,
            label=_("tenant"),
            help_text=_("Empty: a platform token that may act for any tenant."),
        )


class TokenRevokeForm(forms.Form):
    """Revoke a token (nothing to choose)."""


class TokenActionsMixin:
    """Issue and revoke, mixed into ApiTokenAdmin (`get_action_urls` joins its URLs)."""

    def get_action_urls(self):
        view = self.admin_site.admin_view
        return [
            path("issue/", view(self.token_issue_view), name="core_apitoken_issue"),
            path("<int:object_id>/revoke/", view(self.token_revoke_view), name="core_apitoken_revoke"),
        ]

    def token_issue_view(self, request):
        """Preview who the token may act for; on confirm, issue it and show its key once."""

        def preview(data):
            return {"tenant": data["tenant"], "expires_at": data["expires_at"], "name": data["name"]}

        def done(issued):
            token, key = issued
            context = self.repair_context(
                request, gettext("API token %(name)s issued") % {"name": token.name}, token=token, key=key
            )
            response = TemplateResponse(request, "admin/core/actions/token_issued.html", context)
            # The key is shown once: no cache may keep the page.
            response["Cache-Control"] = "no-store"
            return response

        return action_view(
            self,
            request,
            permission=ISSUE_PERMISSION,
            form=TokenIssueForm(bound_data(request)),
            title=gettext("Issue an API token"),
            template="admin/core/actions/token_issue.html",
            preview=preview,
            apply=lambda data, _actor: token_create(
                name=data["name"], tenant=data["tenant"], expires_at=data["expires_at"]
            ),
            done=done,
        )

    def token_revoke_view(self, request, object_id):
        """Preview the token and its last use; on confirm, revoke it."""
        token = get_object_or_404(ApiToken.objects.select_related("tenant"), pk=object_id)

        def done(revoked):
            self.message_user(
                request,
                gettext("API token %(name)s (%(prefix)s…) is revoked.")
                % {"name": revoked.name, "prefix": revoked.key_prefix},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:core_apitoken_change", args=[revoked.pk]))

        return action_view(
            self,
            request,
            permission=REVOKE_PERMISSION,
            form=TokenRevokeForm(bound_data(request)),
            title=gettext("Revoke API token %(name)s") % {"name": token.name},
            template="admin/core/actions/token_revoke.html",
            preview=lambda _data: {"ready": True},
            apply=lambda _data, _actor: token_revoke(token=token),
            done=done,
            context={"token": token},
        )
