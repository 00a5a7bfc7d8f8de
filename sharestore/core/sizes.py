"""Sizes as operators type them: `500G`, `2T`, `1.5TiB`, `1024` (plain bytes). The one parser behind
the console's capacity fields and the commands' `--capacity` options (binary multiples, as capacities
are shown)."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?b?)\s*$", re.I)
_UNITS = " kmgtpe"
# A BigIntegerField column holds sizes up to this.
MAX_SIZE = (1 << 63) - 1


class SizeError(ValueError):
    """Text that is not a size (the message says why, in English)."""


def parse_size(text) -> int:
    """'1099511627776', '500G', '2T', '1.5TiB', '1.5t', '512MiB', '100B' -> bytes (K, M, G, T, P, E are
    binary multiples; 'i' and 'B' are optional). Refused: no number, an unknown unit, a fraction of a
    byte, a negative or an out-of-range size."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise SizeError(
            f"invalid size {text!r}: use bytes or a number with K, M, G, T or P (e.g. 500G, 1.5TiB)"
        )
    number, unit = Decimal(match.group(1)), match.group(2).lower()
    value = number * (1 << (10 * _UNITS.index(unit or " ")))
    if value != value.to_integral_value():
        if not unit:
            raise SizeError(f"invalid size {text!r}: bytes are whole numbers")
        value = value.to_integral_value(rounding="ROUND_FLOOR")
    if value > MAX_SIZE:
        raise SizeError(f"invalid size {text!r}: larger than {MAX_SIZE} bytes")
    return int(value)


def size_text(value) -> str:
    """Bytes as the shortest exact text `parse_size` reads back: 2199023255552 -> '2TiB', 1000 -> '1000'."""
    if value is None or value == "":
        return ""
    value = int(value)
    for power in range(len(_UNITS) - 1, 0, -1):
        unit = 1 << (10 * power)
        if value and value % unit == 0:
            return f"{value // unit}{_UNITS[power].upper()}iB"
    return str(value)


class SizeField(forms.CharField):
    """A capacity typed as `500G`, `2T`, `1.5TiB` or plain bytes; cleaned to an int of bytes."""

    default_error_messages = {
        "invalid_size": gettext_lazy(
            "Enter a size in bytes or with a unit: 500G, 2T, 1.5TiB (K, M, G, T, P are multiples of 1024)."
        ),
    }

    def __init__(self, *args, **kwargs):
        kwargs.pop("max_length", None)
        kwargs.setdefault("help_text", gettext_lazy("Bytes, or a number with a unit: 500G, 2T, 1.5TiB."))
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return size_text(value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return parse_size(value)
        except SizeError:
            raise ValidationError(self.error_messages["invalid_size"], code="invalid_size") from None

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (None if initial in self.empty_values else int(initial))
        except (ValidationError, TypeError, ValueError):
            return True
