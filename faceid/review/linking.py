"""Linked identities: the other cases of one person, found by the keyed ID-number hash
(``verifications.id_number_hash``) or by the integrator's ``biz_no``.

Shared by the case page (``ReviewService.open_case`` puts a ``LinkedCases`` in the case view),
the review queue ("linked" column and filter, ``ReviewService.queue``) and the compare page
(``InsightsService.linked_cases``). Every query here runs on the ``id_number_hash`` / ``biz_no``
indexes; none reads the whole table.

"Under another name" is decided here, on the clear names, with one rule (``norm_name``: spaces
and case do not make another name) so the queue, the case page and the compare page always
agree. Only the verdict leaves this module, plus names masked unless the caller says the actor
revealed this case's personal data (``reveal``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import ColumnElement, Connection, false, func, or_, select
from sqlalchemy.sql.selectable import ScalarSelect
from sqlmodel import Session

from faceid.access import pii
from faceid.core.timeutil import fmt
from faceid.store.tables import Verification, case_time

V = Verification.__table__.c
#: At most this many linked cases are listed (newest first); beyond it the list says "more".
LINKED_MAX = 200
#: Compare takes 2 to this many cases (``InsightsService.compare`` checks it too).
COMPARE_MAX = 4

NAME_COLUMN, NAME_COLUMN_MASKED = "name", "name (masked)"


def norm_name(name: str | None) -> str:
    """What two names are compared on: without any whitespace, case-folded."""
    return "".join((name or "").split()).casefold()


def differs(mine: str | None, other: str | None) -> bool:
    """Another name: both known (a purged or missing name proves nothing) and not equal."""
    a, b = norm_name(mine), norm_name(other)
    return bool(a) and bool(b) and a != b


@dataclass(frozen=True, slots=True)
class LinkedCases:
    """Other cases sharing one case's ID number (by keyed hash) or biz_no, newest first."""

    biz_id: str
    #: biz_id, link, case time (UTC), status, liveness, review state, name, different name.
    #: The name column is "name (masked)" unless ``names_revealed``.
    rows: pd.DataFrame
    biz_ids: list[str]  # row order (st.dataframe selections are positional)
    #: Cases sharing this case's ID number but carrying a different name.
    other_name_count: int
    #: More than LINKED_MAX linked cases: the counts below are lower bounds.
    truncated: bool
    same_id_count: int = 0
    same_biz_no_count: int = 0
    #: The distinct other names, in clear only if ``names_revealed`` (else masked).
    other_names: tuple[str, ...] = ()
    names_revealed: bool = False

    @property
    def count(self) -> int:
        return len(self.biz_ids)

    def compare_ids(self, limit: int = COMPARE_MAX) -> list[str]:
        """This case and the most recent linked ones, ``limit`` in all: what "compare these
        attempts" opens (the same rule on the case page and the compare page)."""
        return [self.biz_id, *self.biz_ids[:max(0, limit - 1)]]

    def more_than(self, limit: int = COMPARE_MAX) -> bool:
        """Whether ``compare_ids(limit)`` leaves linked cases out."""
        return self.truncated or self.count > limit - 1


def find_linked(conn: Connection | Session, *, me_id: int, biz_id: str, name: str | None,
                id_hash: str | None, biz_no: str | None, reveal: bool = False,
                limit: int = LINKED_MAX) -> LinkedCases:
    """The cases linked to one case (given by its own row's values): one indexed query
    (``id_number_hash = ? OR biz_no = ?``: SQLite's MULTI-INDEX OR, PostgreSQL's BitmapOr)."""
    same_id = V.id_number_hash == id_hash if id_hash else false()
    same_no = V.biz_no == biz_no if biz_no else false()
    rows: Sequence[Any] = []
    if id_hash or biz_no:
        rows = conn.execute(
            select(V.biz_id, case_time().label("at"), V.status, V.liveness_result,
                   V.decision_state, V.idcard_name, V.id_number_hash, V.biz_no)
            .where(or_(same_id, same_no), V.id != me_id)
            .order_by(case_time().desc(), V.id.desc()).limit(limit + 1)).all()
    truncated = len(rows) > limit
    rows = rows[:limit]
    name_col = NAME_COLUMN if reveal else NAME_COLUMN_MASKED
    out: list[dict[str, Any]] = []
    other_names: dict[str, None] = {}
    counts = {"id": 0, "no": 0, "other": 0}
    for r in rows:
        by_id = bool(id_hash) and r.id_number_hash == id_hash
        by_no = bool(biz_no) and r.biz_no == biz_no
        # Another name matters only under the same ID number: another person may well reuse
        # an order number (biz_no), that is not an alias.
        other = by_id and differs(name, r.idcard_name)
        shown = r.idcard_name if reveal else pii.mask_name(r.idcard_name)
        counts["id"] += by_id
        counts["no"] += by_no
        counts["other"] += other
        if other:
            other_names[shown or ""] = None
        out.append({
            "biz_id": r.biz_id,
            "link": " + ".join(x for x, on in (("same ID number", by_id),
                                               ("same biz_no", by_no)) if on),
            "case time (UTC)": fmt(r.at), "status": r.status, "liveness": r.liveness_result,
            "review state": r.decision_state, name_col: shown, "different name": other,
        })
    cols = ["biz_id", "link", "case time (UTC)", "status", "liveness", "review state", name_col,
            "different name"]
    return LinkedCases(biz_id, pd.DataFrame(out, columns=cols), [r.biz_id for r in rows],
                       counts["other"], truncated, counts["id"], counts["no"],
                       tuple(other_names), reveal)


# --------------------------------------------------------------------------- the queue


def _others() -> Any:
    return Verification.__table__.alias("linked_other")


def linked_count(id_hash: Any, row_id: Any) -> ScalarSelect[int]:
    """Correlated count of the other cases with the row's ID-number hash (0 without one).

    Put it in the select list of a query that is already paged: SQLite evaluates a select-list
    subquery for every row it sorts, so on the whole filtered queue it would run once per
    matching row instead of once per row shown."""
    o = _others()
    return (select(func.count()).select_from(o)
            .where(o.c.id_number_hash == id_hash, o.c.id != row_id).scalar_subquery())


def linked_only() -> ColumnElement[bool]:
    """Rows whose ID-number hash occurs more than once: one pass over the hash index, grouped
    (measured 2x faster on SQLite than a correlated EXISTS per queue row)."""
    o = _others()
    shared = (select(o.c.id_number_hash).where(o.c.id_number_hash.is_not(None))
              .group_by(o.c.id_number_hash).having(func.count() > 1))
    return V.id_number_hash.in_(shared)


def names_by_hash(conn: Connection | Session, hashes: Iterable[str]) -> dict[str, set[str]]:
    """hash -> the distinct clear names stored under it (for the queue's "other name" verdict,
    taken on the page's rows only; an indexed IN lookup)."""
    wanted = sorted({h for h in hashes if h})
    out: dict[str, set[str]] = {h: set() for h in wanted}
    if not wanted:
        return out
    for h, name in conn.execute(select(V.id_number_hash, V.idcard_name)
                                .where(V.id_number_hash.in_(wanted))
                                .group_by(V.id_number_hash, V.idcard_name)).all():
        if name:
            out[h].add(name)
    return out


def other_name_under(names: dict[str, set[str]], id_hash: str | None, name: str | None) -> bool:
    """Whether any case with this hash carries a name other than ``name``."""
    return bool(id_hash) and any(differs(name, n) for n in names.get(id_hash or "", ()))
