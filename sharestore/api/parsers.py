"""The API's one body parser: JSON whatever the Content-Type, bounded in size and nesting.

Upstream platforms post the contract's bodies with whatever their HTTP client sends (`curl -d`
sends `application/x-www-form-urlencoded`): every body is read as JSON. The size and nesting
limits keep a hostile body from costing memory or recursion before validation starts.
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework.parsers import BaseParser

from sharestore import errors

MAX_NESTING = 32


def _nesting_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in `text`, counting only brackets outside strings; stops past `limit`."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


class AnyContentTypeJSONParser(BaseParser):
    """Parses every request body as JSON (UTF-8), refusing oversized and over-nested ones with their scode."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise errors.RequestTooLarge(limit=limit)
        if not raw.strip():
            raise errors.MalformedRequest(reason="the body is empty; send a JSON object")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.MalformedRequest(reason="the body is not UTF-8 text") from None
        if _nesting_depth(text, MAX_NESTING) > MAX_NESTING:
            raise errors.RequestTooDeep(limit=MAX_NESTING)
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise errors.MalformedRequest(reason=f"not JSON ({exc})") from None


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON, although Python's parser takes them.
    raise ValueError(f"{name} is not a JSON value")
