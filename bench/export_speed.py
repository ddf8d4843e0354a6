"""CSV export and audit-page speed at 100k verifications, against ``sqlite3 -csv``.

With ``--database-url`` (a scratch PostgreSQL: its tables are dropped) the same runs against
PostgreSQL, and the reference is ``psql``'s ``\\copy (same query) TO file WITH (FORMAT csv)``.

Bulk-inserts ``--n`` (default 100 000) verifications straight into a file SQLite (not through
ingest: setup speed; about half get one or two decisions, 1% carry a formula-like name), then
measures, each the best of ``--repeat`` (5) runs, the contestants interleaved:

1. ``faceid.reports.export.export_csv`` with **no** cached export line (the bulk insert wrote
   none): every line rendered during the export;
2. ``faceid.store.export_lines.fill_lines``: rendering and storing every line (the work ingest,
   decide and purge do one case at a time, done here in bulk), and one case's
   ``refresh_lines`` in its own transaction (what a decision pays);
3. ``export_csv`` from the cached lines (the normal masked export), and the unmasked export
   (admin only; never cached, so rendered like 1.);
4. ``/usr/bin/sqlite3 -csv`` writing the same rows and columns from the same file (raw values,
   no masking, no neutralising): the floor a C program reaches;
5. Python's ``sqlite3`` module merely fetching those rows (no CSV): the floor for any Python
   exporter that reads the cells;
6. the ``InsightsService`` calls the audit page makes on its first render (and, for reference,
   the reports page's);

then peak Python memory (tracemalloc, separate runs so its overhead does not skew the times)
during the export and during the audit calls, and the process's max RSS.

    .venv/bin/python bench/export_speed.py [--n 100000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceid.access.actors import Actor  # noqa: E402
from faceid.reports.export import export_csv  # noqa: E402
from faceid.reports.insights import InsightsService  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store.db import make_engine  # noqa: E402
from faceid.store.export_lines import fill_lines, refresh_lines  # noqa: E402
from faceid.store.tables import Decision, Verification  # noqa: E402

SQLITE3 = "/usr/bin/sqlite3"
PSQL = "/usr/bin/psql"
# The export's rows, raw: same tables, same latest-decision join, same order.
CLI_SQL = """
SELECT v.biz_id, v.biz_no, v.status, v.fail_reason, v.procedure_type, v.liveness_result,
       v.faceid_confidence, v.faceid_band, v.verify_error, v.genuineness_exceeded, v.risk_flags,
       v.idcard_name, v.idcard_number, v.decision_state, d.outcome, d.reason, d.actor,
       d.decided_at, v.verified_at, v.stored_at
FROM verifications v
LEFT JOIN decisions d ON d.id = (SELECT max(d2.id) FROM decisions d2
                                 WHERE d2.verification_id = v.id)
