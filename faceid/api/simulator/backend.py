"""The simulated FaceID behind the HTTP layer (``server``): the page's HTTP status per error
code, the clock of the 1-day window, the stored cases with their 3-reads quota and fault
injection (``SimulatorState``), and the shaping of a stored result to what one request asked
for. Stdlib only, like the rest of the simulator."""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faceid.api.simulator.choices import BILLED_VERIFY_ERRORS, IMAGE_KEYS
from faceid.api.simulator.generate import generate_batch, generate_result

# HTTP status per error code, from the page's two error tables (codes with ":<x>" by prefix).
ERROR_HTTP_STATUS: dict[str, int] = {
    "RESULT_NOT_FOUND": 400,
    "VIDEO_FACE_OCCLUDE": 400,
    "AUTHENTICATION_ERROR": 403,
    "AUTHORIZATION_ERROR": 403,
    "MESSAGE_ENCRYPTION_ERROR": 400,
    "CONCURRENCY_LIMIT_EXCEEDED": 403,
    "MISSING_ARGUMENTS": 400,
    "DATA_DESTROYED": 403,
    "BAD_ARGUMENTS": 400,
    "API_NOT_FOUND": 404,
    "INTERNAL_ERROR": 500,
}
_SINGLE_IMAGE = {"1": "image_best", "2": "image_idcard_front", "3": "image_idcard_back",
                 "5": "image_face_front", "6": "image_face_side"}
# Well-known demo credentials: the simulator serves only synthetic data.
DEMO_API_KEY = "demo-key"
DEMO_API_SECRET = "demo-secret"  # noqa: S105 - public demo value, documented


def http_status_for(error_message: str) -> int:
    """The page's HTTP status for an error code such as ``MISSING_ARGUMENTS:biz_id``."""
    return ERROR_HTTP_STATUS[error_message.split(":", 1)[0]]


# --- clock ----------------------------------------------------------------------------------


class SimClock:
    """Wall clock used for the 1-day expiry; replaceable so tests need not wait a day."""

    def now(self) -> float:
        return time.time()


class FakeClock(SimClock):
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_760_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


# --- state ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    result: dict[str, Any]
    created: float
    reads: int = 0  # reads counted against the quota (successes, maybe injected errors)


