"""Memory of the dashboard process serving the insight pages over 100k verifications.

Fills a file SQLite with ``--n`` (default 100 000) verifications the way ``export_speed.py``
does (bulk insert, then ``fill_lines``), starts the real desk (``scripts/desk.py``, demo mode)
on it, and drives Debian's chromium through the pages a reviewer and an admin use: the queue,
Failed verifications, Compare (picker), Reports, and the CSV export (the deferred download
button: the server builds the file when it is clicked). After each step it reads the server's
resident memory (``VmRSS``) and peak (``VmHWM``) from ``/proc``.

The reference is the memory a page would need if it loaded the whole table into pandas (what
"no whole-table DataFrames" rules out): ``pandas.read_sql`` of ``verifications``, measured
with ``DataFrame.memory_usage(deep=True)`` in this process.

    .venv/bin/python bench/dashboard_memory.py [--n 100000] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from bench.export_speed import checkpoint, seed  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store.db import make_engine  # noqa: E402
from faceid.store.export_lines import fill_lines  # noqa: E402

IDLE = ("[data-testid='stApp'][data-test-script-state='notRunning']"
        "[data-test-connection-state='CONNECTED']")
CHART = "[data-testid='stVegaLiteChart']"


def mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_idle(page: Page, settle_ms: int = 500, timeout_s: float = 120) -> None:
    """Idle for ``settle_ms`` in a row (a click reaches the server asynchronously)."""
    deadline = time.monotonic() + timeout_s
    since = None
    while time.monotonic() < deadline:
        if page.locator(IDLE).count():
            since = since or time.monotonic()
            if (time.monotonic() - since) * 1000 >= settle_ms:
                return
        else:
            since = None
        page.wait_for_timeout(50)
    raise TimeoutError("the desk did not become idle")


def start_desk(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_PII_KEY")}
    env["DATABASE_URL"] = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "desk.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"desk exited; see {log}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, base
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"desk not healthy; see {log}")


def visit(db: Path, log: Path, chromium: str) -> list[tuple[str, float, float, float]]:
    """Start the desk on ``db``, walk the pages; (step, seconds, RSS, peak) after each."""
    proc, base = start_desk(db, log)
    steps: list[tuple[str, float, float, float]] = [("desk started, no session yet", 0.0,
                                                     *mib(proc.pid))]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000},
                                    accept_downloads=True)
            nav = page.get_by_test_id("stSidebarNav")

            def step(name: str, action: Callable[[], Any]) -> None:
                t = time.perf_counter()
                action()
                wait_idle(page)
                steps.append((name, time.perf_counter() - t, *mib(proc.pid)))

            def as_admin() -> None:
                sidebar = page.get_by_test_id("stSidebar")
                sidebar.get_by_role("combobox", name="Demo user (switch to try claim "
                                    "conflicts)").click()
                page.get_by_role("option", name="Demo Admin (admin)").click()

            def export() -> None:
                with page.expect_download(timeout=120_000) as dl:
                    page.get_by_role("button", name="Export CSV").click()
                dl.value.path()  # the whole file has arrived

            step("queue (first session)", lambda: page.goto(base))
            step("Failed verifications", lambda: nav.get_by_text("Failed verifications").click())
            step("switch to the demo admin", as_admin)
            step("Compare (picker)", lambda: nav.get_by_text("Compare", exact=True).last.click())
            step("Reports (charts)", lambda: nav.get_by_text("Reports").click())
            page.locator(CHART).first.wait_for(timeout=60_000)
            step("Export CSV (all rows, masked)", export)
            step("Failed verifications again",
                 lambda: nav.get_by_text("Failed verifications").click())
            browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    return steps


def build(db: Path, n: int) -> float:
    """A desk database with ``n`` cases and their export lines; returns the size of the
    whole-table DataFrame (MiB) a careless page would build."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        schema.upgrade(engine)
        seed(engine, n)
        fill_lines(engine)
        frame = pd.read_sql("SELECT * FROM verifications", engine)
        size = float(frame.memory_usage(deep=True).sum()) / 2**20
        checkpoint(engine, db)
        return size
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000,
                        help="the same walk on this many cases: the data-independent baseline")
    parser.add_argument("--chromium", default=os.environ.get("FACEID_CHROMIUM",
                                                             "/usr/bin/chromium"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faceid-mem-bench-"))
    try:
        runs = {}
        frames = {}
        for n in (args.small, args.n):
            db = work / f"desk-{n}.db"
            frames[n] = build(db, n)
            runs[n] = visit(db, work / f"desk-{n}.log", args.chromium)
        small, large = runs[args.small], runs[args.n]
        print(f"whole-table DataFrame (pandas.read_sql, deep): {frames[args.n]:.1f} MiB at "
              f"{args.n} cases, {frames[args.small]:.1f} MiB at {args.small}")
        print(f"{'step':<32} {'RSS MiB @' + str(args.small):>14} {'RSS MiB @' + str(args.n):>15}"
              f" {'s @' + str(args.n):>10}")
        for (name, _, rss_s, _), (_, secs, rss_l, _) in zip(small, large, strict=True):
            print(f"{name:<32} {rss_s:14.1f} {rss_l:15.1f} {secs:10.2f}")
        peak_s = max(h for *_, h in small)
        peak_l = max(h for *_, h in large)
        extra = peak_l - peak_s
        print(f"peak RSS: {peak_s:.1f} MiB @{args.small}, {peak_l:.1f} MiB @{args.n}: "
              f"{extra:+.1f} MiB for {args.n - args.small} more cases = "
              f"{extra / frames[args.n]:.2f}x one whole-table DataFrame")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
