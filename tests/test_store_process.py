"""A worker's answers stored by a child process (decision 31): every answer stored once, in
the child, with the jobs finished and let go; the worker storing them itself when the child
is killed; the child told no FaceID credentials, and gone when its worker dies."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import Engine

from faceid.core.config import Settings, load_settings
from faceid.store import store_process
from faceid.store.db import make_engine, memory_engine
from faceid.store.fetch_jobs import DONE
from faceid.store.fetching import FetchService
from faceid.store.store_process import StoreProcess, child_settings, wanted
from faceid.store.tables import Verification
from faceid.store.worker import Worker
from tests import test_fetching
from tests.test_answer_batches import working
from tests.test_fetching import SECRET, count, fresh

clock, sim, client = test_fetching.clock, test_fetching.sim, test_fetching.client
ROOT = Path(__file__).resolve().parent.parent
APART = dataclasses.replace(test_fetching.SETTINGS, store_process=True)


def _service(engine: Engine, client, clock, settings: Settings = APART) -> FetchService:
    return FetchService(engine, lambda: client, settings, clock=clock.now)


def _gone(pid: int) -> bool:
    """Exited (a zombie no one reaped counts: it runs no more)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_worker_stores_every_answer_in_its_child_once(mt_engine, sim, client, clock) -> None:
    service = _service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 7000 + i) for i in range(12)]
    worker = Worker(service, threads=4, idle_s=0.02)
    with working(worker, ids):
        child = worker._store
        assert child is not None and child.alive and child.pid != os.getpid()
        _wait(lambda: count(mt_engine, Verification) == len(ids), 30, "every case stored")
    assert child.batches >= 1 and child.fallbacks == 0
    assert _gone(child.pid)  # stopped with its worker
    assert dict(sim.state.reads_served) == dict.fromkeys(ids, 1)
    jobs = service.queue.jobs(ids)
    assert {j.state for j in jobs.values()} == {DONE}
    assert all(j.verification_id is not None for j in jobs.values())
    # The child finished the jobs as this process's lease owner; this process let them go.
    assert service.queue.held() == (set(), set())


def test_the_worker_stores_answers_itself_once_its_child_is_killed(
        mt_engine, sim, client, clock) -> None:
    service = _service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 7100 + i) for i in range(6)]
    worker = Worker(service, threads=4, idle_s=0.02)
    worker.start()
    try:
        child = worker._store
        assert child is not None and child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        _wait(lambda: _gone(child.pid), 10, "the child to die")
        service.queue.enqueue(ids, "ops")
        worker.wake()
        _wait(lambda: {j.state for j in service.queue.jobs(ids).values()} == {DONE}, 60,
              "every job done")
    finally:
        worker.stop()
    assert not child.alive and child.fallbacks >= 1
    assert count(mt_engine, Verification) == len(ids)
    assert dict(sim.state.reads_served) == dict.fromkeys(ids, 1)
    assert service.queue.held() == (set(), set())


def test_the_child_is_told_no_faceid_credentials(monkeypatch, tmp_path, client, clock) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/desk.db")
    monkeypatch.setenv("FACEID_API_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/desk.db")
    told = child_settings(APART)
    assert told is not None and told.api_key is None and told.api_secret is None
    # Spelled out: without credentials the child would otherwise take the demo key.
    assert told.pii_key is not None and told.hash_key() == APART.hash_key()
    child = _service(engine, client, clock).store_process()
    assert child is not None and child.pid is not None
    try:
        environ = Path(f"/proc/{child.pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
    finally:
        child.close()
    assert SECRET.encode() not in environ and b"FACEID_API_SECRET" not in environ
    assert b"DATABASE_URL" not in environ
    assert b"sqlite" not in cmdline and SECRET.encode() not in cmdline
    assert _gone(child.pid)


def test_no_child_without_a_hash_key_to_give_it() -> None:
    live = Settings(api_key="k", api_secret="s", store_process=True)
    assert child_settings(live) is None  # the store here raises the configuration error


def test_the_child_ignores_sigterm_and_exits_when_its_worker_is_killed(mt_engine, tmp_path) -> None:
    url = mt_engine.url.render_as_string(hide_password=False)
    script = textwrap.dedent(f"""
        import sys, time
        from faceid.core.config import Settings
        from faceid.store.db import make_engine
        from faceid.store.fetching import FetchService
        from faceid.store.worker import Worker
        service = FetchService(make_engine({url!r}), lambda: None,
                               Settings(pii_key="p", store_process=True))
        worker = Worker(service, threads=1, idle_s=0.5)
        worker.start()
        print(worker._store.pid, flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(1.0)  # its imports done, waiting for batches
        # systemd stops a unit with SIGTERM to every process in it: the child outlives that
        # until its worker lets it go (here: dies).
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        assert not _gone(pid)
    finally:
        parent.kill()
        parent.wait(10)
    _wait(lambda: _gone(pid), 15, "the orphaned child to exit")


def test_which_databases_get_a_child(tmp_path, monkeypatch) -> None:
    sqlite_file = make_engine(f"sqlite:///{tmp_path}/desk.db")
    auto, on, off = Settings(), Settings(store_process=True), Settings(store_process=False)
    assert not wanted(sqlite_file, auto)  # one writer per file: measured, no gain
    assert wanted(sqlite_file, on) and not wanted(sqlite_file, off)
    # An in-memory database is one process's: a child would see another, empty one.
    assert not wanted(memory_engine(), on)
    pg = make_engine("postgresql+psycopg://u:p@127.0.0.1:1/x")  # never connected
    monkeypatch.setattr(store_process.os, "cpu_count", lambda: 2)
    assert wanted(pg, auto) and not wanted(pg, off)
    monkeypatch.setattr(store_process.os, "cpu_count", lambda: 1)
    assert not wanted(pg, auto)


def test_the_setting_reads_auto_on_and_off() -> None:
    def read(value: str) -> bool | None:
        return load_settings({"FACEID_STORE_PROCESS": value}, {}).store_process
    assert read("auto") is None and read("1") is True and read("off") is False
    assert load_settings({}, {"faceid": {"store_process": True}}).store_process is True


def test_a_short_fetch_many_stores_in_this_process(mt_engine, sim, client, clock,
                                                   monkeypatch) -> None:
    def refuse(self):  # pragma: no cover - the assertion is that it is never called
        raise AssertionError("a short batch started a store process")
    monkeypatch.setattr(StoreProcess, "start", refuse)
    service = _service(mt_engine, client, clock)
    ids = [fresh(sim, clock, 7200 + i) for i in range(3)]
    summary = service.fetch_many(ids, "ops", concurrency=2)
    assert summary.stored == len(ids)
