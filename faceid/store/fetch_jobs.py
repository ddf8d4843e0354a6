"""The fetch queue's values: the job states, a held job (``Claim``), a run's outcome for it
(``Outcome``, ``Finished``), what a job looks like from outside (``JobView``,
``describe_job``) and the queue's status (``QueueStatus``).

Apart from ``faceid.store.fetchqueue`` so that the fetch service, its batches and the commands
can name them without the queue's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this process holds the lease of: it, and only it, may call FaceID for biz_id."""

    job_id: int
    biz_id: str
    refetch: bool
    tries: int
    max_tries: int
    requested_by: str | None


@dataclass(frozen=True, slots=True)
class Finished:
    """What ``finish`` left: the job's state, and whether callbacks wait on the outcome."""

    state: str
    callbacks_waiting: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """A run's outcome for ``finish_many`` (the arguments of ``finish``)."""

    claim: Claim
    ok: bool
    status: str
    message: str
    code: str | None = None
    http_status: int | None = None
    verification_id: int | None = None
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class JobView:
    biz_id: str
    state: str
    tries: int
    max_tries: int
    requested_by: str | None
    requested_at: float
    lease_owner: str | None
    lease_until: float | None
    not_before: float | None
    finished_at: float | None
    last_status: str | None
    last_code: str | None
    last_http_status: int | None
    last_message: str | None
    verification_id: int | None

    def stale(self, now: float) -> bool:
        """Running, but its holder stopped renewing the lease (crashed, killed, cut off)."""
        return self.state == RUNNING and (self.lease_until or 0) < now


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """What ``python -m faceid queue`` and the desk show about the fetch queue."""

    now: float
    counts: dict[str, int]
    stale: int
    #: Jobs due but waiting for a retry time (a callback's transient failure).
    retry_waiting: int
    slots_in_use: int
    cap: int
    #: The jobs a person may want to look at: running, queued, failed (newest first).
    jobs: list[JobView]

    @property
    def active(self) -> int:
        return self.counts.get(QUEUED, 0) + self.counts.get(RUNNING, 0)


def describe_job(job: JobView, now: float) -> str:
    """One plain line about a job (the ``queue`` verb and the desk's queue panel)."""
    by = f"asked by {job.requested_by}" if job.requested_by else "asked"
    tries = f"try {job.tries} of {job.max_tries}"
    if job.state == RUNNING:
        left = (job.lease_until or 0) - now
        if left < 0:
            return (f"STALE: {job.lease_owner} stopped renewing its lease {-left:.0f} s ago "
                    f"({tries}, {by})")
        return f"held by {job.lease_owner}, lease {left:.0f} s left ({tries}, {by})"
    last = f"; last: {job.last_message}" if job.last_message else ""
    if job.state == QUEUED and job.not_before is not None and job.not_before > now:
        return f"retry in {job.not_before - now:.0f} s ({tries}, {by}){last}"
    return f"{tries}, {by}{last}"


__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "STATES",
    "Claim",
    "Finished",
    "JobView",
    "Outcome",
    "QueueStatus",
    "describe_job",
]
