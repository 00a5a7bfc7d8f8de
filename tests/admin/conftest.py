"""Fixtures of the console tests: users with and without the repair permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission


@pytest.fixture
def repair_user(db):
    """A staff user who holds only the repair permission (and may view volumes)."""
    user = get_user_model().objects.create_user("operator", password="operator-pw", is_staff=True)
    codenames = ["run_repairs", "view_volume", "view_pool"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="volumes", codename__in=codenames)
        | Permission.objects.filter(content_type__app_label="core", codename="view_operation")
    )
    return user


@pytest.fixture
def viewer_user(db):
    """A staff user who may look but not repair."""
    user = get_user_model().objects.create_user("viewer", password="viewer-pw", is_staff=True)
    codenames = ["view_volume", "view_pool"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="volumes", codename__in=codenames)
        | Permission.objects.filter(content_type__app_label="core", codename="view_operation")
    )
    return user


@pytest.fixture(autouse=True)
def site_language_afterwards():
    """LocaleMiddleware leaves the last request's language active in the thread: reset it, so a
    Chinese request here does not change what later tests see."""
    yield
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
