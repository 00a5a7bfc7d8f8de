"""`Authorization: Token <key>` authentication against hashed API tokens."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from sharestore.core.services.tokens import token_authenticate


class TokenPrincipal:
    """The authenticated caller of an API request: a platform token or a tenant token."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, token):
        self.token = token
        self.tenant_id = token.tenant_id

    @property
    def actor(self) -> str:
        return f"token:{self.token.name}"

    def __str__(self):
        return self.actor


class HashedTokenAuthentication(authentication.BaseAuthentication):
    """Looks the key up by its SHA-256; keys are never stored in clear."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed token header")
        try:
            key = header[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("malformed token header") from None
        token = token_authenticate(key)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid token")
        return TokenPrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword


class HashedTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Token <key>` in the OpenAPI schema."""

    target_class = "sharestore.core.authentication.HashedTokenAuthentication"
    name = "TokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Token <key>"}
