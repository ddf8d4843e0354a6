"""``python -m faceid fetch BIZ_ID... | --from-file FILE [--concurrency N] [--refetch]``.

Each biz_id is committed on its own, so an interrupted run (even ``kill -9``) resumes where it
stopped when re-run: stored biz_ids are skipped without a call, bodies received but not yet
processed are finished first. Exit status 0 only if every biz_id is now stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from faceid.accounts.users import cli_actor
from faceid.api.client import FaceIDClient
from faceid.cli.commands import open_engine
from faceid.core.config import (
    DEFAULT_BASE_URL,
    DEMO_API_KEY,
    DEMO_API_SECRET,
    Settings,
    is_loopback,
    load_settings,
)
from faceid.core.errors import ConfigError
from faceid.store.fetch_outcomes import FetchOutcome
from faceid.store.fetching import FetchService

SIMULATOR_HINT = ("start one with `python -m faceid simulate --port 8900` and set "
                  "FACEID_BASE_URL=http://127.0.0.1:8900")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("biz_ids", nargs="*", metavar="BIZ_ID", help="biz_ids to fetch")
    p.add_argument("--from-file", metavar="FILE",
                   help="read biz_ids from FILE, one per line ('#' comments; '-' = stdin)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="parallel requests (default: FACEID_MAX_CONCURRENCY)")
    p.add_argument("--refetch", action="store_true",
                   help="read stored biz_ids again while FaceID's quota allows (spends a read; "
                        "the first stored copy is kept)")


def build_client(settings: Settings, concurrency: int | None = None) -> FaceIDClient:
    """The live client, or in demo mode one with the demo credentials against a simulator."""
    size = max(1, concurrency or settings.max_concurrency)
    if not settings.demo:
        assert settings.api_key and settings.api_secret
        return FaceIDClient(settings.api_key, settings.api_secret, settings.base_url,
                            timeout_s=settings.timeout_s, max_concurrency=size)
    host = urlsplit(settings.base_url).hostname or ""
    if settings.base_url == DEFAULT_BASE_URL or not is_loopback(host):
        # The demo credentials only open the simulator; sending them to a real FaceID host
        # would just be refused.
        raise ConfigError("Demo mode (no FACEID_API_KEY/FACEID_API_SECRET): there is no FaceID "
                          f"to call. To use the simulator, {SIMULATOR_HINT}.")
    check_simulator(settings.base_url)
    return FaceIDClient(DEMO_API_KEY, DEMO_API_SECRET, settings.base_url,
                        timeout_s=settings.timeout_s, max_concurrency=size)


def check_simulator(base_url: str) -> None:
    """Fail early, in plain words, when nothing answers at FACEID_BASE_URL in demo mode."""
    try:
        httpx.get(f"{base_url}/_sim/biz_ids", timeout=3.0)
    except httpx.HTTPError:
        raise ConfigError(f"Demo mode: nothing answers at {base_url}; {SIMULATOR_HINT}.") \
            from None


def read_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.biz_ids)
    if args.from_file:
        if args.from_file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                lines = Path(args.from_file).read_text(encoding="utf-8-sig").splitlines()
            except OSError as exc:
                raise ConfigError(f"Cannot read {args.from_file}: "
                                  f"{exc.strerror or 'I/O error'}.") from None
        ids += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return ids


def run(args: argparse.Namespace) -> int:
    ids = read_ids(args)
    if not ids:
        print("error: give biz_ids or --from-file FILE", file=sys.stderr)
        return 2
    settings = load_settings()
    engine = open_engine(settings)
    concurrency = max(1, args.concurrency or settings.max_concurrency)
    client = build_client(settings, concurrency)
    service = FetchService(engine, lambda: client, settings)
    failures: list[FetchOutcome] = []
    with tqdm(total=len(set(ids)), file=sys.stderr, unit="id", desc="fetch",
              dynamic_ncols=True) as bar:

        def progress(outcome: FetchOutcome) -> None:
            bar.update(1)
            if not outcome.ok:
                failures.append(outcome)

        try:
            summary = service.fetch_many(ids, cli_actor().username, concurrency=concurrency,
                                         progress=progress, refetch=args.refetch)
        finally:
            client.close()
    for outcome in failures:
        print(f"{outcome.biz_id}: {outcome.message}")
    print(summary.message)
    return 0 if summary.all_ok else 1
