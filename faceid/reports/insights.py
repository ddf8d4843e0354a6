"""Audit of failed verifications, metrics, case comparison: the service behind the audit,
reports and compare pages (``InsightsService``). The failed-verification audit lives in
``faceid.reports.failures``, the comparison in ``faceid.reports.compare``, what they share in
``faceid.reports.queries``; the metrics and the export facade are here.

Every aggregate is computed by the database (GROUP BY, conditional sums, ORDER BY/OFFSET for
percentiles) and comes back as a small pandas DataFrame; no method loads the verification table
into Python, so the pages cost the same at 100k cases as at 100 (see ``bench/export_speed.py``).

Definitions used everywhere here:

- **case time** = ``verified_at`` (FaceID's verify_time), else ``stored_at`` for results without
  one (the review queue uses the same rule). Date filters and "by day" are UTC days of it.
- **failed** = the verification did not end well for at least one of ``FAILURE_REASONS``. The
  SQL conditions are the ones ``faceid.store.summary.risk_flags`` applies when a result is
  stored, so a case's reasons can be read back from its ``risk_flags`` (a test holds the two
  together).
- **pass rate** = share of cases that are not failed.
- **backlog** = cases still waiting for a person (``pending`` or ``escalated``), aged from when
  the desk stored them.

Names and ID numbers are always masked here (the case page has the audited reveal); the
"same ID number under another name" check (``faceid.review.linking``, shared with the queue and
the case page) compares clear names inside the service and returns only the verdict.

Permissions (``faceid.access.permissions.GRANTS``): the dashboard hands each page a service
*bound* to the signed-in actor (``for_actor``), and every public method of a bound service
checks ``require`` first: ``view_case`` for the failed-verification audit and compare (its
picker, linked cases), ``export`` for the reports (reviewer statistics, backlog: a bulk view of
the desk) and the CSV export (``export_unmasked`` is then enforced, and audited, by
``faceid.reports.export``). An unbound service (``InsightsService(engine)``) has no user: it is
for in-process callers that already hold the database (CLI, benchmarks, unit tests) and is
never given to a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

import pandas as pd
from sqlalchemy import Engine, case, func, literal, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied, require
from faceid.core.errors import DocumentError, FaceIDError, InsightsError  # noqa: F401
from faceid.core.timeutil import utcnow, within_days
from faceid.reports import export
from faceid.reports.compare import CaseComparison
from faceid.reports.failures import FailureAudit
from faceid.reports.queries import (
    AGE_BUCKETS,
    FAILED,
    NO_PROCEDURE,
    OPEN_STATES,
    REASON_SQL,
    D,
    InsightFilter,
    V,
    _count_if,
    _day,
    _seconds_between,
)
from faceid.review.case_sections import frame
from faceid.store.tables import Verification, case_time

# --------------------------------------------------------------------------- inputs / outputs


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Time from verification to the first decision on a case (seconds)."""

    decided: int
    p50_s: float | None
    p95_s: float | None

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"measure": name, "seconds": value,
              "hours": None if value is None else round(value / 3600, 2)}
             for name, value in (("median (p50)", self.p50_s), ("p95", self.p95_s))],
            columns=["measure", "seconds", "hours"])


# --------------------------------------------------------------------------- the service


