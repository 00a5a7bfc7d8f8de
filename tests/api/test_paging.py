"""The list endpoints' paging rule (`sharestore.api.paging.page_window`)."""

import pytest
from django.test import override_settings

from sharestore import errors
from sharestore.api.paging import page_window


@override_settings(SHARESTORE_MAX_PAGE_SIZE=50)
def test_page_window_counts_pages_from_one_and_size_zero_means_the_maximum():
    assert page_window(page_num=0, page_size=0) == (50, 0)
    assert page_window(page_num=1, page_size=10) == (10, 0)
    assert page_window(page_num=3, page_size=10) == (10, 20)


@override_settings(SHARESTORE_MAX_PAGE_SIZE=50)
def test_page_window_refuses_a_page_larger_than_the_maximum():
    with pytest.raises(errors.PageSizeTooLarge):
        page_window(page_num=1, page_size=51)
