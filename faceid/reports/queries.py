"""What the insight queries share: the failure reasons and their SQL conditions (mirroring
``faceid.store.summary.risk_flags``), the backlog buckets, the page filter ``InsightFilter``
and the SQL helpers every aggregate uses (UTC day, seconds between, conditional count)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, case, extract, func, or_
from sqlalchemy.sql.elements import ColumnElement

from faceid.core.errors import InsightsError
from faceid.store.summary import RISK_FLAGS
from faceid.store.tables import Decision, Verification

V = Verification.__table__.c
D = Decision.__table__.c

#: Why a verification counts as failed, in display order (codes are risk-flag names).
FAILURE_REASONS: dict[str, str] = {
    code: RISK_FLAGS[code]
    for code in ("status_not_ok", "liveness_fail", "verify_error", "compare_below_1e-3",
                 "genuineness", "face_replaced", "id_attacked", "multifaces")
}


def _nonempty(column: Any) -> ColumnElement[bool]:
    return and_(column.is_not(None), column != "")


#: The SQL condition for each failure reason (mirrors ``summary.risk_flags``).
REASON_SQL: dict[str, ColumnElement[bool]] = {
    "status_not_ok": func.coalesce(V.status, "") != "OK",
    "liveness_fail": V.liveness_result == "FAIL",
    "verify_error": _nonempty(V.verify_error),
    "compare_below_1e-3": V.faceid_band == "none",
    "genuineness": _nonempty(V.genuineness_exceeded),
    "face_replaced": V.face_replaced == 1,
    "id_attacked": V.id_attacked == 1,
    "multifaces": V.multifaces.is_(True),
}
FAILED: ColumnElement[bool] = or_(*REASON_SQL.values())

#: States in which a case is still waiting for a person.
OPEN_STATES = ("pending", "escalated")
#: Backlog age buckets: (label, lower bound). Ordered youngest first.
AGE_BUCKETS: tuple[tuple[str, timedelta], ...] = (
    ("< 1 h", timedelta(0)),
    ("1-4 h", timedelta(hours=1)),
    ("4-24 h", timedelta(hours=4)),
    ("1-3 d", timedelta(days=1)),
    ("3-7 d", timedelta(days=3)),
    ("> 7 d", timedelta(days=7)),
)
NO_PROCEDURE = "(none)"
COMPARE_MIN = 2
PAGE_SIZE_MAX = 500


@dataclass(frozen=True, slots=True)
class InsightFilter:
    """Filters shared by the audit and reports pages. None means 'any'."""

    date_from: date | None = None
    date_to: date | None = None  # inclusive
    procedure_type: str | None = None  # a procedure, or NO_PROCEDURE for "no liveness"
    reason: str | None = None  # a key of FAILURE_REASONS
    decision_state: str | None = None

    def validate(self) -> InsightFilter:
        if self.reason is not None and self.reason not in FAILURE_REASONS:
            raise InsightsError(f"Unknown failure reason {self.reason!r}.")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InsightsError("The 'from' date is after the 'to' date.")
        return self


def _day(column: Any, dialect: str) -> ColumnElement[str]:
    """UTC calendar day as 'YYYY-MM-DD' (a string on both databases)."""
    if dialect == "postgresql":
        # timestamptz::date would use the session time zone; pin UTC.
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


def _seconds_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[float]:
    if dialect == "postgresql":
        return extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _count_if(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)
