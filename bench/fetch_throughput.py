"""Bulk fetch throughput against the simulator, relative to the ceiling FaceID allows.

With a fixed answer latency L and a concurrency limit C, no client can beat C/L reads per
second. We report achieved / (C/L) (target >= 0.9) and the reads served beyond the quota
(``over_quota_reads``, must be 0), storing every result on a file SQLite exactly as
``python -m faceid fetch`` does (ledger, inbox, parse, images, audit).

The simulator runs in its own process, as FaceID would: in-process it would compete with the
desk for the GIL and its CPU time would be billed to us.

``--processes 1,2,4`` measures instead the deployment shape of issue 10: the biz_ids are
enqueued in the durable queue and P ``python -m faceid worker`` processes (each with C
threads, all sharing the deployment-wide cap C) fetch them; the clock runs from the enqueue to
the last stored result. Reported beside the ceiling: reads served (must equal n: one per
biz_id), over-quota reads (0) and the most requests the simulator saw in flight (≤ C).

``--store-process on|off`` overrides ``FACEID_STORE_PROCESS`` (default ``auto``: a worker on
PostgreSQL stores its answers in a child process, decision 31), to measure both.

    .venv/bin/python bench/fetch_throughput.py [--n 240] [--database-url URL]
    .venv/bin/python bench/fetch_throughput.py --processes 1,2,4 --database-url URL
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceid.api.client import FaceIDClient  # noqa: E402
from faceid.api.simulator import generate_result  # noqa: E402
from faceid.core.config import Settings  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store.db import make_engine  # noqa: E402
from faceid.store.fetching import FetchService  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"


def cases(n: int, seed: int) -> list[dict[str, Any]]:
    return [generate_result(seed * 1_000_003 + i) for i in range(n)]


def _serve(conn: Any, n: int, seed: int, latency: float, limit: int) -> None:
    """Child process: serve ``n`` cases until told to stop, then send the counters back."""
    from faceid.api.simulator import SimulatorState, start_in_thread
    from faceid.api.simulator import server as sim_server

    if not getattr(sim_server._Handler, "disable_nagle_algorithm", False):
        # The simulator writes headers and body in two send()s; with Nagle on, the body
        # waits for the client's delayed ACK: +40 ms per answer that would be billed to us.
        sim_server._Handler.disable_nagle_algorithm = True
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=latency,
                           concurrency_limit=limit)
    for case in cases(n, seed):
        state.add(case)
    with start_in_thread(state) as sim:
        conn.send(sim.base_url)
        conn.recv()  # "stop"
        conn.send({"over_quota_reads": state.over_quota_reads,
                   "max_in_flight": state.max_in_flight,
                   "reads_served": sum(state.reads_served.values()),
                   "limit_answers": state.responses_by_code.get("CONCURRENCY_LIMIT_EXCEEDED", 0),
                   "total_requests": state.total_requests})


class Simulator:
    """The simulator in its own process, serving ``cases(n, seed)``; ``stop`` returns its
    counters."""

    def __init__(self, n: int, seed: int, latency: float, limit: int) -> None:
        self._parent, child = mp.Pipe()
        self._proc = mp.get_context("spawn").Process(target=_serve,
                                                     args=(child, n, seed, latency, limit))
        self._proc.start()
        self.base_url: str = self._parent.recv()

    def stop(self) -> dict[str, Any]:
        self._parent.send("stop")
        stats = self._parent.recv()
        self._proc.join(10)
        return stats

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)


#: ``--store-process``: None (auto), True or False.
STORE_PROCESS: bool | None = None


def run(n: int, latency: float, limit: int, seed: int, url: str | None) -> dict[str, Any]:
    ids = [c["biz_info"]["biz_id"] for c in cases(n, seed)]
    with Simulator(n, seed, latency, limit) as simulator:
        base_url = simulator.base_url
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(url or f"sqlite:///{tmp}/bench.db")
            if url:
                from sqlmodel import SQLModel

                SQLModel.metadata.drop_all(engine)
            schema.create_all(engine)
            client = FaceIDClient(KEY, SECRET, base_url, max_concurrency=limit,
                                  backoff_initial_s=0.05, backoff_max_s=0.5)
            service = FetchService(engine, lambda: client,
                                   Settings(api_key=KEY, api_secret=SECRET, pii_key="bench",
                                            max_concurrency=limit,
                                            store_process=STORE_PROCESS))
            started = time.perf_counter()
            summary = service.fetch_many(ids, "bench", concurrency=limit)
            elapsed = time.perf_counter() - started
            client.close()
            engine.dispose()
        sim = simulator.stop()
    rate = summary.stored / elapsed
    ceiling = limit / latency
    return {"db": "postgres" if url else "sqlite", "n": n, "L_ms": latency * 1000, "C": limit,
            "stored": summary.stored, "elapsed_s": elapsed, "rate": rate, "ceiling": ceiling,
            "ratio": rate / ceiling, "over_quota": sim["over_quota_reads"],
            "limit_answers": sim["limit_answers"], "max_in_flight": sim["max_in_flight"]}


def run_bare(n: int, latency: float, limit: int, seed: int) -> dict[str, Any]:
    """The floor of this machine: C threads read every result once and throw it away (no
    database, no parsing). What the 2 cores allow beside the simulator, whatever we do."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [c["biz_info"]["biz_id"] for c in cases(n, seed)]
    with Simulator(n, seed, latency, limit) as simulator, \
            FaceIDClient(KEY, SECRET, simulator.base_url, max_concurrency=limit) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(limit) as pool:
            done = sum(1 for _ in pool.map(client.get_result, ids))
        elapsed = time.perf_counter() - started
        simulator.stop()
    rate = done / elapsed
    return {"db": "none", "P": 0, "n": n, "L_ms": latency * 1000, "C": limit, "stored": 0,
            "elapsed_s": elapsed, "rate": rate, "ceiling": limit / latency,
            "ratio": rate / (limit / latency), "reads": done, "over_quota": 0,
            "max_in_flight": limit}


