"""The paging rule of the list endpoints (volume list, backup list)."""

from __future__ import annotations

from django.conf import settings

from sharestore import errors


def page_window(*, page_num: int, page_size: int) -> tuple[int, int]:
    """(limit, offset) of a page. page_size 0 (the contract's default) asks for no paging: the first
    SHARESTORE_MAX_PAGE_SIZE rows; a larger page_size is refused. Pages count from 1; the contract's
    default 0 means the first page too."""
    maximum = settings.SHARESTORE_MAX_PAGE_SIZE
    if page_size > maximum:
        raise errors.PageSizeTooLarge(page_size=page_size, maximum=maximum)
    limit = page_size or maximum
    return limit, (max(page_num, 1) - 1) * limit
