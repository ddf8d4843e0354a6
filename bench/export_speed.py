"""CSV export and audit-page speed at 100k verifications, against ``sqlite3 -csv``.

Bulk-inserts ``--n`` (default 100 000) verifications straight into a file SQLite (not through
ingest: setup speed; about half get one or two decisions, 1% carry a formula-like name), then
measures, each the best of ``--repeat`` (5) interleaved runs:

1. ``faceid.export.export_csv`` to a file (masked, formula-neutralised, latest decision joined);
2. ``/usr/bin/sqlite3 -csv`` writing the same rows and columns from the same file (raw values,
   no masking, no neutralising): the floor a C program reaches;
3. Python's ``sqlite3`` module merely fetching those rows (no CSV): the floor for any Python;
4. the ``InsightsService`` calls the audit page makes on its first render (and, for reference,
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

from faceid import schema  # noqa: E402
from faceid.actors import Actor  # noqa: E402
from faceid.db import make_engine  # noqa: E402
from faceid.export import export_csv  # noqa: E402
from faceid.insights import InsightsService  # noqa: E402
from faceid.tables import Decision, Verification  # noqa: E402

SQLITE3 = "/usr/bin/sqlite3"
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
    args = parser.parse_args()
    started_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="faceid-export-bench-"))
    db = work / "bench.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        schema.create_all(engine)
        t0 = time.perf_counter()
        decisions = seed(engine, args.n)
        setup_s = time.perf_counter() - t0
        # Fold the WAL back into the main file so both readers start from the same state (our
        # engine wraps every statement in BEGIN IMMEDIATE, where a checkpoint cannot run).
        engine.dispose()
        raw = sqlite3.connect(db)
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()

        out = work / "export.csv"
        cli_out = work / "sqlite3.csv"
        report = None

        def run_export() -> None:
            nonlocal report
            report = export_csv(engine, out, None, ACTOR)

        def run_cli() -> None:
            with cli_out.open("wb") as fh:
                subprocess.run([SQLITE3, "-csv", "-header", str(db), CLI_SQL], stdout=fh,
                               check=True)

        fetched = 0

        def python_fetch() -> None:
            nonlocal fetched
            conn = sqlite3.connect(db)
            try:
                fetched = len(conn.execute(CLI_SQL).fetchall())
            finally:
                conn.close()

        # Interleaved, best of each: the machine is shared, so a burst of someone else's load
        # should not land on one contestant only.
        timings: dict[str, list[float]] = {"export": [], "cli": [], "fetch": []}
        for _ in range(args.repeat):
            for name, fn in (("export", run_export), ("cli", run_cli), ("fetch", python_fetch)):
                t = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - t)
        export_s, cli_s, fetch_s = (min(timings[k]) for k in ("export", "cli", "fetch"))
        assert report is not None
        cli_rows = sum(1 for _ in cli_out.open("rb")) - 1
        assert report.rows == args.n == fetched == cli_rows, (report.rows, fetched, cli_rows)

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
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}")
        print(f"rows: {args.n} verifications, {decisions} decisions; setup {setup_s:.1f} s")
        print(f"export_csv:        {export_s:6.2f} s  ({args.n / export_s:,.0f} rows/s, "
              f"{size_mib:.1f} MiB)")
        print(f"sqlite3 -csv:      {cli_s:6.2f} s  -> ratio {export_s / cli_s:.2f}x "
              f"(target <= 2x)")
        print(f"python fetch only: {fetch_s:6.2f} s  ({fetch_s / cli_s:.2f}x the sqlite3 CLI)")
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
