"""Columns the console's model admins declare in one line each (the volumes and backups apps)."""

from __future__ import annotations

from django.contrib import admin


def count_column(description, annotation: str):
    """A column showing the count `get_queryset` annotates as `annotation` (`count_of`), sortable by it."""

    @admin.display(description=description, ordering=annotation)
    def column(model_admin, obj):
        return getattr(obj, annotation)

    return column


def form_only_column(description):
    """The read-only stand-in of a field only the form has (a confirmation, a password to remove): a
    viewer without the change permission sees "-"."""

    @admin.display(description=description)
    def column(model_admin, obj):
        return "-"

    return column
