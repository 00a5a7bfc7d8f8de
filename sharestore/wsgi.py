"""WSGI entry point (gunicorn sharestore.wsgi)."""

import os

from sharestore.instance import ensure_instance

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
ensure_instance()

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