ORDER BY v.id
"""
ACTOR = Actor("bench.auditor", "Bench", "auditor")
ADMIN = Actor("bench.admin", "Bench", "admin")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
STATUSES = (("OK", 0.75), ("FAILED", 0.07), ("CANCELLED", 0.05), ("TIMEOUT", 0.04),
            ("WEBRTC_UNSUPPORTED", 0.03), ("NOT_STARTED", 0.03), ("PROCESSING", 0.03))
PROCEDURES = ("video", "still", "selfie", "flash", "meglive_flash")
BANDS = ("1e-3", "1e-4", "1e-5", "1e-6", "none")


def _row(rng: random.Random, i: int, now: datetime) -> dict[str, Any]:
    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
    ok = status == "OK"
    liveness = ("FAIL" if rng.random() < 0.12 else "PASS") if ok else None
    compared = ok and liveness == "PASS" and rng.random() < 0.9
    band = rng.choice(BANDS) if compared else None
    verify_error = "NO_SUCH_ID_NUMBER" if ok and rng.random() < 0.05 else None
    genuine = "mask" if liveness and rng.random() < 0.04 else None
    flags = [f for f, on in (("status_not_ok", not ok), ("liveness_fail", liveness == "FAIL"),
                             ("verify_error", verify_error), ("compare_below_1e-3",
                                                              band == "none"),
                             ("genuineness", genuine)) if on]
    name = rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2))))
    if rng.random() < 0.01:
        name = '=HYPERLINK("http://x","a")'
    verified = now - timedelta(seconds=rng.randrange(30 * 86400)) if compared else None
    return {
        "biz_id": f"{1_760_000_000 + i},{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "biz_no": f"order-{i}", "status": status,
        "fail_reason": "NETWORK_ERROR" if status == "WEBRTC_UNSUPPORTED" else None,
        "procedure_type": rng.choice(PROCEDURES) if ok else None,
        "liveness_result": liveness,
        "faceid_confidence": round(rng.uniform(40, 95), 3) if compared else None,
        "faceid_band": band, "verify_error": verify_error, "genuineness_exceeded": genuine,
        "face_replaced": 0, "id_attacked": 0, "multifaces": rng.random() < 0.02,
        "risk_flags": ",".join(flags), "risk_count": len(flags),
        "idcard_name": name if ok else None,
        "idcard_number": f"{rng.randrange(10**17, 10**18)}" if ok else None,
        "id_number_hash": None, "parse_flag_count": 0, "source": "import",
        "verified_at": verified, "stored_at": (verified or now) + timedelta(minutes=5),
        "decision_state": "pending", "decided_by": None, "decided_at": None, "version": 1,
    }


def seed(engine: Any, n: int) -> int:
    """Insert n verifications in chunks; decide about half of them. Returns decisions made."""
    rng = random.Random(20240601)
    now = datetime(2025, 10, 9, tzinfo=UTC)
    vt, dt = Verification.__table__, Decision.__table__
    decisions = 0
    chunk = 10_000
    for start in range(0, n, chunk):
        rows = [_row(rng, i, now) for i in range(start, min(n, start + chunk))]
        decided: list[dict[str, Any]] = []
        for offset, row in enumerate(rows):
            if rng.random() < 0.5:
                vid = start + offset + 1  # ids are assigned in insert order from 1
                at = row["stored_at"] + timedelta(hours=rng.uniform(0.1, 72))
                if rng.random() < 0.1:  # escalated first, then decided by a senior
                    decided.append({"verification_id": vid, "biz_id": row["biz_id"],
                                    "actor": "rev1", "outcome": "escalate",
                                    "reason": "spoof_suspected", "decided_at": at,
                                    "based_on_version": 1})
                    at += timedelta(hours=2)
                outcome = rng.choice(("approve", "approve", "reject", "reverify"))
                state = {"approve": "approved", "reject": "rejected",
                         "reverify": "reverify"}[outcome]
                row.update(decision_state=state, decided_by="rev2", decided_at=at)
                decided.append({"verification_id": vid, "biz_id": row["biz_id"],
                                "actor": rng.choice(("rev1", "rev2", "senior1")),
                                "outcome": outcome, "reason": None, "decided_at": at,
                                "based_on_version": 1})
        with engine.begin() as conn:
            conn.execute(vt.insert(), rows)
            if decided:
                conn.execute(dt.insert(), decided)
        decisions += len(decided)
    return decisions


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as psql/psycopg take it (no ``+driver``)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def settle(engine: Any, db: Path) -> None:
    """Same starting state for every contestant: SQLite's WAL folded back into the file;
    PostgreSQL's tables vacuumed and analysed (as autovacuum keeps a live table)."""
    if engine.dialect.name != "postgresql":
        checkpoint(engine, db)
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("verifications", "decisions", "export_lines"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def checkpoint(engine: Any, db: Path) -> None:
    """Fold the WAL back into the main file so every reader starts from the same state (our
    engine wraps every statement in BEGIN IMMEDIATE, where a checkpoint cannot run)."""
    engine.dispose()
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="keep the DB and CSVs here")
    parser.add_argument("--database-url", default=None,
                        help="a scratch PostgreSQL URL (its tables are dropped!); the reference "
                        "is then psql's \\copy ... csv; default: a file SQLite and sqlite3 -csv")
    args = parser.parse_args()
    started_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="faceid-export-bench-"))
    db = work / "bench.db"
    pg_url = args.database_url
    engine = make_engine(pg_url or f"sqlite:///{db}")
    try:
        if pg_url:
            from sqlmodel import SQLModel

            SQLModel.metadata.drop_all(engine)
        schema.create_all(engine)
        t0 = time.perf_counter()
        decisions = seed(engine, args.n)
        setup_s = time.perf_counter() - t0
        settle(engine, db)

        out = work / "export.csv"
        cli_out = work / "sqlite3.csv"
        reports: dict[str, Any] = {}

        def exporter(name: str, actor: Actor = ACTOR, unmasked: bool = False
                     ) -> Callable[[], None]:
            def run() -> None:
                reports[name] = export_csv(engine, out, None, actor, unmasked=unmasked)
            return run

        def run_cli() -> None:
            if pg_url:
                one_line = " ".join(CLI_SQL.split())
                subprocess.run([PSQL, "-X", "-q", libpq_url(pg_url), "-c",
                                f"\\copy ({one_line}) TO '{cli_out}' WITH (FORMAT csv, HEADER)"],
                               check=True)
                return
            with cli_out.open("wb") as fh:
                subprocess.run([SQLITE3, "-csv", "-header", str(db), CLI_SQL], stdout=fh,
                               check=True)

        fetched = 0

        def python_fetch() -> None:
            nonlocal fetched
            if pg_url:
                import psycopg

                with psycopg.connect(libpq_url(pg_url)) as pconn:
                    fetched = len(pconn.execute(CLI_SQL).fetchall())
                return
            conn = sqlite3.connect(db)
            try:
                fetched = len(conn.execute(CLI_SQL).fetchall())
            finally:
                conn.close()

        # Interleaved, best of each: the machine is shared, so a burst of someone else's load
        # should not land on one contestant only.
        timings: dict[str, list[float]] = {}

        def contest(contestants: dict[str, Callable[[], Any]]) -> None:
            for _ in range(args.repeat):
                for name, fn in contestants.items():
                    t = time.perf_counter()
                    fn()
                    timings.setdefault(name, []).append(time.perf_counter() - t)

        contest({"uncached": exporter("uncached"), "cli": run_cli, "fetch": python_fetch})
        uncached_bytes = out.read_bytes()
        t = time.perf_counter()
        filled = fill_lines(engine)
        fill_s = time.perf_counter() - t
        assert filled == args.n, filled
        settle(engine, db)
        contest({"cached": exporter("cached"), "cli": run_cli, "fetch": python_fetch,
                 "unmasked": exporter("unmasked", ADMIN, unmasked=True)})
        exporter("cached")()
        assert out.read_bytes() == uncached_bytes, "cached export differs from the rendered one"
        assert reports["uncached"].rendered == args.n and reports["cached"].rendered == 0
        best_of = {k: min(v) for k, v in timings.items()}
        cli_s, fetch_s = best_of["cli"], best_of["fetch"]
        cli_rows = sum(1 for _ in cli_out.open("rb")) - 1
        assert reports["cached"].rows == args.n == fetched == cli_rows, (fetched, cli_rows)

        # What one write pays: re-render one case's line in its own transaction.
        one: list[float] = []
        for vid in range(1, args.n, max(1, args.n // 200)):
            t = time.perf_counter()
            with engine.begin() as conn:
                refresh_lines(conn, [vid])
            one.append(time.perf_counter() - t)
        one.sort()
        refresh_ms = one[len(one) // 2] * 1000

        service = InsightsService(engine)
        audit_calls: dict[str, Callable[[], Any]] = {
            "failure_summary": service.failure_summary,
            "failures_by_day": service.failures_by_day,
            "failure_details": service.failure_details,
            "failed_cases(page 1)": lambda: service.failed_cases(page=1, page_size=25),
        }
        report_calls: dict[str, Callable[[], Any]] = {
            "pass_rate": service.pass_rate,
            "decisions_by_reviewer": service.decisions_by_reviewer,
            "decision_latency": service.decision_latency,
            "backlog": service.backlog,
        }
        audit_t = {name: best(fn, args.repeat)[0] for name, fn in audit_calls.items()}
        report_t = {name: best(fn, args.repeat)[0] for name, fn in report_calls.items()}

        export_peak = peak_mib(lambda: export_csv(engine, work / "mem.csv", None, ACTOR))
        audit_peak = peak_mib(lambda: [fn() for fn in audit_calls.values()])
        maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        size_mib = out.stat().st_size / 2**20
        ref = "psql \\copy" if pg_url else "sqlite3 -csv"
        with engine.connect() as conn:
            version = (conn.exec_driver_sql("SHOW server_version").scalar() if pg_url
                       else sqlite3.sqlite_version)
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{'PostgreSQL' if pg_url else 'SQLite'} {version}")
        print(f"rows: {args.n} verifications, {decisions} decisions; setup {setup_s:.1f} s; "
              f"export file {size_mib:.1f} MiB")
        print(f"{ref + ':':<27} {cli_s:6.2f} s  (the reference, 1.00x)")
        for name, label in (("cached", "export_csv, cached lines"),
                            ("uncached", "export_csv, no cached line"),
                            ("unmasked", "export_csv --unmasked")):
            s_ = best_of[name]
            print(f"{label:<27} {s_:6.2f} s  -> {s_ / cli_s:.2f}x {ref} "
                  f"({args.n / s_:,.0f} rows/s)")
        print(f"python fetch only:          {fetch_s:6.2f} s  ({fetch_s / cli_s:.2f}x {ref})")
        print(f"fill_lines (all {args.n}):     {fill_s:6.2f} s  "
              f"({fill_s / args.n * 1e6:.1f} us per case)")
        print(f"refresh_lines, one case in its own transaction: {refresh_ms:.2f} ms (median)")
        print(f"audit page calls:  {sum(audit_t.values()):6.3f} s total")
        for name, s in audit_t.items():
            print(f"    {name:<24} {s * 1000:7.1f} ms")
        print(f"reports page calls:{sum(report_t.values()):6.3f} s total")
        for name, s in report_t.items():
            print(f"    {name:<24} {s * 1000:7.1f} ms")
        print(f"peak Python memory: export {export_peak:.1f} MiB, audit calls "
              f"{audit_peak:.1f} MiB (tracemalloc); process max RSS {maxrss_mib:.0f} MiB "
              "(includes the seeding)")
        print(f"wall time of the whole bench: {time.perf_counter() - started_all:.0f} s")
    finally:
        engine.dispose()
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.iterdir():
                shutil.copy2(f, args.keep / f.name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
