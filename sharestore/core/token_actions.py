"""The console's token actions: issue an API token (its key shown once, on the result page; only
its hash is stored, as `manage.py create_token` does through the same service) and revoke one."""

from __future__ import annotations

from django import forms
from django.apps import apps
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from sharestore.core.console_actions import ActionPage, ConsoleAction, ConsoleActionsMixin
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


class TokenIssueAction(ConsoleAction):
    """Preview who the token may act for; on confirm, issue it and show its key once."""

    page = ActionPage(ISSUE_PERMISSION, TokenIssueForm, "admin/core/actions/token_issue.html")
    title = _("Issue an API token")

    def preview(self, data):
        return {"tenant": data["tenant"], "expires_at": data["expires_at"], "name": data["name"]}

    def apply(self, data, _actor):
        return token_create(name=data["name"], tenant=data["tenant"], expires_at=data["expires_at"])

    def done(self, issued):
        token, key = issued
        title = gettext("API token %(name)s issued") % {"name": token.name}
        context = self.model_admin.repair_context(self.request, title, token=token, key=key)
        response = TemplateResponse(self.request, "admin/core/actions/token_issued.html", context)
        # The key is shown once: no cache may keep the page.
        response["Cache-Control"] = "no-store"
        return response


class TokenRevokeAction(ConsoleAction):
    """Preview the token and its last use; on confirm, revoke it."""

    page = ActionPage(REVOKE_PERMISSION, TokenRevokeForm, "admin/core/actions/token_revoke.html")
    title = _("Revoke API token %(name)s")
    subject_key = "token"

    def get_subject(self, object_id):
        return get_object_or_404(ApiToken.objects.select_related("tenant"), pk=object_id)

    def apply(self, _data, _actor):
        return token_revoke(token=self.subject)

    def done(self, revoked):
        text = gettext("API token %(name)s (%(prefix)s…) is revoked.")
        return self.tell(revoked, text % {"name": revoked.name, "prefix": revoked.key_prefix})


class TokenActionsMixin(ConsoleActionsMixin):
    """Issue and revoke, mixed into ApiTokenAdmin."""

    action_routes = (
        ("issue/", TokenIssueAction, "core_apitoken_issue"),
        ("<int:object_id>/revoke/", TokenRevokeAction, "core_apitoken_revoke"),
    )
