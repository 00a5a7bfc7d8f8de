"""Model field factories: each recurring kind of column declared once, so that a model states only
what is its own (the column's name, its words, what it links to).

Every factory returns a plain Django field with the options it always had: migrations see the same
fields (`makemigrations --check` stays quiet). Options a factory does not fix (`help_text`,
`editable`, `db_index`, ...) pass through as keyword arguments.
"""

from __future__ import annotations

import uuid as uuid_lib

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = [
    "PATH_MAX_LENGTH",
    "uuid_field",
    "name_field",
    "desc_field",
    "created_field",
    "modified_field",
    "optional_datetime",
    "optional_char",
    "optional_text",
    "path_field",
    "capacity_field",
    "byte_count",
    "json_map",
    "choice_field",
    "protected_fk",
    "cascade_fk",
    "set_null_fk",
]

# Room for an absolute directory (or an export path) on any filesystem a pool or backup point sits on.
PATH_MAX_LENGTH = 1024


def uuid_field() -> models.UUIDField:
    """The identity the API names a row by: random, unique, never edited."""
    return models.UUIDField(unique=True, default=uuid_lib.uuid4, editable=False, verbose_name=_("uuid"))


def name_field() -> models.CharField:
    """The name a row is shown and looked up by."""
    return models.CharField(max_length=128, verbose_name=_("name"))


def desc_field() -> models.CharField:
    """A row's optional free-text description (the contract's desc)."""
    return optional_char(1024, _("desc"))


def created_field(*, editable: bool = False, **extra) -> models.DateTimeField:
    """When the row was created."""
    return models.DateTimeField(default=timezone.now, editable=editable, verbose_name=_("created"), **extra)


def modified_field(*, editable: bool = True) -> models.DateTimeField:
    """When the row last changed (the services set it; the console may too where `editable`)."""
    return models.DateTimeField(default=timezone.now, editable=editable, verbose_name=_("modified"))


def optional_datetime(verbose_name, **extra) -> models.DateTimeField:
    """A moment that may not have come yet (empty: not yet, or never)."""
    return models.DateTimeField(null=True, blank=True, verbose_name=verbose_name, **extra)


def optional_char(max_length: int, verbose_name, **extra) -> models.CharField:
    """A short text that may be empty (stored as "", never null)."""
    return models.CharField(max_length=max_length, blank=True, default="", verbose_name=verbose_name, **extra)


def optional_text(verbose_name, **extra) -> models.TextField:
    """A long text that may be empty (stored as "", never null)."""
    return models.TextField(blank=True, default="", verbose_name=verbose_name, **extra)


def path_field(verbose_name, *, optional: bool = False, **extra) -> models.CharField:
    """A directory or file path; `optional`: may be empty."""
    if optional:
        return optional_char(PATH_MAX_LENGTH, verbose_name, **extra)
    return models.CharField(max_length=PATH_MAX_LENGTH, verbose_name=verbose_name, **extra)


def capacity_field(help_text) -> models.BigIntegerField:
    """A size in bytes that the row offers or promises (a pool's, a backup point's, a volume's)."""
    return models.BigIntegerField(help_text=help_text, verbose_name=_("capacity"))


def byte_count(verbose_name, **extra) -> models.BigIntegerField:
    """A number of bytes measured or counted, 0 until it is."""
    return models.BigIntegerField(default=0, verbose_name=verbose_name, **extra)


def json_map(verbose_name, **extra) -> models.JSONField:
    """A JSON object (parameters, a map as sent), empty by default."""
    return models.JSONField(default=dict, blank=True, verbose_name=verbose_name, **extra)


def choice_field(
    enum: type[models.TextChoices], verbose_name, *, max_length: int = 16, **extra
) -> models.CharField:
    """A column holding one value of `enum`; 16 characters hold every status, type and driver value."""
    return models.CharField(max_length=max_length, choices=enum.choices, verbose_name=verbose_name, **extra)


def protected_fk(
    to, related_name: str, verbose_name, *, optional: bool = False, **extra
) -> models.ForeignKey:
    """A link whose target cannot be deleted while rows point at it; `optional`: may be empty."""
    return _foreign_key(to, models.PROTECT, related_name, verbose_name, optional=optional, **extra)


def cascade_fk(to, related_name: str, verbose_name, *, optional: bool = False, **extra) -> models.ForeignKey:
    """A link to the row this one belongs to: deleted with it; `optional`: may be empty."""
    return _foreign_key(to, models.CASCADE, related_name, verbose_name, optional=optional, **extra)


def set_null_fk(to, related_name: str, verbose_name, **extra) -> models.ForeignKey:
    """A link the row outlives: deleting the target empties it and keeps the row."""
    return _foreign_key(to, models.SET_NULL, related_name, verbose_name, optional=True, **extra)


def _foreign_key(
    to, on_delete, related_name: str, verbose_name, *, optional: bool, **extra
) -> models.ForeignKey:
    if optional:
        extra.update(null=True, blank=True)
    return models.ForeignKey(
        to, on_delete=on_delete, related_name=related_name, verbose_name=verbose_name, **extra
    )
