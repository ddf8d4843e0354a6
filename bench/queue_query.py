"""Filtered review-queue query time at 100k stored verifications.

Inserts ``--n`` verifications directly (bulk, no parsing: this measures the query, not the
store), then times the queries a reviewer's queue page runs: a filtered, sorted page deep in
the list ("status != OK or liveness FAIL, newest first, LIMIT 50 OFFSET 1000") and its COUNT,
plus the pending-queue variant. Prints the plan (EXPLAIN QUERY PLAN / EXPLAIN) so we can see
the indexes are used, and the median of several runs.

    .venv/bin/python bench/queue_query.py [--n 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, insert, text  # noqa: E402

from faceid import schema  # noqa: E402
from faceid.db import make_engine  # noqa: E402
from faceid.tables import Verification  # noqa: E402

COLS = "id, biz_id, status, liveness_result, faceid_band, risk_count, decision_state, stored_at"
FILTER = "(status != 'OK' OR liveness_result = 'FAIL')"
QUERIES = {
    "page: filter, newest first, offset 1000": (
        f"SELECT {COLS} FROM verifications WHERE {FILTER} "
        "ORDER BY stored_at DESC LIMIT 50 OFFSET 1000"),
    "count: same filter": f"SELECT count(*) FROM verifications WHERE {FILTER}",
    "page: pending + filter, offset 1000": (
        f"SELECT {COLS} FROM verifications WHERE decision_state = 'pending' AND {FILTER} "
        "ORDER BY stored_at DESC LIMIT 50 OFFSET 1000"),
    "count: pending + filter": (
        f"SELECT count(*) FROM verifications WHERE decision_state = 'pending' AND {FILTER}"),
    "page: status = FAILED, first page": (
        f"SELECT {COLS} FROM verifications WHERE status = 'FAILED' "
        "ORDER BY stored_at DESC LIMIT 50"),
}
STATUSES = (("OK", 0.75), ("FAILED", 0.07), ("CANCELLED", 0.05), ("TIMEOUT", 0.04),
            ("NOT_STARTED", 0.03), ("PROCESSING", 0.03), ("WEBRTC_UNSUPPORTED", 0.03))
STATES = (("pending", 0.3), ("approved", 0.5), ("rejected", 0.15), ("escalated", 0.05))


def fill(engine: Engine, n: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    statuses, s_weights = zip(*STATUSES, strict=True)
    states, d_weights = zip(*STATES, strict=True)
    started = time.perf_counter()
    batch: list[dict] = []
    for i in range(n):
        status = rng.choices(statuses, s_weights)[0]
        live = None if status != "OK" else ("FAIL" if rng.random() < 0.15 else "PASS")
        stored = now - timedelta(seconds=rng.randrange(90 * 86400))
        batch.append({
            "biz_id": f"{int(stored.timestamp())},{uuid.UUID(int=rng.getrandbits(128))}",
            "status": status, "liveness_result": live, "procedure_type": "still",
            "faceid_band": rng.choice(("1e-3", "1e-4", "1e-5", "1e-6", "none")),
            "risk_flags": "", "risk_count": rng.randrange(4), "multifaces": False,
            "parse_flag_count": 0, "source": "api", "stored_at": stored,
            "verified_at": stored - timedelta(seconds=60), "version": 1,
            "decision_state": rng.choices(states, d_weights)[0] if i % 10 else "pending",
        })
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(Verification), batch)
            batch.clear()
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(Verification), batch)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def plan(engine: Engine, sql: str) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
            return "; ".join(r[-1] for r in rows)
        rows = conn.execute(text("EXPLAIN " + sql)).all()
        return "; ".join(r[0].strip() for r in rows if "Scan" in r[0] or "Index" in r[0])


def timed(engine: Engine, sql: str, runs: int = 9) -> tuple[float, int]:
    times, rows = [], 0
    with engine.connect() as conn:
        conn.execute(text(sql)).all()  # warm the cache
        for _ in range(runs):
            t = time.perf_counter()
            rows = len(conn.execute(text(sql)).all())
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--database-url", default=None,
                        help="a scratch PostgreSQL URL (its tables are dropped!); default SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{tmp}/bench.db")
        if args.database_url:
            from sqlmodel import SQLModel

            SQLModel.metadata.drop_all(engine)
        schema.create_all(engine)
        setup = fill(engine, args.n)
        print(f"{engine.dialect.name}: inserted {args.n} verifications in {setup:.1f} s")
        print(f"{'query':>40} | {'median ms':>9} | {'rows':>5} | plan")
        for name, sql in QUERIES.items():
            ms, rows = timed(engine, sql)
            print(f"{name:>40} | {ms:>9.2f} | {rows:>5} | {plan(engine, sql)}")
        engine.dispose()


if __name__ == "__main__":
    main()
