"""``python -m faceid simulate``: the FaceID simulator on a real port."""

from __future__ import annotations

import argparse

from faceid.core.config import DEMO_API_KEY, DEMO_API_SECRET


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--count", type=int, default=20, help="cases to generate at start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="share of answers replaced by INTERNAL_ERROR (0..1)")
    p.add_argument("--concurrency-limit", type=int, default=None,
                   help="answer CONCURRENCY_LIMIT_EXCEEDED above this many requests in flight")
    p.add_argument("--api-key", default=DEMO_API_KEY)
    p.add_argument("--api-secret", default=DEMO_API_SECRET)


def run(args: argparse.Namespace) -> int:
    from faceid.api.simulator import SimulatorState, serve

    state = SimulatorState(api_key=args.api_key, api_secret=args.api_secret,
                           latency_s=args.latency_ms / 1000.0,
                           internal_error_rate=args.error_rate,
                           concurrency_limit=args.concurrency_limit, recent=True)
    ids = state.add_generated(args.count, seed=args.seed)
    print(f"FaceID simulator on http://{args.host}:{args.port} with {len(ids)} cases "
          f"(api_key={args.api_key}); GET /_sim/biz_ids lists them.", flush=True)
    for biz_id in ids[:5]:
        print("  ", biz_id)
    serve(args.host, args.port, state)
    return 0
