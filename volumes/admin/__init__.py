"""The operator console of the volumes app: topology and tenancy, pools (usage bars, add/edit,
reconcile), volumes (the per-volume page and its repairs) and snapshots.

Each repair screen shows a dry-run preview first and applies only on an explicit POST; each is one
call into `volumes.services.repair`. Only superusers and holders of `volumes.run_repairs` may run
them. Changelists fetch related rows with `list_select_related` and counts with subqueries, so
they render in a constant number of queries. The shared toolkit is `sharestore.core.console`.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from volumes.admin import pools, quotas, topology, volumes  # noqa: F401 - each module registers its admins

admin.site.site_header = _("sharestore console")
admin.site.site_title = _("sharestore console")
admin.site.index_title = _("Storage operations")
# The service has no public site of its own (the API answers JSON): no "View site" link.
admin.site.site_url = None
