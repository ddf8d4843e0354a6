"""A FaceID-compatible ``GET /faceid/lite/get_result`` over real HTTP (stdlib only).

Behaviour follows the get_result page: argument checks, authentication, the 3-reads / 1-day
quota (``DATA_DESTROYED``), ``return_image`` / ``return_verify_time`` selection and the error
envelope ``{"error_message", "request_id", "time_used"}`` with the page's HTTP status per code.

Choices the page leaves open:
- Anything other than GET on the API path, and any unknown path, answers 404 ``API_NOT_FOUND``
  (FaceID's code for "no such API"); HEAD gets the same status without a body.
- Checks run in this order: concurrency limit, latency, ``MISSING_ARGUMENTS`` (api_key,
  api_secret, biz_id), ``BAD_ARGUMENTS`` (return_image, return_verify_time),
  ``AUTHENTICATION_ERROR``, forced/injected errors, ``RESULT_NOT_FOUND``, ``DATA_DESTROYED``.
- A read counts only when it succeeds, except an injected ``INTERNAL_ERROR`` which also counts
  when ``internal_error_counts`` is true (the real server may have counted it: clients must not
  assume a retry is free). ``CONCURRENCY_LIMIT_EXCEEDED`` never counts.
- When images are not returnable (liveness not passed, or no billed verify result) the
  ``images`` key is omitted; a requested single image that does not exist is ``null``.

Simulator-only endpoints (not FaceID; for demos and tests, no authentication, bind to loopback):
``GET /_sim/biz_ids`` lists cases, ``POST /_sim/generate?n=5`` adds generated cases.

The query string carries ``api_secret``, so nothing here ever logs it: access lines hold only the
method, a known path (others are logged as ``<other path>``) and the status.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hmac
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from faceid.api.simulator.generate import (
    BILLED_VERIFY_ERRORS,
    IMAGE_KEYS,
    PROCEDURE_TYPES,
    STATUSES,
    generate_batch,
    generate_result,
)

logger = logging.getLogger("faceid.api.simulator.server")

API_PATH = "/faceid/lite/get_result"
SIM_BIZ_IDS_PATH = "/_sim/biz_ids"
SIM_GENERATE_PATH = "/_sim/generate"
_KNOWN_PATHS = frozenset({API_PATH, SIM_BIZ_IDS_PATH, SIM_GENERATE_PATH})
_KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})

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
RETURN_IMAGE_VALUES = frozenset("0123456")
RETURN_VERIFY_TIME_VALUES = frozenset("01")
_SINGLE_IMAGE = {"1": "image_best", "2": "image_idcard_front", "3": "image_idcard_back",
                 "5": "image_face_front", "6": "image_face_side"}
_MAX_GENERATE = 1000
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


def _request_id(clock: SimClock) -> str:
    return f"{int(clock.now())},{uuid.uuid4()}"


def _loggable_path(raw: str | None) -> str:
    """Only known paths are logged: anything else might carry a misplaced secret."""
    try:
        path = urlsplit(raw or "").path
    except ValueError:
        return "<other path>"
    return path if path in _KNOWN_PATHS else "<other path>"


# --- HTTP -----------------------------------------------------------------------------------


class _SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops bursts of connects (1 s SYN retry)

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        self.state = state
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    # Keep-alive connections outlive serve_forever(): track them so that stopping the simulator
    # really stops it (a pooled client must then see a connection error, as with a dead host).
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client hanging up is routine here.
        logger.debug("connection error while serving a request", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients behave as against FaceID
    # Without TCP_NODELAY each keep-alive answer waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "FaceIDSimulator/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections give their thread back
    server: _SimHTTPServer
    _status = 0

    # Dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path, query = self._split()
        if path == API_PATH:
            self._get_result(query)
        elif path == SIM_BIZ_IDS_PATH:
            self._send_json(200, self.server.state.snapshot())
        else:
            self._send_error("API_NOT_FOUND", time.monotonic())

    def do_POST(self) -> None:
        self._discard_body()
        path, query = self._split()
        if path == SIM_GENERATE_PATH:
            self._sim_generate(query)
        else:
            self._send_error("API_NOT_FOUND", time.monotonic())

    def _not_found(self) -> None:
        self._discard_body()
        self._send_error("API_NOT_FOUND", time.monotonic())

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found

    def do_HEAD(self) -> None:
        self._send_error("API_NOT_FOUND", time.monotonic(), body=False)

    # get_result -----------------------------------------------------------------------------

    def _get_result(self, query: str) -> None:
        state, started = self.server.state, time.monotonic()
        if not state._enter():
            # Rejected before any work: never counts as a read, so clients may retry freely.
            state._record_response("CONCURRENCY_LIMIT_EXCEEDED")
            self._send_error("CONCURRENCY_LIMIT_EXCEEDED", started)
            return
        try:
            if state.latency_s > 0:
                time.sleep(state.latency_s)
            status, body = self._process(_first_values(query), started)
            self._send_json(status, body)
        finally:
            state._leave()

    def _process(self, params: dict[str, str], started: float) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        error = _argument_error(params) or self._auth_error(params)
        if error is None:
            error = state._take_injected_error()
            if error == "INTERNAL_ERROR":
                state._count_ambiguous_read(params["biz_id"])
        result: dict[str, Any] | None = None
        if error is None:
            error, result = state._try_read(params["biz_id"])
        if error is not None:
            state._record_response(error)
            return http_status_for(error), self._envelope(error, started)
        assert result is not None
        state._record_served(params["biz_id"])
        state._record_response("OK")
        shaped = shape_response(result, return_image=params.get("return_image", "0"),
                                return_verify_time=params.get("return_verify_time", "0"))
        shaped["request_id"] = _request_id(state.clock)
        shaped["time_used"] = _elapsed_ms(started)
        return 200, shaped

    def _auth_error(self, params: dict[str, str]) -> str | None:
        state = self.server.state
        # Constant-time compares: the simulator doubles as a reference for how to check secrets.
        key_ok = hmac.compare_digest(params["api_key"].encode(), state.api_key.encode())
        secret_ok = hmac.compare_digest(params["api_secret"].encode(), state.api_secret.encode())
        return None if key_ok and secret_ok else "AUTHENTICATION_ERROR"

    # Simulator-only -------------------------------------------------------------------------

    def _sim_generate(self, query: str) -> None:
        params, started = _first_values(query), time.monotonic()
        try:
            n = int(params.get("n", "5"))
        except ValueError:
            n = -1
        if not 1 <= n <= _MAX_GENERATE:
            self._send_error("BAD_ARGUMENTS:n", started)
            return
        kw: dict[str, Any] = {"hostile": params.get("hostile") == "1"}
        for name, allowed in (("status", STATUSES), ("procedure_type", PROCEDURE_TYPES)):
            if name in params:
                if params[name] not in allowed:
                    self._send_error(f"BAD_ARGUMENTS:{name}", started)
                    return
                kw[name] = params[name]
        self._send_json(200, {"biz_ids": self.server.state.add_fresh(n, **kw)})

    # Plumbing -------------------------------------------------------------------------------

    def _split(self) -> tuple[str, str]:
        parts = urlsplit(self.path)
        return parts.path, parts.query

    def _discard_body(self) -> None:
        # Unread bodies would be parsed as the next request on a keep-alive connection.
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 0:
            self.rfile.read(min(length, 1 << 20))
        if length > 1 << 20:
            self.close_connection = True

    def _envelope(self, code: str, started: float) -> dict[str, Any]:
        return {"error_message": code, "request_id": _request_id(self.server.state.clock),
                "time_used": _elapsed_ms(started)}

    def _send_error(self, code: str, started: float, body: bool = True) -> None:
        self._send_json(http_status_for(code), self._envelope(code, started), body=body)

    def _send_json(self, status: int, payload: Any, body: bool = True) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, URI too long...).

        The stdlib version echoes the raw request line, which holds api_secret, into both the
        response body and the log; answer with the FaceID envelope instead.
        """
        self.close_connection = True
        payload = {"error_message": HTTPStatus(code).name,
                   "request_id": _request_id(self.server.state.clock), "time_used": 0}
        self._send_json(code, payload, body=getattr(self, "command", "") != "HEAD")

    # Logging: never format the stdlib's arguments, they contain the request line -----------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._status = int(code) if str(code).isdigit() else 0
        self.log_message("")

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("request error (details withheld: they may contain api_secret)")

    def log_message(self, format: str, *args: Any) -> None:
        command = getattr(self, "command", None) or "-"
        method = command if command in _KNOWN_METHODS else "<other method>"
        logger.info("%s %s %s", method, _loggable_path(getattr(self, "path", None)),
                    self._status or "-")


