"""Import rate of saved get_result files against the floor any importer must pay.

Writes ``--n`` (default 10 000) saved results (with their JPEG images) to a temp folder, then
times, on SQLite and on PostgreSQL, in one run:

1. the **floor**: read every file, ``json.loads`` it, base64-decode and sha256 every image,
   insert the raw body and the image blobs with ``executemany`` (Core ``insert``), commit every
   500 files. Nothing less can keep a copy of what was imported;
2. ``import_paths`` into an empty database: the whole store path (inbox commit first, parse,
   JPEG checks, verification + raw response + image rows, hash-chained audit entry, export
   line, idempotence by biz_id);
3. the same import again: every document is already stored.

Targets (decision 24): import ≤ 3× the floor, re-import ≤ 1.5× the floor. PostgreSQL: the
``--database-url`` scratch database (its tables are dropped!), else a throwaway cluster started
with ``scripts/pg-temp.sh`` when the server binaries are installed; ``--no-pg`` skips it.
``--profile`` also prints where the SQLite import spends its time (cProfile, by phase).

    .venv/bin/python bench/import_rate.py [--n 10000] [--database-url URL] [--no-pg]
        [--workers N] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import glob
import hashlib
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, LargeBinary, MetaData, String, Table, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from faceid.api.simulator import generate_result  # noqa: E402
from faceid.store import audit, importing, schema  # noqa: E402
from faceid.store.db import make_engine  # noqa: E402
from faceid.store.importing import ImportReport, import_paths  # noqa: E402

DISTINCT = 400  # distinct generated cases; the rest are copies under new biz_ids
FLOOR_COMMIT_EVERY = 500


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


def files_of(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield Path(root, name)


def images_of(doc: dict) -> Iterator[str]:
    yield from (v for v in (doc.get("images") or {}).values() if isinstance(v, str) and v)
    if isinstance(doc.get("multifaces_image"), str) and doc["multifaces_image"]:
        yield doc["multifaces_image"]


def floor(folder: Path, engine: Engine) -> tuple[float, int]:
    """Read + json.loads + b64decode + sha256 + executemany of bodies and blobs, commit/500."""
    meta = MetaData()
    docs = Table("floor_docs", meta, Column("id", Integer, primary_key=True),
                 Column("body", LargeBinary))
    imgs = Table("floor_images", meta, Column("id", Integer, primary_key=True),
                 Column("doc_id", Integer), Column("sha256", String(64)),
                 Column("data", LargeBinary))
    meta.drop_all(engine)
    meta.create_all(engine)
    started, count, img_id = time.perf_counter(), 0, 0
    bodies: list[dict] = []
    blobs: list[dict] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(docs), bodies)
            if blobs:
                conn.execute(insert(imgs), blobs)
        bodies.clear()
        blobs.clear()

    for path in files_of(folder):
        raw = path.read_bytes()
        doc = json.loads(raw)
        for value in images_of(doc):
            data = base64.b64decode(value.split(",", 1)[1])
            img_id += 1
            blobs.append({"id": img_id, "doc_id": count, "data": data,
                          "sha256": hashlib.sha256(data).hexdigest()})
        bodies.append({"id": count, "body": raw})
        count += 1
        if len(bodies) >= FLOOR_COMMIT_EVERY:
            flush()
    if bodies:
        flush()
    secs = time.perf_counter() - started
    meta.drop_all(engine)
    return secs, count


def fresh_engine(url: str) -> Engine:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        from sqlmodel import SQLModel

        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        SQLModel.metadata.drop_all(engine)
    schema.create_all(engine)
    return engine


def run_db(name: str, url: str, floor_url: str, folder: Path, n: int,
           workers: int | None) -> list[tuple]:
    floor_engine = make_engine(floor_url)
    floor_s, files = floor(folder, floor_engine)
    floor_engine.dispose()
    engine = fresh_engine(url)

    def run() -> ImportReport:
        return import_paths(engine, [folder], hash_key=b"bench", actor="bench",
                            workers=workers)

    report = run()
    again = run()
    from sqlmodel import Session

    with Session(engine) as s:
        chain = audit.verify_chain(s)
    engine.dispose()
    assert report.imported == n and not report.refused, report.message
    assert again.already_had == n and again.imported == 0, again.message
    assert chain.ok and chain.checked == n, chain.describe()
    return [
        (f"floor ({name})", files, floor_s, floor_s),
        (f"import ({name})", report.imported, report.elapsed_s, floor_s),
        (f"re-import, duplicates ({name})", again.already_had, again.elapsed_s, floor_s),
    ]


# --------------------------------------------------------------------------- PostgreSQL


def start_pg(state: Path) -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return None
    env = dict(os.environ, FACEID_PG_STATE=str(state))
    script = str(ROOT / "scripts" / "pg-temp.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True, capture_output=True)
    return subprocess.run(["bash", script, "url"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def stop_pg(state: Path) -> None:
    env = dict(os.environ, FACEID_PG_STATE=str(state))
    subprocess.run(["bash", str(ROOT / "scripts" / "pg-temp.sh"), "stop"], env=env,
                   capture_output=True)


# --------------------------------------------------------------------------- profile

#: Phases of the store path: (file, function) whose cumulative time is the phase. "~" is a
#: C function, matched by a substring of its name.
PHASES: dict[str, tuple[str, str]] = {
    "read files (walk, read_bytes)": ("import_files.py", "_read"),
    "decode + biz_id (json.loads, unwrap)": ("importing.py", "_candidate"),
    "skip stored (one IN query per batch)": ("write.py", "stored_biz_ids"),
    "inbox commit (executemany)": ("write.py", "_receive"),
    "prepare rows (all below)": ("prepare.py", "prepare"),
    "  parse (model, images)": ("parse.py", "parse_document"),
    "    of which base64 decode": ("images.py", "_b64decode"),
    "    of which JPEG checks (Pillow)": ("images.py", "check_jpeg"),
    "  elide images (raw body)": ("rawdoc.py", "elide_images"),
    "  queryable columns (summary)": ("summary.py", "columns"),
    "write transaction (all below)": ("write.py", "_write"),
    "  insert cases (executemany)": ("write.py", "_insert_cases"),
    "  export lines (render + insert)": ("export_lines.py", "keep_lines_fresh"),
    "  audit chain (append_many)": ("audit.py", "append_many"),
    "  SQLite COMMIT (all transactions)": ("~", "'commit' of 'sqlite3.Connection'"),
}


def profile_import(folder: Path, url: str) -> pstats.Stats:
    """A separate import under cProfile, parsing in-process (``workers=0``) so every phase is
    seen: one profiler for the reading thread, one for the storing thread, merged. The
    numbers are CPU work per phase (both threads summed), not the wall time."""
    engine = fresh_engine(url)
    storing = cProfile.Profile()
    step = importing._Storer._step

    def profiled_step(self: importing._Storer, *args: object) -> None:
        storing.runcall(step, self, *args)

    importing._Storer._step = profiled_step  # type: ignore[method-assign]
    try:
        reading = cProfile.Profile()
        reading.runcall(import_paths, engine, [folder], hash_key=b"bench", actor="bench",
                        workers=0)
    finally:
        importing._Storer._step = step  # type: ignore[method-assign]
        engine.dispose()
    stats = pstats.Stats(reading)
    stats.add(storing)
    return stats


def print_profile(stats: pstats.Stats, n: int) -> None:
    raw = stats.stats  # type: ignore[attr-defined]

    def secs(file: str, func: str) -> float:
        return sum(v[3] for (f, _line, name), v in raw.items()
                   if (func in name if file == "~" else f.endswith(file) and name == func))

    phases = {label: secs(*where) for label, where in PHASES.items()}
    # Top-level phases (no indent) do not overlap: their sum is the work, waits excluded.
    total = sum(v for label, v in phases.items() if not label.startswith(" "))
    print(f"\nprofile of a SQLite import of {n} files, parsing in-process (cProfile, both "
          f"threads; {total:.2f} s of work with the profiler's overhead):")
    for label, value in phases.items():
        print(f"  {label:40} {value:6.2f} s {1e6 * value / n:6.0f} µs/file "
              f"{100 * value / total:5.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--database-url", default=None,
                        help="a scratch PostgreSQL URL (its tables are dropped!)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--profile", action="store_true",
                        help="then profile a SQLite import, by phase")
    parser.add_argument("--workers", type=int, default=None,
                        help="parsing processes (default: import_paths' own choice)")
    args = parser.parse_args()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "saved"
        folder.mkdir()
        t = time.perf_counter()
        size = write_files(folder, args.n)
        print(f"wrote {args.n} files, {size / 1e6:.0f} MB, in {time.perf_counter() - t:.1f} s")
        for path in files_of(folder):  # warm the page cache: every timing reads from memory
            path.read_bytes()
        rows += run_db("SQLite", f"sqlite:///{tmp}/bench.db", f"sqlite:///{tmp}/floor.db",
                       folder, args.n, args.workers)
        if not args.no_pg:
            state = Path(tmp) / "pg.state"
            url = args.database_url or start_pg(state)
            try:
                if url:
                    rows += run_db("PostgreSQL", url, url, folder, args.n, args.workers)
                else:
                    print("PostgreSQL: no server binaries and no --database-url; skipped")
            finally:
                if not args.database_url:
                    stop_pg(state)
    print(f"\n{'step':>34} | {'files':>7} | {'seconds':>8} | {'files/s':>8} | {'x floor':>7}")
    for name, n, secs, floor_s in rows:
        print(f"{name:>34} | {n:>7} | {secs:>8.2f} | {n / secs:>8.0f} | {secs / floor_s:>7.2f}")
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "saved"
            folder.mkdir()
            write_files(folder, args.n)
            print_profile(profile_import(folder, f"sqlite:///{tmp}/profile.db"), args.n)


if __name__ == "__main__":
    main()
