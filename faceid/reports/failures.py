"""The failed-verification audit (the audit page): ``FailureAudit``, the part of
``InsightsService`` that counts failed cases by reason and day, shows the values behind each
reason and pages through the failed cases (no personal data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from faceid.access.permissions import Permission
from faceid.core.timeutil import fmt
from faceid.reports.queries import (
    FAILED,
    FAILURE_REASONS,
    PAGE_SIZE_MAX,
    REASON_SQL,
    InsightFilter,
    V,
    _count_if,
    _day,
    _nonempty,
)
from faceid.review.case_sections import frame
from faceid.review.paging import RowsPage, page_count
from faceid.store.tables import Verification, case_time


@dataclass(frozen=True, slots=True)
class FailureSummary:
    total: int  # cases matching the filters (reason aside)
    failed: int
    #: reason, meaning, cases (a case with two reasons counts under both).
    by_reason: pd.DataFrame

    @property
    def failed_share(self) -> float:
        return self.failed / self.total if self.total else 0.0


#: One page of the failed-verification list.
FailedPage = RowsPage


class FailureAudit:
    """The failed-verification audit of ``InsightsService`` (mixed into it; the service provides
    ``engine``, ``_dialect``, ``_allow``, ``_where`` and ``_scalar_rows``)."""

    engine: Engine
    _dialect: str
    _allow: Callable[[Permission], None]
    _where: Callable[..., list[ColumnElement[bool]]]
    _scalar_rows: Callable[[Any], list[Any]]

    # ------------------------------------------------------------------ failed-verification audit

    def failure_summary(self, f: InsightFilter | None = None) -> FailureSummary:
        """Totals and counts by reason, in one scan (conditional sums)."""
        self._allow(Permission.VIEW_CASE)
        conds = self._where(f)
        stmt = select(func.count(), _count_if(FAILED),
                      *(_count_if(c) for c in REASON_SQL.values()))
        stmt = stmt.select_from(Verification.__table__).where(*conds)
        (row,) = self._scalar_rows(stmt)
        by_reason = frame([{"reason": code, "meaning": FAILURE_REASONS[code],
                             "cases": int(n)}
                            for code, n in zip(REASON_SQL, row[2:], strict=True)],
                           ["reason", "meaning", "cases"])
        return FailureSummary(int(row[0]), int(row[1]), by_reason)

    def failure_details(self, f: InsightFilter | None = None) -> pd.DataFrame:
        """The values behind the reasons: which status/fail_reason, which verify error, which
        fake-face signals (reason, value, cases)."""
        self._allow(Permission.VIEW_CASE)
        conds = self._where(f)
        status_value = V.status + case((_nonempty(V.fail_reason), " / " + V.fail_reason),
                                       else_="")
        groups: list[tuple[str, Any, ColumnElement[bool]]] = [
            ("status_not_ok", func.coalesce(status_value, "(no status)"),
             REASON_SQL["status_not_ok"]),
            ("verify_error", V.verify_error, REASON_SQL["verify_error"]),
            ("genuineness", V.genuineness_exceeded, REASON_SQL["genuineness"]),
        ]
        rows: list[dict[str, Any]] = []
        for code, value, cond in groups:
            stmt = (select(value.label("value"), func.count().label("n"))
                    .where(cond, *conds).group_by(value).order_by(func.count().desc(), value))
            rows += [{"reason": code, "value": v, "cases": int(n)}
                     for v, n in self._scalar_rows(stmt)]
        return frame(rows, ["reason", "value", "cases"])

    def failures_by_day(self, f: InsightFilter | None = None) -> pd.DataFrame:
        """Per UTC day: cases, failed, and each reason's count (day as a datetime)."""
        self._allow(Permission.VIEW_CASE)
        day = _day(case_time(), self._dialect).label("day")
        stmt = (select(day, func.count(), _count_if(FAILED),
                       *(_count_if(c) for c in REASON_SQL.values()))
                .where(*self._where(f)).group_by(day).order_by(day))
        cols = ["day", "cases", "failed", *REASON_SQL]
        df = frame([dict(zip(cols, r, strict=True)) for r in self._scalar_rows(stmt)], cols)
        df["day"] = pd.to_datetime(df["day"])
        return df

    def failed_cases(self, f: InsightFilter | None = None, page: int = 1,
                     page_size: int = 50) -> FailedPage:
        """One page of failed cases, newest first, for drill-down. No personal data."""
        self._allow(Permission.VIEW_CASE)
        page_size = max(1, min(int(page_size), PAGE_SIZE_MAX))
        conds = [FAILED, *self._where(f)]
        with self.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(Verification.__table__)
                                     .where(*conds)).scalar_one())
            page = max(1, min(int(page), page_count(total, page_size)))
            rows = conn.execute(
                select(V.biz_id, case_time().label("at"), V.status, V.fail_reason,
                       V.procedure_type, V.liveness_result, V.faceid_band, V.verify_error,
                       V.risk_flags, V.decision_state)
                .where(*conds).order_by(case_time().desc(), V.id.desc())
                .limit(page_size).offset((page - 1) * page_size)).all()
        cols = ["biz_id", "case time (UTC)", "status", "fail reason", "procedure",
                "liveness", "face-compare band", "verify error", "failure reasons",
                "review state"]
        out = [dict(zip(cols, [r.biz_id, fmt(r.at), r.status, r.fail_reason,
                               r.procedure_type, r.liveness_result, r.faceid_band,
                               r.verify_error,
                               ", ".join(x for x in (r.risk_flags or "").split(",")
                                         if x in FAILURE_REASONS),
                               r.decision_state], strict=True)) for r in rows]
        return FailedPage(frame(out, cols), [r.biz_id for r in rows], total, page, page_size)
