"""manage.py ensure_demo_superuser: the console's demo login (admin / admin), created once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser admin/admin if it does not exist, and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, **options):
        User = get_user_model()
        if not User.objects.filter(username=options["username"]).exists():
            User.objects.create_superuser(options["username"], "", options["password"])
        self.stdout.write(
            f"  console: {options['base_url']}/admin/  "
            f"(user {options['username']}, password {options['password']}; demo only)\n"
        )
