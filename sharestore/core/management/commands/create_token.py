"""manage.py create_token: issue an API token (printed once; only its hash is stored)."""

import json

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError

from sharestore.core.models import ApiToken
from sharestore.core.services.tokens import token_create


class Command(BaseCommand):
    help = "Issue an API token. Without --tenant it is a platform token that may act for any tenant."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--tenant", help="tenant UUID the token is bound to")
        parser.add_argument(
            "--replace", action="store_true", help="revoke live tokens with the same name first"
        )
        parser.add_argument("--print-banner", action="store_true", help="print how to call the API with it")
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where the API listens, for the banner"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        tenant = None
        if options["tenant"]:
            # Tenants are the volumes app's: reached through the app registry, as the FK names them.
            tenant = apps.get_model("volumes", "Tenant").objects.filter(uuid=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"tenant {options['tenant']} not found")
        if options["replace"] or options["print_banner"]:
            from django.utils import timezone

            ApiToken.objects.filter(name=options["name"], revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
        token, key = token_create(name=options["name"], tenant=tenant)
        if options["json"]:
            self.stdout.write(json.dumps({"name": token.name, "key": key, "tenant": options["tenant"]}))
        elif options["print_banner"]:
            self.stdout.write(
                "\n"
                f"  API token ({token.name}, platform): {key}\n"
                f"  try: curl -s -H 'Authorization: Token {key}' -H 'Content-Type: application/json' \\\n"
                '        -d \'{"tenant":"fab210d2-b9b8-4b0b-bd61-50812ce3d4d0",'
                '"cluster_uuid":"a97eb422-f42b-4b85-8556-725f152661f0","page_size":10}\' \\\n'
                f"        {options['base_url']}/v1/volume/share/list\n"
            )
        else:
            self.stdout.write(key)
