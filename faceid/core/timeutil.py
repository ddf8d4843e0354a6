"""UTC time helpers. All datetimes are timezone-aware UTC (SQLModel's UTCDateTime refuses
naive ones); everything shown to a person says UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_unix(ts: int | float | None) -> datetime | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def as_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.utcoffset() is None else dt.astimezone(UTC)


def fmt(dt: datetime | None) -> str:
    dt = as_utc(dt)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


def iso(dt: datetime | None) -> str:
    dt = as_utc(dt)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else ""


def day_start(d: date) -> datetime:
    """Midnight UTC at the start of ``d``."""
    return datetime.combine(d, time.min, tzinfo=UTC)


def within_days(column: Any, first: date | None, last: date | None) -> list[Any]:
    """Conditions for ``column`` (an SQL time column) falling on the UTC days ``first`` to
    ``last``, both inclusive; an open end gives no condition. The one date-range rule of the
    audit pages, the reports and the export."""
    conds = []
    if first:
        conds.append(column >= day_start(first))
    if last:
        conds.append(column < day_start(last + timedelta(days=1)))
    return conds
