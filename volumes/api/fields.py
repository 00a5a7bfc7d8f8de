"""Serializer fields that accept only the JSON type the contract documents (no "1" for 1, no 1 for true)."""

from rest_framework import serializers

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class StrictIntegerField(serializers.IntegerField):
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


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean."""

    default_error_messages = {"invalid": "A JSON boolean (true or false) is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
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
    too would answer a different error code for the same bad name.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class StrictUUIDField(serializers.UUIDField):
    """A UUID written as a JSON string (DRF would also take an integer)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)
