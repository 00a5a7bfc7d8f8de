"""FilterSets of the backups app, shared by the API selector and the admin."""

from datetime import UTC, datetime

import django_filters

from backups.models import Backup


class EpochFilter(django_filters.NumberFilter):
    """Epoch seconds compared with a datetime column."""

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        return super().filter(qs, datetime.fromtimestamp(int(value), tz=UTC))


class BackupFilterSet(django_filters.FilterSet):
    """Filters of the contract's backup list: name and description substrings, creation time range, volume."""

    filter_name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    filter_desc = django_filters.CharFilter(field_name="desc", lookup_expr="icontains")
    filter_start_time = EpochFilter(field_name="created", lookup_expr="gte")
    filter_end_time = EpochFilter(field_name="created", lookup_expr="lte")
    filter_volume_uuid = django_filters.UUIDFilter(field_name="volume_uuid")

    class Meta:
        model = Backup
        fields = ["filter_name", "filter_desc", "filter_start_time", "filter_end_time", "filter_volume_uuid"]
