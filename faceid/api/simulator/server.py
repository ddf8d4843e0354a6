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
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from faceid.api.simulator.backend import SimClock, SimulatorState, http_status_for, shape_response
from faceid.api.simulator.choices import PROCEDURE_TYPES, STATUSES

logger = logging.getLogger("faceid.api.simulator.server")

API_PATH = "/faceid/lite/get_result"
SIM_BIZ_IDS_PATH = "/_sim/biz_ids"
SIM_GENERATE_PATH = "/_sim/generate"
_KNOWN_PATHS = frozenset({API_PATH, SIM_BIZ_IDS_PATH, SIM_GENERATE_PATH})
_KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})

RETURN_IMAGE_VALUES = frozenset("0123456")
RETURN_VERIFY_TIME_VALUES = frozenset("01")
_MAX_GENERATE = 1000


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
