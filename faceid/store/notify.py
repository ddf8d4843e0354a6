"""Receiver for FaceID's notify_url callback (server-to-server form POST: ``data`` + ``sign``).

Why the stdlib ``ThreadingHTTPServer`` and not Starlette/Uvicorn (which Streamlit ships): the
receiver is one endpoint whose work is blocking (SQL, the sync FaceID client), so an event loop
would only add thread hops; and Starlette/Uvicorn are Streamlit's transitive dependencies, not
ours to pin, so a Streamlit upgrade could move them under us. The stdlib server is enough for a
callback rate of a few per second, and the handler reads at most ``max_body`` bytes.

Per request:
1. The signature is checked first: ``sign == sha1(api_secret + data).hexdigest()`` over the
   ``data`` value exactly as received (url-decoded, never re-serialised: field notes), with
   ``hmac.compare_digest``. A bad or missing ``sign`` gets 403, a log line (no secret, no
   payload) and nothing stored.
2. A good one is committed to the inbox (``store.receive(source="notify")``), tagged with its
   biz_id, a fetch job is enqueued in the durable queue (``faceid.fetchqueue``), and 200 is
   answered at once: FaceID should not wait on our database or on FaceID itself.
3. A fetch worker — the one this receiver hosts, or any ``python -m faceid worker`` sharing the
   database — then fetches the full result *with images* (the callback carries none), which
   spends no read when the biz_id is already stored. A transient failure is tried again later
   (``fetch_tries`` in all). Once the job is final, the callback's inbox row is settled
   (``FetchService.settle_callbacks``): a duplicate of the stored result is only marked done;
   if the fetch failed for good, the callback's own data is stored so the case is not lost.
   All of this lives in the database, so a receiver killed at any point loses nothing: the job
   or the inbox row is picked up again (by ``start`` here, or by any worker).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from faceid.api.parse import loads_document
from faceid.core.errors import DocumentError
from faceid.store import write as store
from faceid.store.fetching import FetchService
from faceid.store.tables import Inbox
from faceid.store.worker import Worker

log = logging.getLogger(__name__)

DEFAULT_PORT = 8028  # one of the five ports FaceID will call (443, 5000, 16003, 8883, 8028)
#: get_result without images is a few KB; a generous cap that still stops abuse.
DEFAULT_MAX_BODY = 256 * 1024


def signature(api_secret: str, data: str) -> str:
    """FaceID's sign: lowercase hex SHA-1 of the secret followed by the data (not an HMAC)."""
    return hashlib.sha1((api_secret + data).encode("utf-8")).hexdigest()  # noqa: S324


def sign_ok(api_secret: str, data: str, sign: str) -> bool:
    expected = signature(api_secret, data).encode()
    return hmac.compare_digest(expected, sign.strip().lower().encode("utf-8"))


