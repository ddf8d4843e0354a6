"""What a fetch answers: the outcome statuses, ``FetchOutcome`` and ``FetchSummary``, a
look-up's ``LookupResult``, and the values ``run_claim`` passes between the request threads
and the storer (``JobState``, ``Answer``, ``Received``).

Plain values, apart from ``faceid.store.fetching.FetchService`` so that the batch machinery
(``fetch_batch``), the ``Worker`` and the commands can use them without importing the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from faceid.core.errors import DataDestroyed, FaceIDError, QuotaExhausted, ResultNotFound
from faceid.store import write as store
from faceid.store.fetch_jobs import Claim, JobView
from faceid.store.quota import QuotaInfo

# Outcome statuses (FetchOutcome.status), also the FetchSummary counters.
STORED = "stored"
ALREADY = "already_stored"
REFETCHED = "refetched"
NOT_FOUND = "not_found"
EXPIRED = "expired"
FAILED = "failed"
#: Not finished within the wait: another process holds the job and is still fetching.
PENDING = "pending"


def actor_name(actor: object) -> str:
    """The audit name of an actor: an ``faceid.actors.Actor`` (its username) or a plain string."""
    name = getattr(actor, "username", actor)
    return str(name) if name else "system"


@dataclass(frozen=True, slots=True)
class LookupResult:
    biz_id: str
    stored: bool
    verification_id: int | None
    quota: QuotaInfo
    message: str
    #: Another process holds the biz_id's job right now (a fetch from here would wait for it).
    fetching_elsewhere: bool = False


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    biz_id: str
    #: stored | already_stored | refetched | not_found | expired | failed
    status: str
    message: str
    verification_id: int | None = None
    #: The ledger outcome of the last attempt (``OK``, ``RESULT_NOT_FOUND`` ...), if any.
    code: str | None = None
    http_status: int | None = None
    #: Requests sent to FaceID for this call (0: answered from the store or refused).
    api_calls: int = 0
    #: Refetch only: whether FaceID's new answer differs from the stored one (sha256).
    body_differs: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status in (STORED, ALREADY, REFETCHED)


@dataclass(slots=True)
class FetchSummary:
    outcomes: list[FetchOutcome] = field(default_factory=list)
    #: Bodies left unprocessed by an earlier run and finished by this one.
    resumed: int = 0
    elapsed_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def stored(self) -> int:
        return self.count(STORED)

    @property
    def already_had(self) -> int:
        return self.count(ALREADY)

    @property
    def refetched(self) -> int:
        return self.count(REFETCHED)

    @property
    def not_found(self) -> int:
        return self.count(NOT_FOUND)

    @property
    def expired(self) -> int:
        return self.count(EXPIRED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def api_calls(self) -> int:
        return sum(o.api_calls for o in self.outcomes)

    @property
    def all_ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def message(self) -> str:
        parts = [f"{self.stored} fetched and stored", f"{self.already_had} already stored"]
        if self.refetched:
            parts.append(f"{self.refetched} refetched")
        parts += [f"{self.not_found} not found at FaceID",
                  f"{self.expired} expired or destroyed", f"{self.failed} failed"]
        text = f"{len(self.outcomes)} biz_id(s): " + ", ".join(parts)
        text += f" ({self.api_calls} call(s) to FaceID in {self.elapsed_s:.1f} s)."
        if self.resumed:
            text += f" Finished {self.resumed} result(s) left over by an interrupted run."
        return text


@dataclass(frozen=True, slots=True)
class JobState:
    """What is known of a biz_id before its run calls FaceID (``FetchService.states``)."""

    verification_id: int | None
    stored_sha256: str | None
    quota: QuotaInfo
    #: The inbox id of an answer received but never stored (an interrupted run's).
    leftover: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A first fetch's 200 answer, committed to the inbox, not yet parsed or stored."""

    ingesting: store.Ingesting
    http_status: int | None
    calls: int


@dataclass(frozen=True, slots=True)
class Received:
    """What ``run_claim`` hands its storer: the job, who asked, and the answer."""

    claim: Claim
    actor: str
    retry_in_s: float | None
    answer: Answer


#: Where ``run_claim`` hands an answer to be stored with others (``AnswerBatcher.put``).
AnswerSink = Callable[[Received], None]


def _outcome_of_other(job: JobView) -> FetchOutcome:
    """What this caller reports for a job another process ran: it never read FaceID."""
    status = job.last_status or FAILED
    if status in (STORED, ALREADY, REFETCHED):
        return FetchOutcome(job.biz_id, ALREADY, "Stored by another process at the same time; "
                            "FaceID was not called by this one.", job.verification_id,
                            job.last_code, job.last_http_status)
    return FetchOutcome(job.biz_id, status,
                        f"Another process tried it: {job.last_message or status}",
                        None, job.last_code, job.last_http_status)


#: The message of a biz_id a stopped batch never sent (``_not_attempted``).
NOT_ATTEMPTED = "Not attempted: an earlier answer showed every call would be refused."


def _not_attempted(biz_id: str) -> FetchOutcome:
    return FetchOutcome(biz_id, FAILED, NOT_ATTEMPTED)


def _db_unreachable(biz_id: str, exc: BaseException) -> FetchOutcome:
    """A biz_id whose run the database stopped before anything was sent (the type only: a
    driver's message can quote a URL or values)."""
    return FetchOutcome(biz_id, FAILED, "The database could not be reached "
                        f"({type(exc).__name__}); rerun to resume.")


def _status_of(exc: FaceIDError) -> str:
    if isinstance(exc, ResultNotFound):
        return NOT_FOUND
    if isinstance(exc, (DataDestroyed, QuotaExhausted)):
        return EXPIRED
    return FAILED


__all__ = [
    "ALREADY",
    "EXPIRED",
    "FAILED",
    "NOT_FOUND",
    "PENDING",
    "REFETCHED",
    "STORED",
    "Answer",
    "AnswerSink",
    "FetchOutcome",
    "FetchSummary",
    "JobState",
    "LookupResult",
    "Received",
    "actor_name",
]
