"""Synchronous client for ``GET /faceid/lite/get_result`` that respects the 3-read quota.

The client returns the raw body of a successful answer and never parses it: the caller stores
it first ("fetch once, keep forever"), then parses. Every attempt is announced to an
``AttemptLog`` *before* the request goes out, so the ledger knows about a read even if the
process dies while waiting for FaceID.

Retry policy (field notes): answers that cannot have counted a read (connection failures,
CONCURRENCY_LIMIT_EXCEEDED) are retried with exponential backoff and jitter; ambiguous ones
(INTERNAL_ERROR, read timeouts) at most once; everything else never.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from faceid.api import redact
from faceid.core.config import DEFAULT_BASE_URL, check_base_url
from faceid.core.errors import (
    AmbiguousTransportError,
    APIError,
    FaceIDError,
    InvalidRequest,
    NetworkError,
    TransportError,
    api_error,
)

log = logging.getLogger(__name__)
API_PATH = "/faceid/lite/get_result"
RETURN_IMAGE_ALL = 4

# A process-wide cap: Streamlit serves each browser session in its own thread, and they all
# share FaceID's concurrency limit.
_process_limiters: dict[int, threading.BoundedSemaphore] = {}
_limiters_lock = threading.Lock()


def process_limiter(size: int) -> threading.BoundedSemaphore:
    with _limiters_lock:
        return _process_limiters.setdefault(size, threading.BoundedSemaphore(size))


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """A successful (HTTP 200) answer, exactly as received."""

    biz_id: str
    http_status: int
    body: bytes
    attempts: int
    elapsed_s: float


class AttemptLog(Protocol):
    """Where attempts are recorded; ``before`` runs before the request is sent."""

    def before(self, biz_id: str, attempt: int) -> Any: ...

    def after(self, token: Any, outcome: str, http_status: int | None) -> None: ...


class _NoLog:
    def before(self, biz_id: str, attempt: int) -> None:
        return None

    def after(self, token: Any, outcome: str, http_status: int | None) -> None:
        return None


def outcome_code(exc: BaseException | None) -> str:
    """Short outcome label for the ledger: ``OK`` or the error code."""
    if exc is None:
        return "OK"
    if isinstance(exc, APIError):
        return exc.code
    if isinstance(exc, NetworkError):
        return "NETWORK_ERROR"
    if isinstance(exc, AmbiguousTransportError):
        return "AMBIGUOUS_TRANSPORT"
    return type(exc).__name__


class FaceIDClient:
    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 15.0,
        max_concurrency: int = 4,
        limiter: threading.Semaphore | None = None,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key or not api_secret:
            raise InvalidRequest("api_key and api_secret are required.")
        self._key, self._secret = api_key, api_secret
        redact.register_secret(api_secret)
        redact.install()
        self.base_url = check_base_url(base_url)
        self._limiter = limiter or process_limiter(max_concurrency)
        self._max_attempts = max_attempts
        self._wait = wait_exponential_jitter(
            multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
            follow_redirects=False,  # a redirect would resend the secret to another URL
            headers={"User-Agent": "faceid-review-desk"},
        )

    def __repr__(self) -> str:  # never show the secret, even in a debugger
        return f"FaceIDClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FaceIDClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_result(
        self,
        biz_id: str,
        *,
        return_image: int = RETURN_IMAGE_ALL,
        return_verify_time: bool = True,
        attempts: AttemptLog | None = None,
    ) -> RawAnswer:
        """Read one result. Raises an ``APIError`` subclass or a ``TransportError``."""
        biz_id = _check_args(biz_id, return_image)
        params = {
            "api_key": self._key,
            "api_secret": self._secret,
            "biz_id": biz_id,
            "return_image": str(return_image),
            "return_verify_time": "1" if return_verify_time else "0",
        }
        recorder = attempts or _NoLog()
        ambiguous = 0

        def retryable(exc: BaseException) -> bool:
            nonlocal ambiguous
            policy = getattr(exc, "retry", "never")
            if policy == "once":
                ambiguous += 1
                return ambiguous <= 1
            return policy == "backoff"

        counter = {"n": 0}
        started = time.monotonic()

        def attempt() -> RawAnswer:
            counter["n"] += 1
            return self._attempt(biz_id, params, recorder, counter["n"], started)

        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            reraise=True,
            sleep=self._sleep,
        )
        return retrying(attempt)

    def _attempt(
        self, biz_id: str, params: dict[str, str], recorder: AttemptLog, n: int, started: float
    ) -> RawAnswer:
        with self._limiter:
            token = recorder.before(biz_id, n)
            status: int | None = None
            error: FaceIDError | None = None
            body = b""
            try:
                response = self._http.get(API_PATH, params=params)
                status, body = response.status_code, response.content
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                error = NetworkError()
            except (httpx.TimeoutException, httpx.TransportError):
                # Read/write timeouts, dropped connections: FaceID may have counted the read.
                error = AmbiguousTransportError()
            if error is None and status != 200:
                error = _error_from_answer(status, body)
            recorder.after(token, outcome_code(error), status)
        log.info("get_result biz_id=%s attempt=%d outcome=%s http=%s",
                 biz_id, n, outcome_code(error), status)
        if error is not None:
            # Raised outside the except block, so no httpx exception (whose text holds the
            # URL, and so the secret) is chained to ours as __context__.
            raise error
        assert status is not None
        return RawAnswer(biz_id, status, body, n, time.monotonic() - started)


def _check_args(biz_id: str, return_image: int) -> str:
    if not isinstance(biz_id, str) or not biz_id.strip():
        raise InvalidRequest("biz_id is empty.")
    if len(biz_id) > 256 or any(ord(c) < 32 for c in biz_id):
        raise InvalidRequest("biz_id is too long or contains control characters.")
    if isinstance(return_image, bool) or return_image not in range(7):
        raise InvalidRequest(f"return_image must be 0..6, got {return_image!r}.")
    return biz_id.strip()


def _error_from_answer(status: int | None, body: bytes) -> FaceIDError:
    message = request_id = None
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            message, request_id = doc.get("error_message"), doc.get("request_id")
    except ValueError:
        doc = None
    if isinstance(message, str) and message:
        return api_error(message, http_status=status, request_id=_str(request_id))
    if status is not None and status >= 500:
        # A proxy's 502/503/504 with no FaceID code: the read may or may not have counted.
        return AmbiguousTransportError(f"FaceID answered HTTP {status} with no error code.")
    return api_error(None, http_status=status, request_id=_str(request_id))


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


__all__ = [
    "API_PATH",
    "AttemptLog",
    "FaceIDClient",
    "RawAnswer",
    "TransportError",
    "outcome_code",
    "process_limiter",
]
