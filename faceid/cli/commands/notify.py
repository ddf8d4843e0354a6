"""``python -m faceid notify-server [--port 8028] [--host 127.0.0.1] [--workers N]``.

Receives FaceID's notify_url callbacks, checks their signature, stores them and enqueues the
fetch of the full result (with images), which the fetch worker it hosts runs (``--workers 0``:
none; a separate ``python -m faceid worker`` runs the queue). Binds to loopback by default:
put a TLS reverse proxy in front of it on one of the ports FaceID calls (443, 5000, 16003,
8883, 8028).
"""

from __future__ import annotations

import argparse

from faceid.cli.commands import open_engine
from faceid.cli.commands.fetch import build_client
from faceid.core.config import DEMO_API_SECRET, load_settings
from faceid.core.errors import ConfigError
from faceid.store.fetching import FetchService
from faceid.store.notify import NotifyReceiver, serve


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=None, help="default: FACEID_NOTIFY_PORT or 8028")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="threads of the hosted fetch worker (default: twice "
                        "FACEID_MAX_CONCURRENCY; 0: run none, a separate `worker` process runs "
                        "the queue)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = open_engine(settings)
    secret = DEMO_API_SECRET if settings.demo else settings.api_secret
    fetcher: FetchService | None
    try:
        client = build_client(settings)
        fetcher = FetchService(engine, lambda: client, settings)
    except ConfigError as exc:
        if not settings.demo:
            raise
        # Demo mode without a simulator: callbacks are still verified and stored, just not
        # completed with images.
        print(f"warning: {exc} Callbacks will be stored without images.")
        fetcher = None
    receiver = NotifyReceiver(engine, fetcher, api_secret=secret or "",
                              hash_key=settings.hash_key(), worker_threads=args.workers)
    port = args.port if args.port is not None else settings.notify_port
    serve(receiver, args.host, port,
          ready=lambda url: print(f"notify receiver on {url} ({settings.mode_label}); "
                                  "Ctrl-C stops it.", flush=True))
    return 0