class SimulatorState:
    """Thread-safe store of results by biz_id, with the quota rules and test counters.

    Config attributes may be changed between requests (e.g. ``state.latency_s = 0.2``).
    Counters: ``total_requests`` (API path only), ``reads_served`` (200 answers per biz_id),
    ``over_quota_reads`` (200 answers beyond ``max_reads``: must stay 0), ``max_in_flight``,
    ``responses_by_code`` ("OK" or the error code's prefix).
    """

    def __init__(self, *, api_key: str = DEMO_API_KEY, api_secret: str = DEMO_API_SECRET,
                 max_reads: int = 3, ttl_seconds: float = 86400.0, latency_s: float = 0.0,
                 internal_error_rate: float = 0.0, concurrency_limit: int | None = None,
                 internal_error_counts: bool = True, clock: SimClock | None = None,
                 rng_seed: int | None = None, recent: bool = False) -> None:
        self.api_key = api_key
        #: Date generated cases just before the clock's now (demo mode) instead of the fixed
        #: anchor, so their 1-day read window is still open.
        self.recent = recent
        self.api_secret = api_secret
        self.max_reads = max_reads
        self.ttl_seconds = ttl_seconds
        self.latency_s = latency_s
        self.internal_error_rate = internal_error_rate
        self.concurrency_limit = concurrency_limit
        self.internal_error_counts = internal_error_counts
        self.clock = clock or SimClock()
        self._rng = random.Random(rng_seed)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._forced: list[str] = []
        self._next_seed = 10_000_000 + (rng_seed or 0)  # for /_sim/generate; far from seed 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.total_requests = 0
        self.over_quota_reads = 0
        self.reads_served: Counter[str] = Counter()
        self.responses_by_code: Counter[str] = Counter()

    # Cases ----------------------------------------------------------------------------------

    def add(self, result: Mapping[str, Any]) -> str:
        """Store a get_result response (replacing one with the same biz_id); return its biz_id."""
        biz_id = str(result["biz_info"]["biz_id"])
        with self._lock:
            self._entries[biz_id] = _Entry(copy.deepcopy(dict(result)), self.clock.now())
        return biz_id

    def add_generated(self, n: int, seed: int = 0, **kw: Any) -> list[str]:
        """Generate ``n`` cases with ``generate_batch(n, seed, **kw)`` and store them."""
        if self.recent:
            kw.setdefault("anchor", int(self.clock.now()))
        return [self.add(result) for result in generate_batch(n, seed, **kw)]

    def add_fresh(self, n: int, **kw: Any) -> list[str]:
        """Generate ``n`` cases with seeds never used before by this state (demo endpoint)."""
        with self._lock:
            first, self._next_seed = self._next_seed, self._next_seed + n
        if self.recent:
            kw.setdefault("anchor", int(self.clock.now()))
        return [self.add(generate_result(first + i, **kw)) for i in range(n)]

    def biz_ids(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def reads(self, biz_id: str) -> int:
        """Reads counted against the quota so far (KeyError for an unknown biz_id)."""
        with self._lock:
            return self._entries[biz_id].reads

    def result(self, biz_id: str) -> dict[str, Any]:
        """A copy of the stored full result (does not count as a read)."""
        with self._lock:
            return copy.deepcopy(self._entries[biz_id].result)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"biz_id": biz_id, "reads": entry.reads, "created": entry.created}
                    for biz_id, entry in self._entries.items()]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"total_requests": self.total_requests, "max_in_flight": self.max_in_flight,
                    "over_quota_reads": self.over_quota_reads,
                    "reads_served": dict(self.reads_served),
                    "responses_by_code": dict(self.responses_by_code)}

    # Fault injection ------------------------------------------------------------------------

    def fail_next(self, code: str, n: int = 1) -> None:
        """Answer the next ``n`` authenticated, well-formed API requests with ``code``."""
        if code.split(":", 1)[0] not in ERROR_HTTP_STATUS:
            raise ValueError(f"unknown FaceID error code: {code!r}")
        with self._lock:
            self._forced.extend([code] * n)

    def _take_injected_error(self) -> str | None:
        with self._lock:
            if self._forced:
                return self._forced.pop(0)
            if self.internal_error_rate and self._rng.random() < self.internal_error_rate:
                return "INTERNAL_ERROR"
        return None

    # Request bookkeeping --------------------------------------------------------------------

    def _enter(self) -> bool:
        """Admit a request unless the concurrency limit is reached."""
        with self._lock:
            self.total_requests += 1
            if self.concurrency_limit is not None and self.in_flight >= self.concurrency_limit:
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _record_response(self, code: str) -> None:
        with self._lock:
            self.responses_by_code[code.split(":", 1)[0]] += 1

    def _readable(self, entry: _Entry) -> bool:
        fresh = self.clock.now() - entry.created < self.ttl_seconds
        return fresh and entry.reads < self.max_reads

    def _try_read(self, biz_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """Atomically check the quota and count a read: (error code, None) or (None, result)."""
        with self._lock:
            entry = self._entries.get(biz_id)
            if entry is None:
                return "RESULT_NOT_FOUND", None
            if not self._readable(entry):
                return "DATA_DESTROYED", None
            entry.reads += 1
            return None, entry.result

    def _count_ambiguous_read(self, biz_id: str) -> None:
        """An INTERNAL_ERROR after which the server "may have counted" the read."""
        if not self.internal_error_counts:
            return
        with self._lock:
            entry = self._entries.get(biz_id)
            if entry is not None and self._readable(entry):
                entry.reads += 1

    def _record_served(self, biz_id: str) -> None:
        # Counted independently of entry.reads, so a bug in the quota gate would show up here.
        with self._lock:
            self.reads_served[biz_id] += 1
            if self.reads_served[biz_id] > self.max_reads:
                self.over_quota_reads += 1


# --- response shaping -----------------------------------------------------------------------


def images_allowed(result: Mapping[str, Any]) -> bool:
    """The page's rule: liveness passed and a verify result with null or billed error."""
    liveness, verify = result.get("liveness_result"), result.get("verify_result")
    if not isinstance(liveness, dict) or not isinstance(verify, dict):
        return False
    return liveness.get("result") == "PASS" and verify.get("error_message") in (
        None, *BILLED_VERIFY_ERRORS)


def _select_images(stored: Mapping[str, Any], return_image: str) -> dict[str, Any]:
    if return_image == "4":
        return {key: stored[key] for key in IMAGE_KEYS if stored.get(key)}
    key = _SINGLE_IMAGE[return_image]
    return {key: stored.get(key) or None}


def shape_response(result: Mapping[str, Any], *, return_image: str = "0",
                   return_verify_time: str = "0") -> dict[str, Any]:
    """Trim a full stored result to what one request asked for (input is not modified)."""
    shaped = {key: value for key, value in result.items() if key != "images"}
    verify = shaped.get("verify_result")
    if isinstance(verify, dict) and return_verify_time != "1":
        shaped["verify_result"] = {k: v for k, v in verify.items() if k != "verify_time"}
    if return_image != "0" and images_allowed(result):
        stored = result.get("images")
        shaped["images"] = _select_images(stored if isinstance(stored, dict) else {},
                                          return_image)
    return shaped
