"""Import rate of saved get_result files vs a bare ``json.loads`` over the same files.

Writes ``--n`` (default 10 000) saved results (with their JPEG images) to a temp folder, then
times (1) reading + ``json.loads`` of every file, (2) ``import_paths`` into an empty file
SQLite (parse, image checks, inbox, raw response, images, audit: the whole store path). The
ratio says what storing costs over merely reading the JSON.

    .venv/bin/python bench/import_rate.py [--n 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceid import schema  # noqa: E402
from faceid.db import make_engine  # noqa: E402
from faceid.importing import import_paths  # noqa: E402
from faceid.simulator import generate_result  # noqa: E402

DISTINCT = 400  # distinct generated cases; the rest are copies under new biz_ids


def write_files(folder: Path, n: int) -> int:
    base = [generate_result(i) for i in range(min(n, DISTINCT))]
    total = 0
    for i in range(n):
        doc = dict(base[i % len(base)])
        doc["biz_info"] = dict(doc["biz_info"], biz_id=f"{1_760_000_000 + i},{uuid.uuid4()}")
        text = json.dumps(doc, ensure_ascii=False)
        total += len(text.encode())
        sub = folder / f"{i // 1000:03}"  # 1000 files per folder, as an archive would be
        sub.mkdir(exist_ok=True)
        (sub / f"{i:06}.json").write_text(text, encoding="utf-8")
    return total


def bare_loads(folder: Path) -> tuple[float, int]:
    started, count = time.perf_counter(), 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            json.loads(Path(root, name).read_bytes())
            count += 1
    return time.perf_counter() - started, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--database-url", default=None,
                        help="a scratch PostgreSQL URL (its tables are dropped!); default SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "saved"
        folder.mkdir()
        t = time.perf_counter()
        size = write_files(folder, args.n)
        print(f"wrote {args.n} files, {size / 1e6:.0f} MB, in {time.perf_counter() - t:.1f} s")
        bare_loads(folder)  # warm the page cache so both timings read from memory
        loads_s, files = bare_loads(folder)
        engine = make_engine(args.database_url or f"sqlite:///{tmp}/bench.db")
        if args.database_url:
            from sqlmodel import SQLModel

            SQLModel.metadata.drop_all(engine)
        schema.create_all(engine)
        report = import_paths(engine, [folder], hash_key=b"bench", actor="bench")
        again = import_paths(engine, [folder], hash_key=b"bench", actor="bench")
        engine.dispose()
    assert report.imported == args.n and not report.refused, report.message
    rows = [
        ("bare json.loads", files, loads_s),
        (f"import ({engine.dialect.name})", report.imported, report.elapsed_s),
        ("re-import (all duplicates)", again.already_had, again.elapsed_s),
    ]
    print(f"{'step':>28} | {'files':>7} | {'seconds':>8} | {'files/s':>8} | {'x loads':>7}")
    for name, n, secs in rows:
        print(f"{name:>28} | {n:>7} | {secs:>8.2f} | {n / secs:>8.0f} | {secs / loads_s:>7.1f}")


if __name__ == "__main__":
    main()
