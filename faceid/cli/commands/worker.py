"""``python -m faceid worker [--concurrency N]``: run the durable fetch queue until stopped.

Any number of workers may run beside the desk, the notify receiver and ``fetch`` runs, on one
machine or several sharing PostgreSQL: the queue's leases let exactly one of them read each
biz_id, and the request slots keep all of them together within ``FACEID_MAX_CONCURRENCY``.
SIGTERM or Ctrl-C stops claiming; the jobs under way finish first.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from faceid.cli.commands import open_engine
from faceid.cli.commands.fetch import build_client
from faceid.core.config import load_settings
from faceid.store.fetching import FetchService
from faceid.store.worker import DEFAULT_IDLE_S, Worker


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="requests this worker may have in flight, with 2N threads (default: "
                        "FACEID_MAX_CONCURRENCY; all processes together stay within that cap "
                        "whatever N is)")
    p.add_argument("--poll-s", type=float, default=DEFAULT_IDLE_S, metavar="S",
                   help=f"how often an idle thread asks the queue for work (default "
                        f"{DEFAULT_IDLE_S}; a job enqueued by another process waits up to "
                        "this long)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = open_engine(settings)
    in_flight = max(1, args.concurrency or settings.max_concurrency)
    threads = 2 * in_flight
    client = build_client(settings, in_flight)
    fetcher = FetchService(engine, lambda: client, settings)
    worker = Worker(fetcher, threads=threads, idle_s=max(0.01, args.poll_s))

    def stop(signum: int, _frame: FrameType | None) -> None:
        print(f"worker: {signal.Signals(signum).name}, finishing the jobs under way",
              file=sys.stderr, flush=True)
        worker.stop_soon()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {fetcher.queue.owner}: {threads} thread(s), deployment cap "
          f"{settings.max_concurrency} request(s) in flight ({settings.mode_label}); "
          "Ctrl-C stops it.", flush=True)
    try:
        worker.run_forever()
    finally:
        fetcher.queue.close()
        client.close()
    print(f"worker: stopped after {worker.runs} job(s).", flush=True)
    return 0
