"""OpenAPI helpers: the envelope around a payload, and the error envelope, for drf-spectacular."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers

from sharestore.api.envelope import SCOPE_KEYS

_cache: dict[str, serializers.Serializer] = {}

# The characters a name may not hold (`volumes.services.volumes.validate_name`): Unicode control,
# format, surrogate and private-use categories.
REFUSED_NAME_CATEGORIES = ("Cc", "Cf", "Cs", "Co")
_BMP = 0x10000


def _class_ranges(wanted: Callable[[str], bool]) -> str:
    """A regex character-class body (`\\u0000-\\u001f...`) of the BMP characters `wanted` accepts.

    Only the BMP: `\\uXXXX` reads the same in ECMA-262 (the OpenAPI dialect, Swagger UI) and in
    Python's `re` (jsonschema, schemathesis), while characters beyond U+FFFF are spelled differently
    in each (`\\u{...}` with the `u` flag, `\\U...`), so the schema leaves those to the server."""
    parts, start = [], None
    for code in range(_BMP + 1):
        inside = code < _BMP and wanted(chr(code))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            end = code - 1
            parts.append(f"\\u{start:04x}" + (f"-\\u{end:04x}" if end > start else ""))
            start = None
    return "".join(parts)


@lru_cache(maxsize=1)
def name_pattern() -> str:
    """The OpenAPI `pattern` of a name: no refused character of the BMP anywhere, and at least one
    character that is neither refused nor white space (the server trims, then refuses an empty name).
    No look-ahead, which not every schema-driven generator reads. Built from this Python's Unicode
    tables, as `validate_name` checks with them."""
    refused = _class_ranges(lambda ch: unicodedata.category(ch) in REFUSED_NAME_CATEGORIES)
    space = _class_ranges(str.isspace)
    return f"^[^{refused}]*[^{refused}{space}][^{refused}]*$"


class JsonBodyAutoSchema(AutoSchema):
    """Documents request bodies as application/json: the parser reads JSON whatever the Content-Type
    (sharestore.api.parsers), but JSON is what clients should declare."""

    def map_parsers(self):
        return ["application/json"]

    def _insert_field_validators(self, field, schema):
        """Adds the constraints a field declares for the schema only (`volumes.api.fields.SchemaDeclared`):
        the ones the services enforce, which the field itself must not check (their error codes differ).
        A field that takes "" keeps drf-spectacular's blank alternative unless the service refuses ""."""
        extra = getattr(field, "schema", None) or {}
        blank_accepted = getattr(field, "schema_accepts_blank", True)
        if blank_accepted:
            schema.update(extra)
        super()._insert_field_validators(field, schema)
        if not blank_accepted:
            schema.update(extra)


class OwnerSchema(serializers.Serializer):
    """An entry's cluster and tenant (those of `SCOPE_KEYS` named in `owner_keys`, the UUIDs as such),
    before its own fields."""

    owner_keys = SCOPE_KEYS

    def get_fields(self):
        uuids = ("cluster_uuid", "tenant")
        owner = {
            k: serializers.UUIDField() if k in uuids else serializers.CharField() for k in self.owner_keys
        }
        return {**owner, **super().get_fields()}


class ScopeSchema(serializers.Serializer):
    """The scope keys closing a wrapper (`SCOPE_KEYS`), as strings ("" where none applies)."""

    def get_fields(self):
        return {**super().get_fields(), **{key: serializers.CharField() for key in SCOPE_KEYS}}


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


def named(serializer_class, component_name: str):
    """The request serializer under its own OpenAPI component name (nested classes are all 'Input')."""
    return extend_schema_serializer(component_name=component_name)(
        type(component_name, (serializer_class,), {"__module__": serializer_class.__module__})
    )


def request_schema(serializer_class, component_name: str, envelope, *statuses: int):
    """`extend_schema` of an endpoint that takes a JSON body: the body under `component_name`, the
    `envelope` answered on success, and the error answers of `statuses`."""
    return extend_schema(
        request=named(serializer_class, component_name),
        responses={200: envelope, **error_responses(*statuses)},
    )


CONTRACT_PREFIX = "/v1/volume/share/"
CONTRACT_EXAMPLES_FILE = Path(__file__).parent / "contract_examples.json"


def _contract_examples() -> dict:
    return json.loads(CONTRACT_EXAMPLES_FILE.read_text())


def contract_operation_ids(result, generator, request, public):
    """drf-spectacular post-processing hook: operation ids named after the contract's paths
    (`/v1/volume/share/snap_length/update` -> `volume_share_snap_length_update`, the method
    appended when a path has several), and the contract's request and answer examples."""
    examples = _contract_examples()
    for path, operations in result.get("paths", {}).items():
        methods = [m for m in operations if m in {"get", "post", "put", "patch", "delete"}]
        base = re.sub(r"[^0-9a-zA-Z]+", "_", path.strip("/").removeprefix("v1/")).strip("_")
        for method in methods:
            operation = operations[method]
            operation["operationId"] = base if len(methods) == 1 else f"{base}_{method}"
            if not path.startswith(CONTRACT_PREFIX):
                continue
            example = examples.get(path.removeprefix(CONTRACT_PREFIX))
            if not example or example.get("method", "POST").lower() != method:
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and example.get("request") is not None:
                body["examples"] = {
                    "contract": {"summary": "the contract's example", "value": example["request"]}
                }
            answer = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json")
            if answer is not None and example.get("response") is not None:
                answer["examples"] = {
                    "contract": {"summary": "the contract's example", "value": example["response"]}
                }
    return result
