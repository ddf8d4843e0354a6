"""Audit of failed verifications, metrics, case comparison: the service behind the audit,
reports and compare pages.

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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any

import pandas as pd
from sqlalchemy import Engine, and_, case, extract, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied, require
from faceid.api import vocab
from faceid.api.model import GetResult
from faceid.api.parse import parse_document
from faceid.core.errors import DocumentError, FaceIDError, InsightsError  # noqa: F401
from faceid.core.timeutil import fmt, utcnow, within_days
from faceid.reports import export
from faceid.review import linking
from faceid.review import search as search_rule  # `search` is case_options' parameter
from faceid.review.case_sections import frame
from faceid.review.linking import COMPARE_MAX, LINKED_MAX, LinkedCases  # noqa: F401 - re-exported
from faceid.review.paging import RowsPage, page_count
from faceid.store.summary import RISK_FLAGS
from faceid.store.tables import Decision, RawResponse, StoredImage, Verification, case_time

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


# --------------------------------------------------------------------------- inputs / outputs


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


@dataclass(frozen=True, slots=True)
class CompareView:
    #: section, field, one column per case label, differs.
    table: pd.DataFrame
    labels: list[str]  # "Case 1".."Case n", the table's case columns
    biz_ids: list[str]  # same order as labels
    #: biz_id -> JPEG bytes of the best frame (front selfie for selfie flows), or None.
    frames: dict[str, bytes | None]

    def only_differences(self) -> pd.DataFrame:
        return self.table[self.table["differs"]].reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class CaseOptions:
    """One page of cases for the compare page's picker, plus the cases it must keep."""

    #: The kept biz_ids first (what is already picked), then this page's matches; no repeats.
    biz_ids: list[str]
    #: biz_id -> "biz_id · case time · status" (a stable label: no review state, no name).
    labels: dict[str, str]
    #: Cases matching the search (all pages).
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return page_count(self.total, self.page_size)


# --------------------------------------------------------------------------- SQL helpers


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


def _parse(body: str | None) -> GetResult | None:
    if not body:
        return None
    try:
        raw = json.loads(body)
        # Images are elided ("sha256:..") in the stored body; the parser would only flag them.
        return parse_document({k: v for k, v in raw.items()
                               if k not in ("images", "multifaces_image")})
    except (DocumentError, ValueError):
        return None


def _fmt_num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- the service


