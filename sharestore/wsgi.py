"""WSGI entry point (gunicorn sharestore.wsgi)."""

import os

from sharestore.instance import ensure_instance

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
ensure_instance()

# After ensure_instance(): loading Django reads the settings, which need the secret key file.
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
