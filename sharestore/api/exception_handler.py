"""The one place that maps exceptions to scode, HTTP status and the error envelope."""

from __future__ import annotations

import logging
import traceback

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from sharestore import errors
from sharestore.api.envelope import envelope_body

logger = logging.getLogger(__name__)


def _first_validation_error(detail, prefix: str = "") -> tuple[str, str, str]:
    """Walk DRF's nested error detail to the first leaf: (field path, message, code)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            path = f"{prefix}.{name}" if prefix and name else (name or prefix)
            return _first_validation_error(value, path)
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    code = getattr(detail, "code", "invalid")
    return prefix or "body", str(detail), code


def to_service_error(exc: Exception) -> errors.ServiceError:
    """Translate any exception into a catalogued ServiceError."""
    if isinstance(exc, errors.ServiceError):
        return exc
    if isinstance(exc, drf_exceptions.ValidationError):
        field, reason, code = _first_validation_error(exc.detail)
        if code in {"required", "null"} and field != "body":
            return errors.MissingParameter(field=field)
        return errors.InvalidParameter(field=field, reason=reason)
    if isinstance(exc, drf_exceptions.ParseError):
        return errors.MalformedRequest(reason=str(exc.detail))
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return errors.NotAuthenticated()
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return errors.InvalidToken()
    if isinstance(exc, (drf_exceptions.PermissionDenied, DjangoPermissionDenied)):
        return errors.PermissionDenied(reason=str(getattr(exc, "detail", exc)))
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return errors.MethodNotAllowed(
            method=str(exc.detail).split('"')[1] if '"' in str(exc.detail) else "?"
        )
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return errors.UnsupportedMediaType(
            media_type=str(exc.detail).split('"')[1] if '"' in str(exc.detail) else ""
        )
    if isinstance(exc, (Http404, drf_exceptions.NotFound)):
        return errors.NotFoundRoute(path="")
    return errors.InternalError()


def error_body(error: errors.ServiceError, exc: Exception | None = None) -> dict:
    stack = None
    if settings.DEBUG and exc is not None:
        stack = "".join(traceback.format_exception(exc))
    return envelope_body(
        None,
        scode=error.scode,
        desc=error.desc,
        message=error.render_message(),
        message_cn=error.render_message_cn(),
        stack=stack,
    )


def envelope_exception_handler(exc: Exception, context) -> Response:
    """DRF EXCEPTION_HANDLER: every failure becomes the envelope with a catalogued scode."""
    error = to_service_error(exc)
    if isinstance(error, errors.InternalError) and not isinstance(exc, errors.ServiceError):
        logger.exception(
            "unhandled error in %s", context.get("view").__class__.__name__ if context else "?", exc_info=exc
        )
    set_rollback()
    headers = {}
    if isinstance(error, (errors.NotAuthenticated, errors.InvalidToken)):
        headers["WWW-Authenticate"] = "Token"
    return Response(error_body(error, exc), status=error.http_status, headers=headers)


def api_not_found(request, exception=None):
    """handler404 for /v1/ paths: the envelope instead of Django's HTML page."""
    error = errors.NotFoundRoute(path=request.path)
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body(error), status=404, json_dumps_params={"ensure_ascii": False})
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def api_bad_request(request, exception=None):
    """handler400 for /v1/ paths: a disallowed Host header (or another suspicious request) in the envelope."""
    if request.path.startswith("/v1/"):
        if isinstance(exception, DisallowedHost):
            # Django's own message quotes the header; the envelope names it the same way.
            host = request.META.get("HTTP_X_FORWARDED_HOST") or request.META.get("HTTP_HOST", "")
            error = errors.HostNotServed(host=repr(host[:255]))
        else:
            error = errors.MalformedRequest(reason="the request was refused as suspicious")
        return JsonResponse(
            error_body(error), status=error.http_status, json_dumps_params={"ensure_ascii": False}
        )
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def api_server_error(request):
    """handler500 for /v1/ paths."""
    if request.path.startswith("/v1/"):
        return JsonResponse(
            error_body(errors.InternalError()), status=500, json_dumps_params={"ensure_ascii": False}
        )
    from django.views.defaults import server_error

    return server_error(request)
