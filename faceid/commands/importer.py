"""``python -m faceid import PATH...``: import saved get_result JSON (files or folders).

Prints ``PATH: reason`` for each refused document, then a summary. Exit 1 if any was refused.
"""

from __future__ import annotations

import argparse

from faceid.commands import open_engine
from faceid.config import load_settings
from faceid.importing import import_paths
from faceid.users import cli_actor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files (any name) or folders (searched for *.json, *.jsonl, *.form); "
                        "saved notify callbacks (data=...&sign=...) are unwrapped")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = open_engine(settings)
    report = import_paths(engine, args.paths, hash_key=settings.hash_key(),
                          actor=cli_actor().username)
    for refusal in report.refused:
        print(refusal)
    print(report.message)
    return 0 if report.ok else 1
