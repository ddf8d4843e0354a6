"""CLI verbs fetch / import / demo-seed, run as a user would (subprocesses where it matters),
including a real ``kill -9`` in the middle of a bulk fetch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid.api.simulator import (
    PROCEDURE_TYPES,
    STATUSES,
    SimulatorState,
    generate_result,
    shape_response,
    start_in_thread,
)
from faceid.api.simulator.choices import HOSTILE_NAME
from faceid.cli import main as cli
from faceid.store import write as store
from faceid.store.db import make_engine
from faceid.store.fetching import pending_count
from faceid.store.tables import FetchAttempt, Inbox, RawResponse, StoredImage, Verification

ROOT = Path(__file__).resolve().parent.parent
KEY = "key-cli-tests"
SECRET = "CLI-s3cret-never-printed"  # noqa: S105


def env_for(tmp_path: Path, base_url: str | None = None, live: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEID_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{tmp_path}/desk.db")
    if base_url:
        env["FACEID_BASE_URL"] = base_url
    if live:  # live mode against the simulator on loopback (plain http is allowed there)
        env.update(FACEID_API_KEY=KEY, FACEID_API_SECRET=SECRET, FACEID_PII_KEY="cli-pii")
    return env


def faceid(tmp_path: Path, *args: str, env: dict[str, str],
           timeout: float = 60) -> subprocess.CompletedProcess:
    # cwd=tmp_path: no .streamlit/secrets.toml of the checkout is read.
    return subprocess.run([sys.executable, "-m", "faceid", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def db(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path}/desk.db")


def count(engine: Engine, table) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


@pytest.fixture
def sim():
    with start_in_thread(SimulatorState(api_key=KEY, api_secret=SECRET)) as server:
        yield server


# --------------------------------------------------------------------------- fetch


def test_fetch_then_rerun_skips_stored_without_a_call(tmp_path, sim) -> None:
    ids = sim.state.add_generated(5, seed=3)
    env = env_for(tmp_path, sim.base_url)
    first = faceid(tmp_path, "-v", "fetch", *ids, "--concurrency", "2", env=env)
    assert first.returncode == 0, first.stderr
    assert "5 fetched and stored" in first.stdout
    assert sim.state.total_requests == 5
    (tmp_path / "ids.txt").write_text("# saved list\n" + "\n".join(ids) + "\n\n")
    again = faceid(tmp_path, "fetch", "--from-file", "ids.txt", env=env)
    assert again.returncode == 0 and "5 already stored" in again.stdout
    assert sim.state.total_requests == 5
    for out in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert SECRET not in out


def test_fetch_failures_are_listed_and_exit_nonzero(tmp_path, sim) -> None:
    (ok,) = sim.state.add_generated(1, seed=4)
    result = faceid(tmp_path, "-v", "fetch", ok, "1800000000,unknown",
                    env=env_for(tmp_path, sim.base_url))
    assert result.returncode == 1
    assert "1800000000,unknown: FaceID has no result for this biz_id" in result.stdout
    assert "1 fetched and stored" in result.stdout and "1 not found" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_wrong_credentials_are_reported_plainly(tmp_path, sim) -> None:
    ids = sim.state.add_generated(3, seed=5)
    env = env_for(tmp_path, sim.base_url)
    env["FACEID_API_SECRET"] = "WRONG-secret-value"
    result = faceid(tmp_path, "-v", "fetch", *ids, "--concurrency", "1", env=env)
    assert result.returncode == 1 and "api_key/api_secret" in result.stdout
    assert sim.state.total_requests == 1  # the batch stopped calling after the first refusal
    assert "WRONG-secret-value" not in result.stdout + result.stderr


def test_demo_mode_without_a_simulator_says_how_to_start_one(tmp_path) -> None:
    unreachable = faceid(tmp_path, "fetch", "1,a",
                         env=env_for(tmp_path, "http://127.0.0.1:9", live=False))
    assert unreachable.returncode == 2
    assert "nothing answers at http://127.0.0.1:9" in unreachable.stderr
    assert "python -m faceid simulate" in unreachable.stderr
    default = faceid(tmp_path, "fetch", "1,a", env=env_for(tmp_path, None, live=False))
    assert default.returncode == 2 and "FACEID_BASE_URL" in default.stderr


def test_demo_mode_uses_the_demo_credentials_against_the_simulator(tmp_path) -> None:
    with start_in_thread(SimulatorState()) as demo_sim:  # demo-key / demo-secret
        ids = demo_sim.state.add_generated(2, seed=6)
        result = faceid(tmp_path, "fetch", *ids, env=env_for(tmp_path, demo_sim.base_url,
                                                            live=False))
    assert result.returncode == 0, result.stdout + result.stderr
    assert store.stored_biz_ids(db(tmp_path), ids) == set(ids)


def test_sigkill_mid_run_loses_nothing_and_rerun_completes(tmp_path) -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=0.05)
    ids = state.add_generated(40, seed=8)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    with start_in_thread(state) as sim:
        # The default 60 s lease: the rerun sees that the killed run's process is gone (same
        # machine) and takes its jobs over at once, rather than waiting the lease out.
        env = env_for(tmp_path, sim.base_url)
        cmd = [sys.executable, "-m", "faceid", "fetch", "--from-file", "ids.txt",
               "--concurrency", "3"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        engine = db(tmp_path)
        deadline = time.monotonic() + 30
        while sum(state.reads_served.values()) < 8 or len(_stored(engine, ids)) < 3:
            assert proc.poll() is None, "the fetch finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        while state.in_flight:  # requests the dead process left in the simulator finish
            time.sleep(0.01)
        served_before = sum(state.reads_served.values())

        stored = store.stored_biz_ids(engine, ids)
        assert 0 < len(stored) < len(ids)
        _check_intact(engine, state, stored)
        with Session(engine) as s:
            # Nothing received-but-unprocessed has lost its body; all else is finished.
            for row in s.exec(select(Inbox)):
                assert row.body is not None or row.processed_at is not None
            ledger = s.exec(select(FetchAttempt)).all()
        assert len(ledger) >= len(stored)

        rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=60)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert store.stored_biz_ids(engine, ids) == set(ids)
        _check_intact(engine, state, set(ids))
        assert pending_count(engine) == 0
        # Stored ones were not read again; no biz_id was read beyond its quota.
        assert sum(state.reads_served.values()) - served_before <= len(ids) - len(stored)
        assert state.over_quota_reads == 0
        assert max(state.reads_served.values()) <= 2  # at most: in flight when killed + rerun
        engine.dispose()


def _stored(engine: Engine, ids: list[str]) -> set[str]:
    try:
        return store.stored_biz_ids(engine, ids)
    except Exception:  # the subprocess has not created the schema yet
        return set()


def _check_intact(engine: Engine, state: SimulatorState, biz_ids: set[str]) -> None:
    with Session(engine) as s:
        for biz_id in biz_ids:
            v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
            raw = s.exec(select(RawResponse).where(RawResponse.verification_id == v.id)).one()
            imgs = s.exec(select(StoredImage).where(StoredImage.verification_id == v.id)).all()
            expected = shape_response(state.result(biz_id), return_image="4",
                                      return_verify_time="1")
            n_images = len([x for x in (expected.get("images") or {}).values() if x])
            n_images += bool(expected.get("multifaces_image"))
            assert len(imgs) == n_images and all(i.data for i in imgs)
            assert json.loads(raw.body)["status"] == expected["status"]


# --------------------------------------------------------------------------- import


def test_import_reports_refusals_and_exits_1(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/desk.db")
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    good = tmp_path / "in" / "good.json"
    good.parent.mkdir()
    good.write_text(json.dumps(generate_result(9, status="OK")), encoding="utf-8")
    (tmp_path / "in" / "broken.json").write_text('{"status": ', encoding="utf-8")
    assert cli.main(["import", str(tmp_path / "in")]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'in' / 'broken.json'}: Not valid JSON" in out
    assert "1 imported" in out and "1 refused" in out
    assert cli.main(["import", str(good)]) == 0
    assert "1 already stored" in capsys.readouterr().out


# --------------------------------------------------------------------------- demo-seed


def test_demo_seed_goes_through_the_real_fetch_path(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/desk.db")
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_BASE_URL", "FACEID_PII_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["demo-seed", "--count", "30"]) == 0
    assert "30 fetched and stored" in capsys.readouterr().out
    engine = db(tmp_path)
    with Session(engine) as s:
        rows = s.exec(select(Verification)).all()
        attempts = s.exec(select(FetchAttempt)).all()
    assert len(rows) == 30 and {v.source for v in rows} == {"api"}
    assert {a.actor for a in attempts} == {"demo-seed"} and len(attempts) == 30
    assert {v.status for v in rows} == set(STATUSES)
    assert set(PROCEDURE_TYPES) <= {v.procedure_type for v in rows}
    assert sum(v.idcard_name == HOSTILE_NAME for v in rows) >= 3
    by_person = Counter(v.id_number_hash for v in rows if v.id_number_hash)
    (linked,) = [h for h, n in by_person.items() if n >= 2]
    assert len({v.idcard_name for v in rows if v.id_number_hash == linked}) >= 2
    assert cli.main(["demo-seed", "--count", "30", "--if-empty"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert count(engine, Verification) == 30
    monkeypatch.setenv("FACEID_API_KEY", "live-key")
    monkeypatch.setenv("FACEID_API_SECRET", "live-secret")
    assert cli.main(["demo-seed"]) == 2  # never seeds a live database
    engine.dispose()
