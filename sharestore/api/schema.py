"""OpenAPI helpers: the envelope around a payload, and the error envelope, for drf-spectacular."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

_cache: dict[str, serializers.Serializer] = {}


class JsonBodyAutoSchema(AutoSchema):
    """Documents request bodies as application/json: the parser reads JSON whatever the Content-Type
    (sharestore.api.parsers), but JSON is what clients should declare."""

    def map_parsers(self):
        return ["application/json"]


def envelope(name: str, data) -> serializers.Serializer:
    """A named envelope schema `{scode, desc, message, message_cn, stack, data}` around `data`."""
    if name not in _cache:
        _cache[name] = inline_serializer(
            name=name,
            fields={
                "scode": serializers.IntegerField(help_text="0 on success"),
                "desc": serializers.CharField(),
                "message": serializers.CharField(),
                "message_cn": serializers.CharField(),
                "stack": serializers.CharField(allow_null=True),
                "data": data,
            },
        )
    return _cache[name]


ERROR_ENVELOPE = envelope("ErrorEnvelope", serializers.JSONField(allow_null=True, help_text="always null"))


def error_responses(*statuses: int) -> dict:
    """Error answers for the given HTTP statuses; the scodes are listed in docs/errors.md."""
    return {
        status: OpenApiResponse(ERROR_ENVELOPE, description="error envelope; scode from docs/errors.md")
        for status in statuses
    }
