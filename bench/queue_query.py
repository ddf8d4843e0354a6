"""Filtered review-queue query time at 100k stored verifications.

Inserts ``--n`` verifications directly (bulk, no parsing: this measures the query, not the
store), then times the queries a reviewer's queue page runs: a filtered, sorted page deep in
the list ("status != OK or liveness FAIL, newest first, LIMIT 50 OFFSET 1000") and its COUNT,
plus the pending-queue variant, and the linked-identity queries (the queue's "linked" column:
other cases with the same ID-number hash; its "only linked" filter; one case's linked cases).
Prints the plan (EXPLAIN QUERY PLAN / EXPLAIN) so we can see the indexes are used, and the
median of several runs. Last, it times ``ReviewService.queue`` itself (the SQL plus building the
page), as the queue page calls it.

    .venv/bin/python bench/queue_query.py [--n 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
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

from faceid.access.actors import Actor  # noqa: E402
from faceid.core.config import Settings  # noqa: E402
from faceid.reports.insights import InsightsService  # noqa: E402
from faceid.review.queue import QueueFilter  # noqa: E402
from faceid.review.service import ReviewService  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store.db import make_engine  # noqa: E402
from faceid.store.tables import Verification  # noqa: E402

COLS = "id, biz_id, status, liveness_result, faceid_band, risk_count, decision_state, stored_at"
FILTER = "(status != 'OK' OR liveness_result = 'FAIL')"
OPEN = "decision_state IN ('pending', 'escalated')"
CASE_TIME = "coalesce(verified_at, stored_at)"
QUEUE_ORDER = f"ORDER BY {CASE_TIME}, id"
LINKED_ONLY = ("id_number_hash IN (SELECT id_number_hash FROM verifications "
               "WHERE id_number_hash IS NOT NULL GROUP BY id_number_hash HAVING count(*) > 1)")
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
    # The review queue's default view (open cases, oldest first) without and with the
    # "linked" column as ReviewService.queue builds it: the page is picked in a derived table,
    # then a correlated count on the hash index runs for its 50 rows only.
    "page: open cases, oldest first, offset 1000": (
        f"SELECT {COLS} FROM verifications WHERE {OPEN} {QUEUE_ORDER} LIMIT 50 OFFSET 1000"),
    "same + linked count (page then count)": (
        f"SELECT p.*, (SELECT count(*) FROM verifications o "
        "WHERE o.id_number_hash = p.id_number_hash AND o.id != p.id) AS linked "
        f"FROM (SELECT {COLS}, id_number_hash, {CASE_TIME} AS case_time FROM verifications "
        f"WHERE {OPEN} {QUEUE_ORDER} LIMIT 50 OFFSET 1000) p ORDER BY p.case_time, p.id"),
    # The "only cases linked to others" filter: hashes seen more than once (one pass over the
    # hash index, grouped), as linking.linked_only builds it.
    "count: open + linked only": (
        f"SELECT count(*) FROM verifications WHERE {OPEN} AND {LINKED_ONLY}"),
    "page: open + linked only, first page": (
        f"SELECT {COLS} FROM verifications WHERE {OPEN} AND {LINKED_ONLY} {QUEUE_ORDER} "
        "LIMIT 50"),
    # One case's linked cases (case page panel, compare page): same hash OR same biz_no.
    "linked cases of one case": (
        "SELECT biz_id, status, idcard_name FROM verifications "
        "WHERE (id_number_hash = (SELECT id_number_hash FROM verifications WHERE id = 4242) "
        "OR biz_no = (SELECT biz_no FROM verifications WHERE id = 4242)) AND id != 4242 "
        f"ORDER BY {CASE_TIME} DESC, id DESC LIMIT 201"),
    # The compare picker's search is timed below as the service call (its SQL depends on the
    # dialect: faceid.review.search).
}
#: Share of cases whose person verifies more than once, and of those the share under another
#: name; share of cases retried under the previous case's biz_no.
REPEAT_SHARE, OTHER_NAME_SHARE, SAME_ORDER_SHARE = 0.08, 0.2, 0.03
SURNAMES, GIVEN = "王李张刘陈杨赵黄周吴", "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"
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
    # Repeat customers: a pool of people, each with a name; a few come back under another name.
    people = [(hashlib.sha256(f"person-{p}".encode()).hexdigest(),
               rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN))
              for p in range(max(1, n // 40))]
    biz_no = "order-0"
    for i in range(n):
        if rng.random() < REPEAT_SHARE:
            id_hash, name = rng.choice(people)
            if rng.random() < OTHER_NAME_SHARE:
                name = name[:-1] + rng.choice(GIVEN)
        else:
            id_hash = hashlib.sha256(f"single-{i}".encode()).hexdigest()
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        if rng.random() >= SAME_ORDER_SHARE:
            biz_no = f"order-{i}"
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
            "id_number_hash": id_hash, "idcard_name": name, "biz_no": biz_no,
        })
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(Verification), batch)
            batch.clear()
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(Verification), batch)
    if engine.dialect.name == "postgresql":
        # VACUUM too: a live table is kept vacuumed by autovacuum, and PostgreSQL's index-only
        # scans (the hash index for the "linked" filter) need the visibility map it sets.
        # Retried: the autoanalyze the bulk load sets off holds a snapshot that keeps VACUUM
        # from marking the fresh pages all-visible.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for _ in range(20):
                conn.execute(text("VACUUM ANALYZE verifications"))
                pages, visible = conn.execute(text(
                    "SELECT relpages, relallvisible FROM pg_class "
                    "WHERE relname = 'verifications'")).one()
                if visible >= pages:
                    break
                time.sleep(0.5)
    else:
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


def timed_call(fn, runs: int = 9) -> float:  # noqa: ANN001 - any zero-argument callable
    fn()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def service_rows(engine: Engine) -> list[tuple[str, float | None, int | None]]:
    """ReviewService.queue as the queue page calls it (default filter: pending + escalated)."""
    svc = ReviewService(engine, None, Settings())
    actor = Actor("bench.reviewer", "Bench", "reviewer")
    open_states = ("pending", "escalated")
    out: list[tuple[str, float | None, int | None]] = []
    cases = {"queue: page 1 (default view)": (QueueFilter(decision_states=open_states), 1),
             "queue: page 20": (QueueFilter(decision_states=open_states), 20)}
    try:  # the "linked" filter exists from issue 5 on; the bench also runs on older code
        cases["queue: linked only, page 1"] = (
            QueueFilter(decision_states=open_states, linked_only=True), 1)  # type: ignore[call-arg]
    except TypeError:
        out.append(("queue: linked only, page 1", None, None))
    for name, (f, page) in cases.items():
        result = svc.queue(f, "oldest", page, 50, actor=actor)
        ms = timed_call(lambda f=f, page=page: svc.queue(f, "oldest", page, 50, actor=actor))
        out.append((name, ms, result.total))
    insights = InsightsService(engine)
    if hasattr(insights, "case_options"):  # the compare picker (issue 5)
        for name, term in (("compare picker: newest 50", ""),
                           ("compare picker: '1790' anywhere", "1790"),
                           ("compare picker: 'ORDER-4242' (rare)", "ORDER-4242")):
            total = insights.case_options(term).total
            out.append((name, timed_call(lambda t=term: insights.case_options(t)), total))
    return out


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
        print(f"{'query':>44} | {'median ms':>9} | {'rows':>5} | plan")
        for name, sql in QUERIES.items():
            ms, rows = timed(engine, sql)
            print(f"{name:>44} | {ms:>9.2f} | {rows:>5} | {plan(engine, sql)}")
        print(f"{'service call (50 rows)':>44} | {'median ms':>9} | total")
        for name, ms, total in service_rows(engine):
            shown = "n/a" if ms is None else f"{ms:9.2f}"
            print(f"{name:>44} | {shown:>9} | {total if total is not None else '—'}")
        engine.dispose()


if __name__ == "__main__":
    main()
