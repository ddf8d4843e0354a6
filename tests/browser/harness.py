"""Reusable pieces for driving a real Streamlit server with Playwright + Debian chromium.

Plain functions (no pytest fixtures) so they can be imported by any test module; the fixtures that
wrap them live in ``conftest.py`` next to this file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FACEID_ARTIFACTS", REPO_ROOT / "artifacts"))
DEFAULT_CHROMIUM = "/usr/bin/chromium"

# Flags from the machine notes: as root chromium needs --no-sandbox, and without the
# background-networking flags it keeps dialling Google hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Streamlit 1.67 renders these attributes on the root element (checked in its JS bundle):
# data-test-script-state is "initial" until the first script run has an id, then one of
# notRunning/running/rerunRequested/stopRequested/compilationError; data-test-connection-state is
# INITIAL/CONNECTING/CONNECTED/... . "notRunning" alone is not enough: it is also the state of a
# session whose websocket dropped.
APP_SELECTOR = "[data-testid='stApp']"
IDLE_SELECTOR = (
    "[data-testid='stApp'][data-test-script-state='notRunning']"
    "[data-test-connection-state='CONNECTED']"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally, but fail under CI=true: a missing tool must not turn CI green."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    return os.environ.get("FACEID_CHROMIUM", DEFAULT_CHROMIUM)


def free_port() -> int:
    # Ask the kernel for an unused port; the tiny race until streamlit binds it is acceptable
    # because a lost race shows up as a server that dies, which run_streamlit reports.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def run_streamlit(
    script: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    timeout: float = 60.0,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Run ``streamlit run SCRIPT`` (cwd = repo root) and yield its base URL.

    ``env`` is added on top of the current environment. The server's stdout+stderr go straight to
    ``artifacts/streamlit-<script>-<port>.log`` (a file, not a pipe, so a chatty server can never
    block on a full pipe). Fails the test with that log if the server dies or is not healthy within
    ``timeout`` seconds. On exit the whole process group is terminated (then killed).
    ``args`` are more ``streamlit run`` options (e.g. ``--secrets.files PATH``).
    """
    port = port or free_port()
    script_path = Path(script)
    if not script_path.is_absolute():
        script_path = REPO_ROOT / script_path
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"streamlit-{_slug(script_path.stem)}-{port}.log"
    # The desk starts through scripts/desk.py (what `make run` uses); other apps directly.
    launch = ([sys.executable, str(REPO_ROOT / "scripts" / "desk.py")]
              if script_path.resolve() == (REPO_ROOT / "dashboard.py").resolve()
              else [sys.executable, "-m", "streamlit", "run", str(script_path)])
    cmd = [
        *launch,
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        # No file watcher: tests never edit the app, and watching costs CPU and inotify handles.
        "--server.fileWatcherType", "none",
        *args,
    ]  # fmt: skip
    full_env = {**os.environ, **(env or {})}
    base_url = f"http://127.0.0.1:{port}"

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group, so teardown also reaches anything streamlit spawned.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        try:
            _wait_healthy(proc, f"{base_url}/_stcore/health", log_path, timeout)
            yield base_url
        finally:
            _stop_group(proc)


def _die_with_parent():
    """preexec_fn: make the server get SIGTERM when pytest dies without running teardown.

    A CI timeout or Ctrl-C kills pytest's process group, but the server is in its own group, and
    Python's default SIGTERM handling skips ``finally`` blocks: without this, servers leak.
    Linux-only (prctl); elsewhere it is a no-op.
    """
    parent = os.getpid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    if not hasattr(libc, "prctl"):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # pytest already died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"streamlit exited with code {proc.returncode} before becoming healthy; "
                f"log {log_path}:\n{_read_log(log_path)}",
                pytrace=False,
            )
        if _health_ok(url):
            return
        time.sleep(0.25)
    pytest.fail(
        f"streamlit not healthy at {url} after {timeout:.0f}s; log {log_path}:\n"
        f"{_read_log(log_path)}",
        pytrace=False,
    )


def _read_log(path: Path, limit: int = 20_000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read log: {exc}>"
    return text[-limit:]


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# What Playwright says when an evaluate meets a navigation (the wording differs by phase).
_NAVIGATING = re.compile(r"Execution context was destroyed|Cannot find context with specified id")


def app_state(page) -> tuple[str | None, str | None]:
    """(script state, connection state) of the Streamlit root element, or Nones if absent.

    Nones too while the page is being replaced: st.login/st.logout and an IdP's redirects
    navigate the tab, and a landmark can already show on the page that is about to go (st.logout
    reruns the script before the browser leaves), so the evaluate may land in a destroyed
    context. That is "not idle yet", not a failure: wait_idle keeps polling the new page.
    """
    # Imported here, like the fixtures do, so that importing the harness never needs playwright.
    from playwright.sync_api import Error as PlaywrightError

    # One evaluate, so both attributes come from the same DOM snapshot.
    try:
        state = page.evaluate(
            """(sel) => {
                const el = document.querySelector(sel);
                return el ? [el.getAttribute("data-test-script-state"),
                             el.getAttribute("data-test-connection-state")] : [null, null];
            }""",
            APP_SELECTOR,
        )
    except PlaywrightError as exc:
        if not _NAVIGATING.search(str(exc)):
            raise
        return None, None
    return state[0], state[1]


def wait_idle(page, timeout: float = 30000, settle: float = 300) -> None:
    """Wait (ms) until the app is connected, has run its script, and is not running.

    Robust to the first render: before the first run the root says "initial", not "notRunning".
    Robust to a just-triggered rerun: a click reaches the server asynchronously, so for a moment
    the page still says "notRunning" from the previous run; the idle state must therefore hold
    for ``settle`` ms in a row. For assertions on content, still prefer Playwright's auto-waiting
    ``expect(...)``. On timeout, saves a screenshot and raises AssertionError.
    """
    deadline = time.monotonic() + timeout / 1000
    idle_since: float | None = None
    while True:
        now = time.monotonic()
        if app_state(page) == ("notRunning", "CONNECTED"):
            idle_since = now if idle_since is None else idle_since
            if (now - idle_since) * 1000 >= settle:
                return
        else:
            idle_since = None
        if now > deadline:
            script_state, conn = app_state(page)
            shot = screenshot(page, "wait_idle-timeout")
            raise AssertionError(
                f"Streamlit app not idle after {timeout:.0f} ms "
                f"(script state={script_state!r}, connection={conn!r}); screenshot {shot}"
            )
        page.wait_for_timeout(50)


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG to artifacts/screenshots/NAME.png and return its path."""
    out_dir = ARTIFACTS / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_slug(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