class InsightsService:
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

    # ------------------------------------------------------------------ compare

    def compare(self, biz_ids: Sequence[str]) -> CompareView:
        """2-4 cases side by side, one row per attribute, with a 'differs' marker."""
        self._allow(Permission.VIEW_CASE)
        ids = list(dict.fromkeys(b.strip() for b in biz_ids if b and b.strip()))
        if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
            raise InsightsError(f"Pick {COMPARE_MIN} to {COMPARE_MAX} different cases to "
                                "compare.")
        with Session(self.engine) as s:
            found = {v.biz_id: v for v in s.execute(
                select(Verification).where(col(Verification.biz_id).in_(ids))).scalars()}
            missing = [b for b in ids if b not in found]
            if missing:
                raise InsightsError(f"{len(missing)} of the cases are not stored.")
            vids = [found[b].id for b in ids]
            bodies = dict(s.execute(select(RawResponse.verification_id, RawResponse.body)
                                    .where(col(RawResponse.verification_id).in_(vids))).all())
            decisions: dict[int, list[Decision]] = {}
            for d in s.execute(select(Decision).where(col(Decision.verification_id).in_(vids))
                               .order_by(col(Decision.id))).scalars():
                decisions.setdefault(d.verification_id, []).append(d)
        cases = [found[b] for b in ids]
        parsed = [_parse(bodies.get(v.id)) for v in cases]
        labels = [f"Case {i}" for i in range(1, len(ids) + 1)]
        rows = _compare_rows(cases, parsed, [decisions.get(v.id or 0, []) for v in cases])
        table = frame(
            [{"section": sec, "field": name, **dict(zip(labels, vals, strict=True)),
              # biz_id always differs: it names the columns, it is not a finding.
              "differs": name != "biz_id" and len(set(vals)) > 1}
             for sec, name, vals in rows],
            ["section", "field", *labels, "differs"])
        return CompareView(table, labels, ids, self.best_frames(ids))

    def best_frames(self, biz_ids: Sequence[str]) -> dict[str, bytes | None]:
        """The face a reviewer compares: the best liveness frame, else the front selfie."""
        self._allow(Permission.VIEW_CASE)
        out: dict[str, bytes | None] = dict.fromkeys(biz_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(V.biz_id, StoredImage.kind, StoredImage.data)
                .join(StoredImage, col(StoredImage.verification_id) == V.id)
                .where(col(V.biz_id).in_(list(biz_ids)),
                       col(StoredImage.kind).in_(["best", "face_front"]),
                       col(StoredImage.data).is_not(None))
                .order_by(V.biz_id, StoredImage.kind)).all()
        for biz_id, _kind, data in rows:  # "best" sorts before "face_front"
            if out.get(biz_id) is None:
                out[biz_id] = data
        return out

    # ------------------------------------------------------------------ linked cases

    def linked_cases(self, biz_id: str) -> LinkedCases:
        """Other cases with the same ID number (by keyed hash) or the same biz_no, newest
        first; names always masked here (the case page has the audited reveal)."""
        self._allow(Permission.VIEW_CASE)
        biz_id = (biz_id or "").strip()
        with self.engine.connect() as conn:
            me = conn.execute(select(V.id, V.idcard_name, V.id_number_hash, V.biz_no)
                              .where(V.biz_id == biz_id)).first()
            if me is None:
                raise InsightsError("No stored case has this biz_id.")
            return linking.find_linked(conn, me_id=me.id, biz_id=biz_id, name=me.idcard_name,
                                       id_hash=me.id_number_hash, biz_no=me.biz_no)

    def case_options(self, search: str = "", page: int = 1, page_size: int = 50, *,
                     keep: Sequence[str] = ()) -> CaseOptions:
        """The compare picker's options: one page of the cases whose biz_id or biz_no
        contains ``search`` in any letter case (``faceid.review.search``, as the queue; every
        case if empty), most recently stored first, after the ``keep`` cases (already picked: a
        picker must never lose them when the search changes). Paged in SQL.
        """
        self._allow(Permission.VIEW_CASE)
        page_size = max(1, min(int(page_size), PAGE_SIZE_MAX))
        term = search_rule.clean(search)
        conds: list[ColumnElement[bool]] = []
        if term:
            conds.append(search_rule.matches(term, V.biz_id, V.biz_no, dialect=self._dialect))
        keep = list(dict.fromkeys(k for k in keep if k))[:PAGE_SIZE_MAX]
        cols = (V.biz_id, case_time().label("at"), V.status)
        newest = (V.stored_at.desc(), V.id.desc())
        with self.engine.connect() as conn:
            if term:
                # A search scans the table whatever we do: count the matches in the same scan
                # (a window count) instead of a second one (measured: 156 -> ~25 ms for a rare
                # term at 100k cases). Beyond the last page, clamp and ask again.
                total, found = self._search_page(conn, cols, conds, newest, page, page_size)
                page = max(1, min(int(page), page_count(total, page_size)))
            else:
                # No search: the newest page walks the stored_at index; the count is cheap.
                total = int(conn.execute(select(func.count())
                                         .select_from(Verification.__table__)).scalar_one())
                page = max(1, min(int(page), page_count(total, page_size)))
                found = conn.execute(select(*cols).order_by(*newest).limit(page_size)
                                     .offset((page - 1) * page_size)).all()
            kept = conn.execute(select(*cols).where(V.biz_id.in_(keep))).all() if keep else []
        labels = {r.biz_id: f"{r.biz_id} · {fmt(r.at)} · {r.status or '—'}"
                  for r in (*kept, *found)}
        for k in keep:  # a deep-linked biz_id that is not stored stays pickable, and says so
            labels.setdefault(k, f"{k} · not stored")
        ids = list(dict.fromkeys([*keep, *(r.biz_id for r in found)]))
        return CaseOptions(ids, labels, total, page, page_size)

    @staticmethod
    def _search_page(conn: Any, cols: Sequence[Any], conds: list[ColumnElement[bool]],
                     order: Sequence[Any], page: int, page_size: int) -> tuple[int, list[Any]]:
        """(total matches, the rows of ``page``, clamped to the last page)."""
        total_col = func.count().over().label("total")

        def rows(p: int) -> list[Any]:
            return list(conn.execute(select(*cols, total_col).where(*conds).order_by(*order)
                                     .limit(page_size).offset((p - 1) * page_size)).all())

        page = max(1, int(page))
        found = rows(page)
        if found:
            return int(found[0].total), found
        total = int(conn.execute(select(func.count()).select_from(Verification.__table__)
                                 .where(*conds)).scalar_one())
        last = page_count(total, page_size)
        return total, (rows(last) if total and page > last else [])

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


