"""``python -m faceid import PATH... [--workers N]``: import saved get_result JSON (files or
folders).

Shows a progress bar (files, files/s, ETA) on stderr, then prints ``PATH: reason`` for each
refused document and a summary. Exit 1 if any was refused. Interrupted (even ``kill -9``)? Run
the same command again: what was committed is kept, the rest is finished.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from faceid.accounts.users import cli_actor
from faceid.cli.commands import open_engine
from faceid.core.config import load_settings
from faceid.store.import_files import count_files
from faceid.store.importing import ImportReport, import_paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="files (any name) or folders (searched for *.json, *.jsonl, *.form); "
                        "saved notify callbacks (data=...&sign=...) are unwrapped")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that parse documents beside the one that stores them "
                        "(default: 1 on a multi-core machine; 0: parse in this process)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = open_engine(settings)
    # Counting is a listing of the folders, no file is opened: cheap next to the import, and
    # it gives the bar its ETA.
    with tqdm(total=count_files(args.paths), file=sys.stderr, unit="file", desc="import",
              dynamic_ncols=True) as bar:

        def progress(report: ImportReport) -> None:
            bar.update(report.files - bar.n)

        report = import_paths(engine, args.paths, hash_key=settings.hash_key(),
                              actor=cli_actor().username, progress=progress,
                              workers=None if args.workers is None else max(0, args.workers))
    for refusal in report.refused:
        print(refusal)
    print(report.message)
    return 0 if report.ok else 1
