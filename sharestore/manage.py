"""The ``sharestore`` command (and ``manage.py``): Django's management utility for this project."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharestore.settings")
    from sharestore.instance import ensure_instance

    # The secret key file is created here, by the entry point, never by importing settings.
    ensure_instance()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