def run_processes(n: int, latency: float, limit: int, seed: int, url: str | None,
                  processes: int) -> dict[str, Any]:
    """P worker processes on one database work a queue of n jobs."""
    from sqlalchemy import func, select

    from faceid.store.fetchqueue import FetchQueue
    from faceid.store.tables import Verification

    ids = [c["biz_info"]["biz_id"] for c in cases(n, seed)]
    workers: list[subprocess.Popen] = []
    with Simulator(n, seed, latency, limit) as simulator, contextlib.ExitStack() as stack:
        base_url = simulator.base_url
        with tempfile.TemporaryDirectory() as tmp:
            db_url = url or f"sqlite:///{tmp}/bench.db"
            engine = make_engine(db_url)
            if url:
                from sqlmodel import SQLModel

                SQLModel.metadata.drop_all(engine)
                with engine.begin() as conn:
                    conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            schema.upgrade(engine)
            env = {k: v for k, v in os.environ.items() if not k.startswith("FACEID_")}
            env.update(PYTHONPATH=str(Path(__file__).resolve().parent.parent),
                       DATABASE_URL=db_url, FACEID_BASE_URL=base_url, FACEID_API_KEY=KEY,
                       FACEID_API_SECRET=SECRET, FACEID_PII_KEY="bench",
                       FACEID_MAX_CONCURRENCY=str(limit),
                       FACEID_STORE_PROCESS={None: "auto", True: "1", False: "0"}[STORE_PROCESS])
            stack.callback(lambda: [w.kill() for w in workers if w.poll() is None])
            for _ in range(processes):
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "faceid", "worker", "--concurrency", str(limit),
                     "--poll-s", "0.02"], env=env, cwd=tmp, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
            for w in workers:  # each prints one line once it is polling
                assert w.stdout is not None
                w.stdout.readline()
            # A long-running worker's store process has long been up: let it finish starting
            # (~0.6 s of imports) rather than bill it to the first answers.
            time.sleep(1.5)
            started = time.perf_counter()
            FetchQueue(engine, cap=limit).enqueue(ids, "bench")
            count = select(func.count()).select_from(Verification)
            while True:
                with engine.connect() as conn:
                    stored = int(conn.execute(count).scalar_one())
                if stored >= n:
                    break
                time.sleep(0.02)
                if time.perf_counter() - started > 120:
                    from faceid.cli.commands.queue_cmd import render

                    print(render(FetchQueue(engine, cap=limit).status(limit=10)))
                    raise RuntimeError("timed out")
            elapsed = time.perf_counter() - started
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(60)
            engine.dispose()
        sim = simulator.stop()
    rate = stored / elapsed
    ceiling = limit / latency
    return {"db": "postgres" if url else "sqlite", "P": processes, "n": n,
            "L_ms": latency * 1000, "C": limit, "stored": stored, "elapsed_s": elapsed,
            "rate": rate, "ceiling": ceiling, "ratio": rate / ceiling,
            "reads": sim["reads_served"], "over_quota": sim["over_quota_reads"],
            "max_in_flight": sim["max_in_flight"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240, help="results per configuration")
    parser.add_argument("--database-url", default=None,
                        help="a scratch PostgreSQL URL (its tables are dropped!); default SQLite")
    parser.add_argument("--processes", default=None, metavar="1,2,4",
                        help="worker-process counts to measure (the queue mode)")
    parser.add_argument("--store-process", choices=("auto", "on", "off"), default="auto",
                        help="store answers in a child process of the worker (decision 31)")
    args = parser.parse_args()
    global STORE_PROCESS
    STORE_PROCESS = {"auto": None, "on": True, "off": False}[args.store_process]
    configs = [(0.200, 4), (0.100, 4), (0.100, 8), (0.050, 8)]
    if args.processes:
        cols = ("db", "P", "n", "L_ms", "C", "stored", "elapsed_s", "rate", "ceiling",
                "ratio", "reads", "over_quota", "max_in_flight")
        print(" | ".join(f"{c:>13}" for c in cols))
        for i, (latency, limit) in enumerate([(0.100, 8), (0.050, 8)]):
            row = run_bare(args.n, latency, limit, seed=100 + i)
            print(" | ".join(f"{row[c]:>13.2f}" if isinstance(row[c], float)
                             else f"{row[c]:>13}" for c in cols), flush=True)
            for p in (int(x) for x in args.processes.split(",")):
                row = run_processes(args.n, latency, limit, seed=10 * i + p, url=args.database_url,
                                    processes=p)
                print(" | ".join(f"{row[c]:>13.2f}" if isinstance(row[c], float)
                                 else f"{row[c]:>13}" for c in cols), flush=True)
        return
    cols = ("db", "n", "L_ms", "C", "stored", "elapsed_s", "rate", "ceiling", "ratio",
            "over_quota", "limit_answers", "max_in_flight")
    print(" | ".join(f"{c:>13}" for c in cols))
    for i, (latency, limit) in enumerate(configs):
        row = run(args.n, latency, limit, seed=i + 1, url=args.database_url)
        print(" | ".join(f"{row[c]:>13.2f}" if isinstance(row[c], float) else f"{row[c]:>13}"
                         for c in cols), flush=True)


if __name__ == "__main__":
    main()
