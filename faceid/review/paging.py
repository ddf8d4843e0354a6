"""Server-side paging arithmetic shared by the queue, the audit list and the compare picker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` rows; at least 1, so an empty result still has a page 1."""
    return max(1, -(-total // page_size))


@dataclass(frozen=True, slots=True)
class RowsPage:
    """One page of a server-side paged table: the review queue, the failed-verification list."""

    rows: Any  # a pandas DataFrame (built by the service; pandas is not needed here)
    #: biz_id of each row, in row order (st.dataframe selections are positional).
    biz_ids: list[str]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return page_count(self.total, self.page_size)