class NotifyReceiver:
    """Verifies and stores callbacks and enqueues their fetch; hosts a fetch worker."""

    def __init__(self, engine: Engine, fetcher: FetchService | None, *, api_secret: str,
                 hash_key: bytes, actor: str = "notify", max_body: int = DEFAULT_MAX_BODY,
                 fetch_tries: int = 3, retry_delay_s: float = 30.0,
                 worker_threads: int | None = None) -> None:
        """``worker_threads``: threads of the hosted fetch worker (None: twice the cap; 0:
        none, a separate ``python -m faceid worker`` runs the queue)."""
        if not api_secret:
            raise ValueError("the notify receiver needs the api_secret to check signatures")
        self.engine, self.fetcher = engine, fetcher
        self._secret, self._hash_key, self.actor = api_secret, hash_key, actor
        self.max_body = max_body
        self._tries = max(1, fetch_tries)
        self.worker: Worker | None = None
        if fetcher is not None and worker_threads != 0:
            self.worker = Worker(fetcher, threads=worker_threads, name="notify-worker",
                                 retry_delay_s=retry_delay_s)
        self.accepted = self.rejected = 0

    # ------------------------------------------------------------------ request side

    def handle(self, body: bytes, content_type: str | None, peer: str) -> tuple[int, str]:
        """Check and store one callback body; return (HTTP status, short reply text)."""
        ctype = (content_type or "application/x-www-form-urlencoded").split(";")[0].strip()
        if ctype.lower() != "application/x-www-form-urlencoded":
            return 415, "expected a form-encoded body"
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return 400, "unreadable form body"
        data, sign = fields.get("data", []), fields.get("sign", [])
        if len(data) != 1:
            return 400, "expected one data field"
        if len(sign) != 1 or not sign_ok(self._secret, data[0], sign[0]):
            self.rejected += 1
            # Neither the payload (personal data) nor the expected sign (derived from the
            # secret) goes into the log.
            log.warning("notify callback from %s refused: %s signature (%d bytes)", peer,
                        "missing" if len(sign) != 1 else "bad", len(body))
            return 403, "bad signature"
        raw = data[0].encode("utf-8")
        inbox_id = store.receive(self.engine, raw, source="notify", origin=f"notify from {peer}")
        self.accepted += 1
        self._route(inbox_id, raw)
        log.info("notify callback from %s stored as inbox row %d", peer, inbox_id)
        return 200, "OK"

    def _route(self, inbox_id: int, body: bytes) -> None:
        """After the body is committed: enqueue the fetch of its biz_id, or store what the
        callback holds when there is nothing to fetch with."""
        biz_id = _biz_id_of(body)
        if biz_id is None or self.fetcher is None:
            # Not a result (kept in the inbox with the reason), or no FaceID to fetch from:
            # the callback's own data is all there is.
            store.process(self.engine, inbox_id, hash_key=self._hash_key, actor=self.actor)
            return
        with Session(self.engine) as s:
            row = s.get(Inbox, inbox_id)
            if row is not None and row.biz_id is None:
                row.biz_id = biz_id
                s.add(row)
                s.commit()
        self.fetcher.queue.enqueue([biz_id], self.actor, max_tries=self._tries)
        if self.worker is not None:
            self.worker.wake()

    # ------------------------------------------------------------------ worker side

    def start(self) -> None:
        """Pick up callbacks an earlier run stored but never finished, then start the worker."""
        with Session(self.engine) as s:
            pending = s.exec(select(Inbox.id, Inbox.biz_id, Inbox.body).where(
                Inbox.source == "notify", col(Inbox.processed_at).is_(None))
                .order_by(col(Inbox.id))).all()
        tagged = [b for _, b, _ in pending if b is not None]
        if tagged and self.fetcher is not None:
            self.fetcher.queue.enqueue(tagged, self.actor, max_tries=self._tries)
        for inbox_id, biz_id, body in pending:
            # Untagged (stored, then the receiver died before reading its biz_id), or no
            # FaceID to fetch from: route it as a new callback would be.
            if inbox_id is not None and body is not None and (
                    biz_id is None or self.fetcher is None):
                self._route(inbox_id, body)
        if self.worker is not None:
            self.worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.worker is not None:
            self.worker.stop(timeout)

    def pending(self) -> int:
        """Callbacks stored but not yet settled."""
        with Session(self.engine) as s:
            return len(s.exec(select(Inbox.id).where(
                Inbox.source == "notify", col(Inbox.processed_at).is_(None))).all())

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every stored callback is settled (tests, shutdown). True if it was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return False


def _biz_id_of(body: bytes) -> str | None:
    try:
        biz = loads_document(body).get("biz_info")
    except DocumentError:
        return None
    biz_id = biz.get("biz_id") if isinstance(biz, dict) else None
    return biz_id.strip() if isinstance(biz_id, str) and biz_id.strip() else None


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: NotifyReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaceIDReviewDesk-notify"
    sys_version = ""
    timeout = 15  # a slow or idle client gives its thread back
    # Headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms for
    # the peer's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, "Content-Length required", close=True)
            return
        if length < 0 or length > receiver.max_body:
            # Not read: closing the connection is cheaper than draining an oversized body.
            self._reply(413, "body too large", close=True)
            return
        body = self.rfile.read(length)
        status, text = receiver.handle(body, self.headers.get("Content-Type"),
                                       self.client_address[0])
        self._reply(status, text)

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/healthz", "/_health"):
            self._reply(200, json.dumps({"status": "ok",
                                         "accepted": self.server.receiver.accepted,
                                         "rejected": self.server.receiver.rejected}),
                        "application/json")
        else:
            self._reply(405, "POST the callback here")

    def _reply(self, status: int, text: str, ctype: str = "text/plain; charset=utf-8",
               close: bool = False) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib line holds the request path; the path is ours, but keep the log to what
        # an operator needs and never anything a caller sent.
        log.info("%s %s", self.client_address[0], getattr(self, "command", "-"))

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("notify request error from %s", self.client_address[0])


class NotifyServer:
    """A receiver served from a background thread; a context manager."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd, self._thread = httpd, thread
        self.receiver = httpd.receiver
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        self.receiver.stop()

    def __enter__(self) -> NotifyServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_in_thread(receiver: NotifyReceiver, host: str = "127.0.0.1",
                    port: int = 0) -> NotifyServer:
    receiver.start()
    httpd = _Server((host, port), receiver)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              name="faceid-notify", daemon=True)
    thread.start()
    return NotifyServer(httpd, thread)


def serve(receiver: NotifyReceiver, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until interrupted (the CLI verb)."""
    receiver.start()
    httpd = _Server((host, port), receiver)
    if ready is not None:
        ready(f"http://{host}:{httpd.server_address[1]}")
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        receiver.stop()


__all__ = ["DEFAULT_PORT", "NotifyReceiver", "NotifyServer", "serve", "sign_ok", "signature",
           "start_in_thread"]
