"""The read quota of one biz_id, as the ``fetch_attempts`` ledger shows it.

FaceID keeps a result for 1 day and lets it be read 3 times; which ledger rows count as a read
(``attempt_spent``), when the window closes (``biz_id_started``) and what is left
(``QuotaInfo``, ``quota_of``). Pure: no database, no requests. The ledger itself is
``faceid.store.ledger``; the fetch that spends the reads, ``faceid.store.fetching``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faceid.core.errors import DataDestroyed
from faceid.core.timeutil import as_utc, fmt, from_unix

MAX_READS = 3
WINDOW = timedelta(days=1)
#: Ledger outcomes that cannot have counted a read: FaceID refused before reading (4xx), or the
#: request never left (network). Anything else, including NULL (in flight or crashed), is spent.
_FREE_OUTCOMES = frozenset({"CONCURRENCY_LIMIT_EXCEEDED", "NETWORK_ERROR"})
_SPENT_OUTCOMES = frozenset({"OK", "INTERNAL_ERROR", "AMBIGUOUS_TRANSPORT"})


def attempt_spent(outcome: str | None, http_status: int | None) -> bool:
    """Whether a ledger row may have used one of the 3 reads (see the module docstring)."""
    if outcome is None or outcome in _SPENT_OUTCOMES:
        return True
    if outcome in _FREE_OUTCOMES:
        return False
    # Unknown codes: a 5xx may have been counted, a 4xx refusal was not.
    return http_status is None or http_status >= 500


def biz_id_started(biz_id: str) -> datetime | None:
    """The unix time that starts a biz_id ("1462259748,52b1..."), if it has a plausible one."""
    head, sep, _ = biz_id.partition(",")
    if not sep or not head.isdigit() or not 9 <= len(head) <= 11:
        return None
    return from_unix(int(head))


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    """What the ledger says about one biz_id's remaining reads."""

    biz_id: str
    reads_used: int
    attempts: int
    #: When FaceID drops the result (biz_id time + 1 day, else first attempt + 1 day).
    deadline: datetime | None
    known_destroyed: bool
    now: datetime

    @property
    def reads_left(self) -> int:
        return max(0, MAX_READS - self.reads_used)

    @property
    def window_open(self) -> bool:
        return self.deadline is None or self.now < self.deadline

    @property
    def can_read(self) -> bool:
        return self.reads_left > 0 and self.window_open and not self.known_destroyed

    @property
    def first_fetch_allowed(self) -> bool:
        """What ``fetch`` requires of a biz_id not yet stored: the ledger shows a read left.
        A window our clock says is closed does not stop it (an estimate; a late read costs
        nothing), unlike a refetch, which needs ``can_read``."""
        return self.reads_left > 0 and not self.known_destroyed

    def describe(self) -> str:
        if self.known_destroyed:
            return "No reads left: FaceID said this result is destroyed (DATA_DESTROYED)."
        if not self.reads_left:
            return f"No reads left: all {MAX_READS} reads of this result have been used."
        if not self.window_open:
            return f"No reads left: FaceID's 1-day window closed at {fmt(self.deadline)}."
        plural = "read" if self.reads_left == 1 else "reads"
        until = f"until {fmt(self.deadline)}" if self.deadline else "(deadline unknown)"
        return f"{self.reads_left} {plural} left {until}."


def quota_of(biz_id: str, rows: Sequence[Any], now: datetime) -> QuotaInfo:
    """The quota from a biz_id's ledger rows (outcome, http_status, started_at), in order."""
    used = sum(attempt_spent(o, h) for o, h, _ in rows)
    start = biz_id_started(biz_id)
    if start is None and rows:
        start = as_utc(rows[0][2])
    return QuotaInfo(
        biz_id=biz_id, reads_used=used, attempts=len(rows),
        deadline=start + WINDOW if start else None,
        known_destroyed=any(o == DataDestroyed.code for o, _, _ in rows),
        now=now,
    )


__all__ = ["MAX_READS", "WINDOW", "QuotaInfo", "attempt_spent", "biz_id_started", "quota_of"]
