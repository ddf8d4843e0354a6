"""Server-side paging arithmetic shared by the queue, the audit list and the compare picker."""

from __future__ import annotations


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` rows; at least 1, so an empty result still has a page 1."""
    return max(1, -(-total // page_size))
