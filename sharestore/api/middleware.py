"""The envelope for a request refused before any view runs, on API paths, whatever DEBUG says."""

from __future__ import annotations

import logging

from django.core.exceptions import DisallowedHost

from sharestore.api.exception_handler import api_bad_request

security_logger = logging.getLogger("django.security.DisallowedHost")


class ApiHostMiddleware:
    """Check the Host header of /v1/ requests first: a host outside ALLOWED_HOSTS answers 400 / 1015 in
    the envelope. Without this, DEBUG turns Django's DisallowedHost into its HTML debug page (the
    handler400 only runs with DEBUG off); an API client reads JSON either way."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/v1/"):
            try:
                request.get_host()
            except DisallowedHost as exc:
                security_logger.warning("%s", exc, extra={"status_code": 400, "request": request})
                return api_bad_request(request, exc)
        return self.get_response(request)