# --------------------------------------------------------------------------- compare rows


def _decision_cells(ds: list[Decision]) -> dict[str, str]:
    last = ds[-1] if ds else None
    return {
        "decisions made": str(len(ds)),
        "latest outcome": last.outcome if last else "—",
        "latest reason": (last.reason or "—") if last else "—",
        "latest reviewer": last.actor if last else "—",
        "decided at (UTC)": fmt(last.decided_at) if last else "—",
    }


def _liveness_cells(p: GetResult | None) -> dict[str, str]:
    live = p.liveness if p else None
    if live is None:
        return {}
    cells: dict[str, str] = {}
    for prefix, counters in (("", live.details), ("front selfie: ", live.face_front),
                             ("side selfie: ", live.face_side)):
        for name, value in counters.items():
            label = vocab.DETAIL_MEANING.get(name, name)
            cells[f"{prefix}{label} ({name})"] = "—" if value is None else str(value)
    return cells


def _genuineness_cells(p: GetResult | None) -> dict[str, str]:
    gen = p.liveness.genuineness if p and p.liveness else None
    if gen is None:
        return {}
    cells = {
        f"{s.label}": f"{_fmt_num(s.confidence)} vs threshold {_fmt_num(s.threshold)}"
        + (" — OVER" if s.exceeded else "")
        for s in gen.signals
    }
    if gen.face_replaced is not None:
        cells["face replaced"] = "yes" if gen.face_replaced == 1 else "no"
    if gen.selfie_inconsistent is not None:
        cells["selfies inconsistent"] = vocab.meaning(vocab.SELFIE_INCONSISTENT_MEANING,
                                                      gen.selfie_inconsistent)
    if gen.selfie_metadata_inconsistent is not None:
        cells["selfie metadata"] = vocab.meaning(vocab.SELFIE_METADATA_MEANING,
                                                 gen.selfie_metadata_inconsistent)
    return cells


def _compare_cells(p: GetResult | None) -> dict[str, str]:
    verify = p.verify if p else None
    if verify is None:
        return {}
    cells = {c.name: f"{_fmt_num(c.confidence)} ({c.band().describe()})"
             for c in verify.comparisons}
    cells["verify error"] = verify.error_message or "—"
    if verify.id_attacked is not None:
        cells["ID number used in attacks"] = "yes" if verify.id_attacked == 1 else "no"
    return cells


def _compare_rows(cases: list[Verification], parsed: list[GetResult | None],
                  decisions: list[list[Decision]]) -> list[tuple[str, str, list[str]]]:
    # Same ID number: letters per distinct keyed hash, so equality shows without the number.
    letters: dict[str, str] = {}
    for v in cases:
        if v.id_number_hash and v.id_number_hash not in letters:
            letters[v.id_number_hash] = "ABCD"[len(letters)]

    def case_cells(v: Verification, p: GetResult | None) -> dict[str, str]:
        live = p.liveness if p else None
        return {
            "biz_id": v.biz_id,
            "status": v.status or "—",
            "fail reason": v.fail_reason or "—",
            "procedure": (v.procedure_type or "—")
            + (f" / {v.still_type}" if v.still_type else ""),
            "liveness result": v.liveness_result or "—",
            "liveness counters": (live.counter_set() or "—") if live else "—",
            "case time (UTC)": fmt(v.verified_at or v.stored_at),
            "risk flags": ", ".join(x for x in v.risk_flags.split(",") if x) or "—",
            "name (masked)": pii.mask_name(v.idcard_name) or "—",
            "ID number (masked)": pii.mask_id_number(v.idcard_number) or "—",
            "same ID number group": letters.get(v.id_number_hash or "", "—"),
        }

    sections: list[tuple[str, list[dict[str, str]]]] = [
        ("case", [case_cells(v, p) for v, p in zip(cases, parsed, strict=True)]),
        ("liveness details", [_liveness_cells(p) for p in parsed]),
        ("genuineness", [_genuineness_cells(p) for p in parsed]),
        ("face compare", [_compare_cells(p) for p in parsed]),
        ("decision", [_decision_cells(ds) for ds in decisions]),
    ]
    out: list[tuple[str, str, list[str]]] = []
    for section, per_case in sections:
        # Union of fields across the cases, first-seen order: a counter one flow lacks shows "—".
        fields = list(dict.fromkeys(k for cells in per_case for k in cells))
        for name in fields:
            out.append((section, name, [cells.get(name, "—") for cells in per_case]))
    return out
