"""Case search, shared by the review queue and the compare picker.

One rule everywhere a person types part of a case's id: the text is matched anywhere in the
column, in any letter case, literally (``%`` and ``_`` mean themselves). People paste a piece
of a biz_id from a ticket or type an integrator's order number in whatever case they
remember; a prefix-only or case-sensitive search answered "nothing found" for cases that
exist. It costs one scan of the columns (a substring cannot use a B-tree index): 12–25 ms
at 100 000 cases on SQLite (``bench/queue_query.py``), well inside a page render.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_
from sqlalchemy.sql.elements import ColumnElement

#: Longest search term taken (biz_id and biz_no are at most 256 characters).
SEARCH_MAX = 256


def clean(term: str | None) -> str:
    return (term or "").strip()[:SEARCH_MAX]


def like_pattern(term: str) -> str:
    """A LIKE pattern matching ``term`` anywhere, literally (escaped with ``\\``)."""
    esc = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


def matches(term: str, *columns: Any, dialect: str) -> ColumnElement[bool]:
    """Any of ``columns`` contains ``term`` in any letter case: ILIKE on PostgreSQL; on SQLite
    plain LIKE, which ignores ASCII case by itself (SQLAlchemy's ``ilike`` would wrap both
    sides in ``lower()``: twice the time, measured). Ids are ASCII; for other scripts SQLite
    compares case-sensitively."""
    pattern = like_pattern(term)
    if dialect == "sqlite":
        return or_(*(column.like(pattern, escape="\\") for column in columns))
    return or_(*(column.ilike(pattern, escape="\\") for column in columns))