def _first_values(query: str) -> dict[str, str]:
    """Query parameters, first value of each; blank values are kept (and then "missing")."""
    parsed = parse_qs(query, keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _argument_error(params: Mapping[str, str]) -> str | None:
    for key in ("api_key", "api_secret", "biz_id"):
        if not params.get(key):
            return f"MISSING_ARGUMENTS:{key}"
    if params.get("return_image", "0") not in RETURN_IMAGE_VALUES:
        return "BAD_ARGUMENTS:return_image"
    if params.get("return_verify_time", "0") not in RETURN_VERIFY_TIME_VALUES:
        return "BAD_ARGUMENTS:return_verify_time"
    return None


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# --- running --------------------------------------------------------------------------------


class SimServer:
    """Handle on a simulator running in a background thread; a context manager."""

    def __init__(self, httpd: _SimHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.state = httpd.state
        host, port = httpd.server_address[:2]
        self.host, self.port = str(host), int(port)
        self.base_url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting requests and release the port (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.close_open_connections()
        self._httpd.server_close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_in_thread(state: SimulatorState | None = None, host: str = "127.0.0.1",
                    port: int = 0) -> SimServer:
    """Start a simulator in a daemon thread; ``port=0`` picks a free port (see ``base_url``).

    With ``state=None`` the store starts empty: add cases via ``server.state``.
    """
    httpd = _SimHTTPServer((host, port), state or SimulatorState())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              name="faceid-simulator", daemon=True)
    thread.start()
    return SimServer(httpd, thread)


DEMO_CASES = 50


def serve(host: str = "127.0.0.1", port: int = 8900, state: SimulatorState | None = None) -> None:
    """Run the simulator in the foreground until interrupted (demo/CLI entry point).

    With ``state=None`` it starts with ``DEMO_CASES`` generated cases so a demo has data.
    """
    if state is None:
        state = SimulatorState()
        state.add_generated(DEMO_CASES)
    httpd = _SimHTTPServer((host, port), state)
    logger.warning("FaceID simulator on http://%s:%d (%d cases)", host, httpd.server_address[1],
                   len(state.biz_ids()))
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.close_open_connections()
        httpd.server_close()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FaceID Lite get_result simulator (demo/tests)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--cases", type=int, default=DEMO_CASES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hostile-rate", type=float, default=0.05)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state = SimulatorState()
    state.add_generated(args.cases, args.seed, hostile_rate=args.hostile_rate)
    serve(args.host, args.port, state)


if __name__ == "__main__":
    main()
