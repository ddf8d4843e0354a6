"""The store process a worker starts (``faceid.store.store_process``, decision 31):
``python -m faceid.store.store_child FD``, FD one end of a socket pair.

It receives a ``Setup``, then batches of ``Parcel``s, stores each batch with
``FetchService.store_answers`` and sends the outcomes back (or the type name of what went
wrong); ``None`` or the worker's end closing stops it. It never reads FaceID.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from multiprocessing.connection import Connection

from sqlalchemy.engine import make_url

from faceid.api import redact
from faceid.api.client import FaceIDClient
from faceid.store.db import make_engine
from faceid.store.fetching import FetchService
from faceid.store.fetchqueue import FetchQueue
from faceid.store.store_process import Parcel, Setup

log = logging.getLogger("faceid.store.store_child")


def _no_client() -> FaceIDClient:
    raise RuntimeError("the store process never reads FaceID")


def serve(conn: Connection) -> int:
    try:
        setup = conn.recv()
    except EOFError:  # the worker died before it said anything
        return 0
    if not isinstance(setup, Setup):
        log.error("store process: expected a setup, got %s", type(setup).__name__)
        return 2
    redact.register_secret(make_url(setup.database_url).password)
    try:
        engine = make_engine(setup.database_url)
        hash_key = setup.settings.hash_key()
    except Exception as exc:  # the worker stores its answers itself once this one is gone
        log.error("store process: not started (%s)", type(exc).__name__)
        return 2
    queue = FetchQueue(engine, cap=setup.cap, lease_s=setup.lease_s, owner=setup.owner)
    service = FetchService(engine, _no_client, setup.settings, fetch_queue=queue,
                           retry_delay_s=setup.retry_delay_s)
    try:
        while True:
            try:
                parcels: list[Parcel] | None = conn.recv()
            except EOFError:  # the worker is gone
                return 0
            if parcels is None:
                return 0
            reply: object
            try:
                reply = service.store_answers([p.received(hash_key) for p in parcels])
            except Exception as exc:  # store_answers answers for the database: this is a bug
                log.error("store process: a batch failed (%s)", type(exc).__name__,
                          exc_info=True)
                reply = type(exc).__name__
            try:
                conn.send(reply)
            except OSError:
                return 0
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Its life is its worker's: Ctrl-C in a terminal or systemd's SIGTERM to the whole unit
    # must not kill it mid-batch while the worker, stopping, still sends it what is left.
    # The worker's ``None`` or its end of the socket closing (the worker died) stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install()
    with Connection(int(args[0])) as conn:
        return serve(conn)


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    # Skip the interpreter's teardown (~0.15 s with SQLAlchemy loaded, measured): a stopping
    # worker waits for this exit. The engine is disposed and the log flushed; nothing is left.
    os._exit(code)
