"""The one place that maps exceptions to scode, HTTP status and the error envelope."""

from __future__ import annotations

import logging
import re
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
from sharestore.error_words import reason_cn

# DRF's field error codes in Chinese; `{n}` is the limit DRF's English text names.
DRF_REASONS_CN = {
    "required": "必填",
    "null": "不能为 null",
    "blank": "不能为空字符串",
    "invalid": "格式无效",
    "max_length": "长度不能超过 {n}",
    "min_length": "长度不能少于 {n}",
    "max_value": "不能大于 {n}",
    "min_value": "不能小于 {n}",
    "max_string_length": "数值过大",
    "max_digits": "数字位数不能超过 {n} 位",
    "max_decimal_places": "小数位数不能超过 {n} 位",
    "max_whole_digits": "整数部分不能超过 {n} 位",
    "invalid_choice": "不是可选的值",
    "not_a_list": "必须是数组",
    "not_a_dict": "必须是对象",
    "empty": "不能为空",
    "date": "必须是日期",
    "datetime": "必须是日期时间",
    "does_not_exist": "指向的对象不存在",
    "incorrect_type": "类型不正确",
    "unique": "已存在",
    "null_characters_not_allowed": "不能包含空字符",
    "surrogate_characters_not_allowed": "不能包含代理字符",
    "overflow": "数值超出范围",
    "parse_error": "不是合法的 JSON",
    "permission_denied": "无权执行此操作",
}
_LIMIT = re.compile(r"-?\d+(?:\.\d+)?")


def drf_reason_cn(code: str, text: str) -> str:
    """The Chinese reason for one DRF field error: the project's own texts first, then DRF's codes."""
    known = reason_cn(text)
    if known is not None:
        return known
    template = DRF_REASONS_CN.get(code, "取值无效")
    limit = _LIMIT.search(text)
    return template.format(n=limit.group(0) if limit else "")


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
        return errors.InvalidParameter(field=field, reason=reason, reason_cn=drf_reason_cn(code, reason))
    if isinstance(exc, drf_exceptions.ParseError):
        return errors.MalformedRequest(
            reason=str(exc.detail), reason_cn=drf_reason_cn("parse_error", str(exc.detail))
        )
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return errors.NotAuthenticated()
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return errors.InvalidToken()
    if isinstance(exc, (drf_exceptions.PermissionDenied, DjangoPermissionDenied)):
        reason = str(getattr(exc, "detail", exc))
        return errors.PermissionDenied(reason=reason, reason_cn=drf_reason_cn("permission_denied", reason))
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
