"""FilterSets shared by the API selectors and the admin."""

import django_filters

from volumes.models import Volume


class VolumeFilterSet(django_filters.FilterSet):
    """Filters of the contract's volume list: pool UUID and a name substring."""

    filter_pool_uuid = django_filters.UUIDFilter(field_name="pool__uuid")
    filter_name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Volume
        fields = ["filter_pool_uuid", "filter_name"]
