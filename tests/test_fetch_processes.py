"""Fetch once across OS processes: the guarantees hold only because the database enforces them.

Each test starts real ``python -m faceid`` processes (fetch runs, workers, a notify receiver)
against one SQLite file or one PostgreSQL database and a FaceID stand-in that counts every
read (the simulator, in this process, over HTTP). Without the queue's leases, two ``fetch``
runs started together read every biz_id twice; without the slots, N processes exceed the cap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid.api.client import FaceIDClient
from faceid.api.simulator import SimulatorState, generate_result, start_in_thread
from faceid.core.config import Settings
from faceid.store import schema
from faceid.store import write as store
from faceid.store.fetch_jobs import RUNNING
from faceid.store.fetch_outcomes import ALREADY
from faceid.store.fetching import FetchService
from faceid.store.fetchqueue import FetchQueue
from faceid.store.notify import signature
from faceid.store.tables import FetchAttempt, Verification
from tests.conftest import ROOT, empty_engine

KEY = "key-processes"
SECRET = "S3CRET-processes-never-shown"  # noqa: S105
CAP = 3


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    """(engine, DATABASE_URL) of one migrated database that several processes share."""
    engine = empty_engine(request.param, tmp_path)
    schema.upgrade(engine)
    url = (f"sqlite:///{tmp_path}/desk.db" if request.param == "file"
           else os.environ["FACEID_TEST_PG_URL"])
    yield engine, url
    engine.dispose()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(url: str, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEID_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=url, FACEID_BASE_URL=base_url,
               FACEID_API_KEY=KEY, FACEID_API_SECRET=SECRET, FACEID_PII_KEY="proc-pii",
               FACEID_MAX_CONCURRENCY=str(CAP), **extra)
    return env


def faceid_proc(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "faceid", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def recent_cases(state: SimulatorState, n: int, seed: int) -> list[str]:
    now = int(time.time())
    return [state.add(generate_result(seed + i, f"{now},{uuid.UUID(int=seed + i, version=4)}",
                                      status="OK", procedure_type="still"))
            for i in range(n)]


def stored(engine: Engine, ids: list[str]) -> set[str]:
    return store.stored_biz_ids(engine, ids)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_four_fetch_runs_at_once_read_each_biz_id_once(shared_db, tmp_path) -> None:
    engine, url = shared_db
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=0.05)
    ids = recent_cases(state, 40, 1000)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    with start_in_thread(state) as sim:
        env = env_for(url, sim.base_url)
        # --concurrency 4: 8 threads in each of 4 processes, 32 would-be callers, cap 3.
        procs = [faceid_proc(["fetch", "--from-file", "ids.txt", "--concurrency", "4"],
                             env, tmp_path) for _ in range(4)]
        results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, out + err
    assert stored(engine, ids) == set(ids)
    # Exactly one successful read per biz_id, across all four processes.
    assert dict(state.reads_served) == dict.fromkeys(ids, 1)
    assert state.over_quota_reads == 0
    assert state.max_in_flight <= CAP
    # Each biz_id is reported fetched by exactly one run; the others say "already stored".
    fetched = sum(int(out.split("fetched and stored")[0].rsplit(": ", 1)[-1])
                  for out, _ in results)
    assert fetched == len(ids)
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(FetchAttempt)).one() == len(ids)


def test_workers_and_fetch_runs_together_stay_under_the_cap(shared_db, tmp_path) -> None:
    """Two workers and two fetch runs on one queue: the cap is deployment-wide, and a job a
    worker holds is waited for by the fetch run, not read again."""
    engine, url = shared_db
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=0.1)
    ids = recent_cases(state, 24, 2000)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    with start_in_thread(state) as sim:
        env = env_for(url, sim.base_url)
        FetchQueue(engine).enqueue(ids, "cron")  # the backlog the workers start on
        workers = [faceid_proc(["worker", "--concurrency", "4"], env, tmp_path)
                   for _ in range(2)]
        try:
            runs = [faceid_proc(["fetch", "--from-file", "ids.txt"], env, tmp_path)
                    for _ in range(2)]
            for p in runs:
                out, err = p.communicate(timeout=180)
                assert p.returncode == 0, out + err
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                out, err = w.communicate(timeout=60)
                assert w.returncode == 0, out + err
                assert "stopped after" in out
    assert stored(engine, ids) == set(ids)
    assert dict(state.reads_served) == dict.fromkeys(ids, 1)
    assert state.max_in_flight <= CAP
    assert FetchQueue(engine).status().counts[RUNNING] == 0


def test_killed_worker_jobs_finish_on_another_within_the_quota(shared_db, tmp_path) -> None:
    engine, url = shared_db
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=1.5)
    ids = recent_cases(state, 6, 3000)
    with start_in_thread(state) as sim:
        env = env_for(url, sim.base_url, FACEID_FETCH_LEASE_S="2")
        FetchQueue(engine).enqueue(ids, "cron")
        doomed = faceid_proc(["worker"], env, tmp_path)
        try:
            wait_until(lambda: state.in_flight >= 1, 30, "a request in flight")
        finally:
            os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        # Its jobs are stale once the lease runs out, and say so.
        wait_until(lambda: FetchQueue(engine).status().stale >= 1, 10, "a stale lease")
        shown = subprocess.run([sys.executable, "-m", "faceid", "queue"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "STALE" in shown.stdout and "stale" in shown.stdout
        rescuer = faceid_proc(["worker"], env, tmp_path)
        try:
            wait_until(lambda: stored(engine, ids) == set(ids), 60, "every id stored")
        finally:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.communicate(timeout=60)
    assert state.over_quota_reads == 0
    # A read the killed worker had in flight counts as spent; never more than the quota.
    assert all(1 <= state.reads_served[b] <= 2 for b in ids)
    assert sum(state.reads_served.values()) <= len(ids) + CAP
    status = FetchQueue(engine).status()
    assert status.counts[RUNNING] == 0 and status.stale == 0 and status.slots_in_use == 0


def _callback(state: SimulatorState, seed: int) -> tuple[str, str]:
    biz_id = recent_cases(state, 1, seed)[0]
    data = {k: v for k, v in state.result(biz_id).items() if k != "images"}
    return biz_id, json.dumps(data, ensure_ascii=False)


def test_desk_lookup_while_the_notify_worker_fetches_reads_once(shared_db, tmp_path,
                                                                free_port) -> None:
    engine, url = shared_db
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=1.5)
    biz_id, data = _callback(state, 4000)
    with start_in_thread(state) as sim:
        env = env_for(url, sim.base_url)
        receiver = faceid_proc(["notify-server", "--port", str(free_port)], env, tmp_path)
        try:
            base = f"http://127.0.0.1:{free_port}"
            wait_until(lambda: _healthy(base), 30, "the notify receiver")
            reply = httpx.post(base + "/faceid/notify", timeout=10,
                               data={"data": data, "sign": signature(SECRET, data)})
            assert reply.status_code == 200
            # The receiver's worker is now waiting on FaceID for this biz_id ...
            wait_until(lambda: state.in_flight >= 1, 30, "the worker's request")
            # ... when a reviewer on the desk (another process: this one) asks for it.
            settings = Settings(api_key=KEY, api_secret=SECRET, base_url=sim.base_url,
                                pii_key="proc-pii", max_concurrency=CAP)
            with FaceIDClient(KEY, SECRET, sim.base_url) as client:
                desk = FetchService(engine, lambda: client, settings)
                outcome = desk.fetch(biz_id, "alice")
            assert outcome.status == ALREADY and outcome.api_calls == 0, outcome
            assert "another process" in outcome.message
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.communicate(timeout=30)
    assert state.reads_served[biz_id] == 1
    with Session(engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
    assert v.source == "api"  # the full result with images, not the callback copy


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
