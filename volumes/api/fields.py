"""Serializer fields that accept only the JSON type the contract documents (no "1" for 1, no 1 for true)."""

from django.conf import settings
from rest_framework import serializers

from sharestore.api.schema import name_pattern
from volumes.services.volumes import DESC_MAX_LENGTH

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The highest page number a list takes: (page_num - 1) x page_size is the database's offset, a
# signed 64-bit integer; 2**31 - 1 pages of at most SHARESTORE_MAX_PAGE_SIZE rows stay far inside it.
MAX_PAGE_NUM = 2**31 - 1

UUID_SCHEMA = {"format": "uuid"}


class SchemaDeclared:
    """`schema=`: OpenAPI keywords added to the field's schema only (sharestore.api.schema.JsonBodyAutoSchema),
    for constraints a service enforces with its own error code, so the field must not check them."""

    # False where DRF takes "" but the service refuses it (names): the schema then has no blank alternative.
    schema_accepts_blank = True

    def __init__(self, *args, schema=None, **kwargs):
        self.schema = dict(schema or {})
        super().__init__(*args, **kwargs)


def name_schema() -> dict:
    """What `volumes.services.volumes.validate_name` accepts."""
    return {
        "minLength": 1,
        "maxLength": settings.SHARESTORE_NAME_MAX_LENGTH,
        # The BMP's control, format, surrogate and private-use characters, and a blank name.
        "pattern": name_pattern(),
        "description": (
            f"1-{settings.SHARESTORE_NAME_MAX_LENGTH} characters after trimming surrounding spaces; "
            "no control, format, surrogate or private-use characters (docs/api.md: what the server "
            "checks beyond this schema)"
        ),
    }


class StrictIntegerField(SchemaDeclared, serializers.IntegerField):
    """A JSON integer within the database's signed 64 bits; strings, booleans and numbers written
    with a fraction or exponent (`1.0`, `1e308`) are refused."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", INT64_MIN)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(SchemaDeclared, serializers.BooleanField):
    """A JSON boolean."""

    default_error_messages = {"invalid": "A JSON boolean (true or false) is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(SchemaDeclared, serializers.CharField):
    """A JSON string."""

    default_error_messages = {"invalid": "A JSON string is required."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NameField(StrictCharField):
    """A name as the client sent it: blanks and surrounding spaces are kept for the service to judge.

    The one name rule (length up to SHARESTORE_NAME_MAX_LENGTH, no control characters) is
    `volumes.services.volumes.validate_name`, which every service applies; checking a length here
    too would answer a different error code for the same bad name. The schema declares that rule.
    """

    schema_accepts_blank = False

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("schema", name_schema())
        super().__init__(**kwargs)


class DescField(StrictCharField):
    """An optional description, kept as sent ("" or null: none); its length is the service's to check
    (`validate_desc`), the schema declares it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("default", "")
        kwargs.setdefault("schema", {"maxLength": DESC_MAX_LENGTH})
        super().__init__(**kwargs)


class StrictUUIDField(SchemaDeclared, serializers.UUIDField):
    """A UUID written as a JSON string (DRF would also take an integer)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class OptionalUUIDField(StrictCharField):
    """A UUID filter: "" (the default) means no filter; the view checks the UUID itself."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("schema", {**UUID_SCHEMA, "description": 'a UUID; "" or absent: no filter'})
        super().__init__(**kwargs)
