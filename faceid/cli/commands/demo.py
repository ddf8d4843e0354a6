"""``python -m faceid demo-seed [--count 60] [--if-empty]``: fill the desk with simulated cases.

The cases go through the real path: an in-process simulator serves them over HTTP, and the real
``FaceIDClient`` + ``FetchService`` fetch and store them (ledger, inbox, audit trail included),
so the demo shows exactly what a live fetch would have stored. Refuses to run with live FaceID
credentials: synthetic people must never land in a live database.
"""

from __future__ import annotations

import argparse
import copy
import functools
import random
import time
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from faceid.api.client import FaceIDClient
from faceid.cli.commands import open_engine
from faceid.core.config import DEMO_API_KEY, DEMO_API_SECRET, load_settings
from faceid.store.fetching import FetchService
from faceid.store.tables import Verification

DEMO_ACTOR = "demo-seed"
HOSTILE_CASES = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=60, help="cases to generate (default 60)")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when the database already holds cases (for `make run`)")
    p.add_argument("--seed", type=int, default=None,
                   help="generator seed (default: varies with what is already stored)")


DEMO_SPREAD_S = 14 * 86400  # demo cases are spread over the last two weeks


def demo_cases(count: int, seed: int = 0, now: int | None = None) -> list[dict[str, Any]]:
    """``count`` varied cases: every status, every procedure type, hostile OCR text, and one
    person seen twice (same ID number, another name) for the linked-identity view. Dated over
    the two weeks before ``now`` (default: the fixed simulator anchor, for repeatable tests)."""
    from faceid.api.simulator import PROCEDURE_TYPES, STATUSES

    generate_result = functools.partial(_generate, anchor=now)

    base = seed * 100_003
    cases: list[dict[str, Any]] = []
    cases += [generate_result(base + i, status="OK", procedure_type=p)
              for i, p in enumerate(PROCEDURE_TYPES)]
    cases += [generate_result(base + 10 + i, status=s, procedure_type=PROCEDURE_TYPES[i % 5])
              for i, s in enumerate(x for x in STATUSES if x != "OK")]
    cases += [generate_result(base + 20 + i, hostile=True) for i in range(HOSTILE_CASES)]
    cases += same_person_pair(base + 30, now)
    i = 100
    while len(cases) < count:
        cases.append(generate_result(base + i))
        i += 1
    return cases[:count]


def _generate(seed: int, *, anchor: int | None = None, **kw: Any) -> dict[str, Any]:
    from faceid.api.simulator import generate_result

    spread = DEMO_SPREAD_S if anchor is not None else None
    return generate_result(seed, anchor=anchor, spread_s=spread, **kw)


def same_person_pair(seed: int, now: int | None = None) -> list[dict[str, Any]]:
    """Two OK cases for one ID number; the second under a different name."""
    first = _with_idcard(seed, now)
    second = _with_idcard(seed + 5_000, now)
    info1, info2 = first["idcard_info"], second["idcard_info"]
    number = info1["idcard_number"]
    other_name = info1["idcard_name"][:-1] + random.Random(seed).choice("伟芳娜敏静丽强磊军洋")
    if other_name == info1["idcard_name"]:
        other_name += "华"
    info2["idcard_number"], info2["idcard_name"] = number, other_name
    ocr = (info2.get("front_side") or {}).get("ocr_result")
    if isinstance(ocr, dict):
        ocr["id_card_number"], ocr["name"] = number, other_name
    return [first, second]


def _with_idcard(seed: int, now: int | None = None) -> dict[str, Any]:
    for s in range(seed, seed + 200):
        case = _generate(s, anchor=now, status="OK")
        info = case.get("idcard_info")
        if isinstance(info, dict) and info.get("idcard_number") and info.get("idcard_name"):
            return copy.deepcopy(case)
    raise RuntimeError("the simulator produced no case with ID card data")  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.demo:
        print("error: demo-seed only runs in demo mode (FaceID credentials are configured: "
              "synthetic cases must not enter a live database).")
        return 2
    engine = open_engine(settings)
    with Session(engine) as s:
        existing = int(s.exec(select(func.count()).select_from(Verification)).one())
    if args.if_empty and existing:
        print(f"demo-seed: the database already holds {existing} case(s); nothing to do.")
        return 0
    from faceid.api.simulator import SimulatorState, start_in_thread

    seed = args.seed if args.seed is not None else existing
    cases = demo_cases(max(0, args.count), seed, now=int(time.time()))
    with start_in_thread(SimulatorState()) as sim:
        ids = [sim.state.add(case) for case in cases]
        with FaceIDClient(DEMO_API_KEY, DEMO_API_SECRET, sim.base_url,
                          max_concurrency=settings.max_concurrency) as client:
            service = FetchService(engine, lambda: client, settings)
            summary = service.fetch_many(ids, DEMO_ACTOR, concurrency=settings.max_concurrency)
    print(f"demo-seed: {len(cases)} simulated case(s) fetched through the real client. "
          f"{summary.message}")
    return 0 if summary.all_ok else 1