class InsightsService(FailureAudit, CaseComparison):
    """Audit, metrics and comparison queries, plus the governed CSV export for the pages."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow,
                 actor: Actor | None = None) -> None:
        self.engine = engine
        self._now = clock
        self._dialect = engine.dialect.name
        #: The signed-in user this instance serves (see ``for_actor`` and the module doc).
        self.actor = actor
        self._bound = False

    def for_actor(self, actor: Actor | None) -> InsightsService:
        """A view of this service for one signed-in user: every call checks that user's role.

        ``None`` (nobody signed in) gives a service that refuses everything.
        """
        bound = InsightsService(self.engine, clock=self._now, actor=actor)
        bound._bound = True
        return bound

    def _allow(self, permission: Permission) -> None:
        # A bound service always checks, even for a None actor (fail closed); only an
        # explicitly unbound one (CLI/tests) skips the check.
        if self._bound:
            require(self.actor, permission)

    # ------------------------------------------------------------------ filters

    def _where(self, f: InsightFilter | None, *,
               reason: bool = True) -> list[ColumnElement[bool]]:
        f = (f or InsightFilter()).validate()
        conds: list[ColumnElement[bool]] = within_days(case_time(), f.date_from, f.date_to)
        if f.procedure_type == NO_PROCEDURE:
            conds.append(V.procedure_type.is_(None))
        elif f.procedure_type:
            conds.append(V.procedure_type == f.procedure_type)
        if f.decision_state:
            conds.append(V.decision_state == f.decision_state)
        if reason and f.reason:
            conds.append(REASON_SQL[f.reason])
        return conds

    def _scalar_rows(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).all())

    # ------------------------------------------------------------------ metrics

    def pass_rate(self, f: InsightFilter | None = None) -> pd.DataFrame:
        """Per UTC day and procedure: cases, passed, pass_rate (0..1). Long form."""
        self._allow(Permission.EXPORT)
        day = _day(case_time(), self._dialect).label("day")
        proc = func.coalesce(V.procedure_type, NO_PROCEDURE).label("procedure_type")
        # passed = cases - failed, not a count of NOT failed: with NULL columns (no liveness, no
        # compare) NOT (... OR NULL) is NULL, and such a case would count as neither.
        stmt = (select(day, proc, func.count(), _count_if(FAILED))
                .where(*self._where(f, reason=False)).group_by(day, proc).order_by(day, proc))
        rows = [{"day": d, "procedure_type": p, "cases": int(n), "passed": int(n) - int(bad),
                 "pass_rate": round((int(n) - int(bad)) / int(n), 4) if n else None}
                for d, p, n, bad in self._scalar_rows(stmt)]
        df = frame(rows, ["day", "procedure_type", "cases", "passed", "pass_rate"])
        df["day"] = pd.to_datetime(df["day"])
        return df

    def decisions_by_reviewer(self, date_from: date | None = None,
                              date_to: date | None = None) -> pd.DataFrame:
        """Every decision (not only the latest) by reviewer and outcome, in a decision-time
        range: reviewer, outcome, decisions."""
        self._allow(Permission.EXPORT)
        conds: list[ColumnElement[bool]] = within_days(D.decided_at, date_from, date_to)
        stmt = (select(D.actor, D.outcome, func.count()).where(*conds)
                .group_by(D.actor, D.outcome).order_by(D.actor, D.outcome))
        return frame([{"reviewer": a, "outcome": o, "decisions": int(n)}
                       for a, o, n in self._scalar_rows(stmt)],
                      ["reviewer", "outcome", "decisions"])

    def decision_latency(self, f: InsightFilter | None = None) -> LatencyStats:
        """p50/p95 of case time -> first decision, nearest-rank, computed by the database
        (count, then ORDER BY .. LIMIT 1 OFFSET k: portable, nothing fetched but 3 numbers)."""
        self._allow(Permission.EXPORT)
        first = (select(D.verification_id.label("vid"), func.min(D.decided_at).label("first"))
                 .group_by(D.verification_id).subquery("first_decision"))
        delta = _seconds_between(first.c.first, case_time(), self._dialect).label("s")
        base = (select(delta).select_from(Verification.__table__.join(
            first, first.c.vid == V.id)).where(*self._where(f)))
        with self.engine.connect() as conn:
            n = int(conn.execute(select(func.count()).select_from(base.subquery()))
                    .scalar_one())
            if n == 0:
                return LatencyStats(0, None, None)

            def pct(p: float) -> float | None:
                k = max(0, math.ceil(p * n) - 1)
                value = conn.execute(base.order_by(delta).limit(1).offset(k)).scalar()
                # SQLite's julianday arithmetic is off by microseconds: report milliseconds.
                return None if value is None else round(float(value), 3)

            return LatencyStats(n, pct(0.50), pct(0.95))

    def backlog(self) -> pd.DataFrame:
        """Open cases by age bucket and state (every bucket listed, zeros included)."""
        self._allow(Permission.EXPORT)
        now = self._now()
        # Youngest first, each bucket's upper bound being the next one's lower bound (a CASE
        # takes the first match); whatever is older than the last bound is the last bucket.
        whens = [(V.stored_at > now - upper, label)
                 for (label, _), (_, upper) in zip(AGE_BUCKETS, AGE_BUCKETS[1:], strict=False)]
        bucket = case(*whens, else_=literal(AGE_BUCKETS[-1][0])).label("age")
        stmt = (select(bucket, V.decision_state, func.count())
                .where(col(V.decision_state).in_(OPEN_STATES))
                .group_by(bucket, V.decision_state))
        counts = {(a, s): int(n) for a, s, n in self._scalar_rows(stmt)}
        rows = [{"age": label, "state": state, "cases": counts.get((label, state), 0)}
                for label, _ in AGE_BUCKETS for state in OPEN_STATES]
        df = frame(rows, ["age", "state", "cases"])
        # A categorical keeps the buckets in age order in charts and downloads.
        df["age"] = pd.Categorical(df["age"], [b for b, _ in AGE_BUCKETS], ordered=True)
        return df

    # ------------------------------------------------------------------ export (facade)

    def _allow_export(self, actor: Actor) -> None:
        self._allow(Permission.EXPORT)
        # The named actor is who the export is recorded under: it must be the bound one (a
        # page cannot export "as" someone else) and hold the permission itself.
        if self._bound and actor != self.actor:
            raise PermissionDenied("An export is made as the signed-in user only.",
                                   permission=Permission.EXPORT.value, role=actor.role)
        require(actor, Permission.EXPORT)

    def export_csv(self, out: IO[bytes], filters: export.ExportFilter | None, actor: Actor, *,
                   unmasked: bool = False) -> export.ExportReport:
        """Masked export for ``export`` roles; ``unmasked`` is checked (and a refusal audited)
        by ``faceid.reports.export`` against ``export_unmasked``."""
        self._allow_export(actor)
        return export.export_csv(self.engine, out, filters, actor, unmasked=unmasked)

    def export_bytes(self, filters: export.ExportFilter | None, actor: Actor, *,
                     unmasked: bool = False) -> bytes:
        self._allow_export(actor)
        return export.export_bytes(self.engine, filters, actor, unmasked=unmasked)

    def export_count(self, filters: export.ExportFilter | None, actor: Actor) -> int:
        """Rows the export would hold (no audit event: nothing leaves the desk)."""
        self._allow_export(actor)
        return export.count_rows(self.engine, filters)

    def may_export_unmasked(self, actor: Actor) -> bool:
        """A question, not an operation: whether to offer the unmasked option."""
        return actor.can(Permission.EXPORT_UNMASKED) and export.may_export_unmasked(actor)


