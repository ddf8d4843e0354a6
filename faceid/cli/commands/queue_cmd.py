"""``python -m faceid queue [--limit 50]``: what the durable fetch queue holds right now.

Counts per state, the request slots in use against the cap, and the jobs a person may need to
look at: running (with their holder and how long their lease has left), *stale* ones (running,
but the holder stopped renewing: killed or cut off; any worker takes them over), queued ones
(and when a retry is due) and failures with FaceID's reason. Reads only; never calls FaceID.
"""

from __future__ import annotations

import argparse

from faceid.cli.commands import open_engine
from faceid.core.config import load_settings
from faceid.store.fetch_jobs import QueueStatus, describe_job
from faceid.store.fetchqueue import FetchQueue


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=50, help="jobs to list (default 50)")


def render(status: QueueStatus) -> str:
    c = status.counts
    lines = [
        f"fetch queue: {c['queued']} queued ({status.retry_waiting} waiting for a retry), "
        f"{c['running']} running ({status.stale} stale), {c['done']} done, "
        f"{c['failed']} failed",
        f"request slots: {status.slots_in_use} of {status.cap} in use",
    ]
    for job in status.jobs:
        lines.append(f"  {job.state:<8} {job.biz_id}  {describe_job(job, status.now)}")
    if status.stale:
        lines.append("stale: the holder stopped renewing its lease (killed or cut off); the "
                     "next worker or fetch run takes the job over, and the ledger decides "
                     "whether a read is left.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    queue = FetchQueue(open_engine(settings), cap=settings.max_concurrency,
                       lease_s=settings.fetch_lease_s)
    print(render(queue.status(limit=max(1, args.limit))))
    return 0
