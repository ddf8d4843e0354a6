"""The durable fetch queue: jobs, leases and request slots, on SQLite and PostgreSQL.

Multi-process guarantees (several OS processes against a read-counting FaceID stand-in) are in
``test_fetch_processes.py``; these are the queue's own rules, one at a time.
"""

from __future__ import annotations

import threading
import time

import pytest

from faceid.store.fetch_jobs import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    describe_job,
)
from faceid.store.fetchqueue import FetchQueue


def test_enqueue_is_idempotent_per_biz_id(engine) -> None:
    q = FetchQueue(engine)
    assert q.enqueue(["a", "b", "a"], "alice") == {"a": 0, "b": 0}
    assert q.enqueue(["a"], "bob") == {"a": 0}
    assert q.status().counts[QUEUED] == 2
    assert q.job("a").requested_by == "alice"  # a queued job keeps who asked first


def test_only_one_claim_wins(engine) -> None:
    q1, q2 = FetchQueue(engine, owner="one"), FetchQueue(engine, owner="two")
    q1.enqueue(["a"], "alice")
    claim = q1.claim("a")
    assert claim is not None and claim.tries == 1
    assert q2.claim("a") is None
    assert q2.claim_next() is None
    job = q2.job("a")
    assert job.state == RUNNING and job.lease_owner == "one"


def test_claim_batch_takes_at_most_n_oldest_due_jobs(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue([f"j{i}" for i in range(10)], "cron")
    assert [c.biz_id for c in q.claim_batch(1)] == ["j0"]
    assert [c.biz_id for c in q.claim_batch(3)] == ["j1", "j2", "j3"]
    assert q.status().counts == {QUEUED: 6, RUNNING: 4, DONE: 0, FAILED: 0}


def test_finish_done_and_asking_again_requeues_with_more_tries(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a"], "alice")
    claim = q.claim("a")
    assert q.finish(claim, ok=True, status="stored", message="Fetched and stored.",
                    code="OK", http_status=200, verification_id=7).state == DONE
    job = q.job("a")
    assert (job.state, job.last_status, job.verification_id, job.lease_owner) == (
        DONE, "stored", 7, None)
    # Asked again: back in the queue, and the answer counter tells the new run from the old.
    assert q.enqueue(["a"], "bob") == {"a": 1}
    job = q.job("a")
    assert (job.state, job.max_tries, job.requested_by) == (QUEUED, 2, "bob")


def test_a_run_under_way_answers_a_request_made_during_it(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a"], "alice")
    q.claim("a")
    # Asked while running: the running try (1) has not finished, so the waiter's mark is 0.
    assert q.enqueue(["a"], "bob") == {"a": 0}


def test_transient_failure_with_tries_left_waits_for_its_retry(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a"], "notify", max_tries=2)
    claim = q.claim("a")
    assert q.finish(claim, ok=False, status="failed", message="network",
                    retry_in_s=3600).state == QUEUED
    assert q.claim_next() is None  # not due for an hour
    status = q.status()
    assert status.retry_waiting == 1
    assert "retry in" in describe_job(status.jobs[0], status.now)
    # A person asking makes it due now.
    q.enqueue(["a"], "alice")
    claim = q.claim_next()
    assert claim is not None and claim.tries == 2
    # The last try fails for good.
    assert q.finish(claim, ok=False, status="failed", message="network again",
                    retry_in_s=3600).state == FAILED


def test_final_failures_are_not_retried(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a"], "notify", max_tries=3)
    claim = q.claim("a")
    # The caller passes no retry for final outcomes (not found, expired).
    assert q.finish(claim, ok=False, status="not_found", message="gone").state == FAILED
    assert q.claim_next() is None


def test_release_gives_the_job_back_untried(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a"], "alice")
    q.release(q.claim("a"))
    job = q.job("a")
    assert (job.state, job.tries, job.lease_owner) == (QUEUED, 0, None)


def test_abandon_fails_only_never_tried_jobs(engine) -> None:
    q = FetchQueue(engine)
    q.enqueue(["a", "b"], "alice")
    q.claim("b")
    q.abandon(["a", "b"], "not attempted")
    assert q.job("a").state == FAILED
    assert q.job("b").state == RUNNING


def test_expired_lease_is_taken_over_and_the_late_finish_does_not_clobber(engine) -> None:
    slow = FetchQueue(engine, owner="slow", lease_s=0.2)
    fast = FetchQueue(engine, owner="fast")
    slow.enqueue(["a"], "alice")
    first = slow.claim("a")
    slow.close()  # a frozen process: no heartbeat
    slow._let_go(jobs=[first.job_id])
    assert fast.claim("a") is None
    time.sleep(0.3)
    status = fast.status()
    assert status.stale == 1
    assert describe_job(status.jobs[0], status.now).startswith("STALE: slow stopped renewing")
    second = fast.claim("a")
    assert second is not None and second.tries == 2
    # The old holder wakes up and reports: the job stays the new holder's.
    slow.finish(first, ok=True, status="stored", message="late")
    job = fast.job("a")
    assert (job.state, job.lease_owner) == (RUNNING, "fast")


def test_heartbeat_keeps_a_lease_alive(mt_engine) -> None:
    holder = FetchQueue(mt_engine, owner="holder", lease_s=0.4)
    other = FetchQueue(mt_engine, owner="other")
    holder.enqueue(["a"], "alice")
    claim = holder.claim("a")
    time.sleep(1.0)  # 2.5 leases: alive only because the heartbeat renewed it
    assert other.claim("a") is None
    holder.finish(claim, ok=True, status="stored", message="ok")
    holder.close()


def test_slots_cap_requests_across_queues(engine) -> None:
    a, b = FetchQueue(engine, cap=2, owner="a"), FetchQueue(engine, cap=2, owner="b")
    a.ensure_slots()
    b.ensure_slots()
    with engine.begin() as conn:
        s1 = a.try_slot(conn, "x")
    with engine.begin() as conn:
        s2 = b.try_slot(conn, "y")
    with engine.begin() as conn:
        assert a.try_slot(conn, "z") is None
    assert {s1, s2} == {0, 1}
    assert a.status().slots_in_use == 2
    with engine.begin() as conn:
        a.free_slot(conn, s1)
    a.slot_freed(s1)
    with engine.begin() as conn:
        assert b.try_slot(conn, "z") == s1


def test_an_expired_slot_is_reclaimed(engine) -> None:
    dead = FetchQueue(engine, cap=1, owner="dead", lease_s=0.2)
    live = FetchQueue(engine, cap=1, owner="live")
    dead.ensure_slots()
    with engine.begin() as conn:
        assert dead.try_slot(conn, "x") == 0
    with engine.begin() as conn:
        assert live.try_slot(conn, "y") is None
    time.sleep(0.3)
    with engine.begin() as conn:
        assert live.try_slot(conn, "y") == 0


def test_a_smaller_cap_uses_fewer_slots(engine) -> None:
    big, small = FetchQueue(engine, cap=3, owner="big"), FetchQueue(engine, cap=1, owner="s")
    big.ensure_slots()
    with engine.begin() as conn:
        assert big.try_slot(conn, "x") == 0
    with engine.begin() as conn:
        assert small.try_slot(conn, "y") is None  # slot 0 taken; slots 1, 2 are over its cap


def test_concurrent_claim_next_hands_out_each_job_once(mt_engine) -> None:
    ids = [f"job-{i}" for i in range(30)]
    FetchQueue(mt_engine).enqueue(ids, "cron")
    queues = [FetchQueue(mt_engine, owner=f"w{i}") for i in range(4)]
    won: list[list[str]] = [[] for _ in queues]

    def drain(i: int) -> None:
        while (claim := queues[i].claim_next()) is not None:
            won[i].append(claim.biz_id)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    got = [b for w in won for b in w]
    assert sorted(got) == sorted(ids)  # every job once, none twice
    for q in queues:
        q.close()


@pytest.mark.parametrize("cap", [0, -1])
def test_cap_must_be_positive(engine, cap: int) -> None:
    with pytest.raises(ValueError):
        FetchQueue(engine, cap=cap)


def test_lookup_says_when_another_process_is_fetching(engine) -> None:
    from faceid.core.config import Settings
    from faceid.store.fetching import FetchService

    service = FetchService(engine, lambda: None, Settings(pii_key="k"))  # type: ignore[arg-type]
    other = FetchQueue(engine, owner="host-c:77:abc")
    other.enqueue(["1800000000,x"], "notify")
    assert "Fetching spends one read" in service.lookup("1800000000,x", "alice").message
    other.claim("1800000000,x")
    msg = service.lookup("1800000000,x", "alice").message
    assert "Being fetched right now by host-c:77:abc" in msg
    other.close()


def test_only_a_gone_process_of_this_machine_counts_as_gone() -> None:
    import os
    import subprocess
    import sys

    from faceid.store.leases import holder_is_gone, this_machine

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = this_machine()
    assert holder_is_gone(f"{here}:{dead.pid}:abc123")
    assert not holder_is_gone(f"{here}:{os.getpid()}:abc123")  # ourselves
    assert not holder_is_gone(f"{here}:1:abc123")  # alive (init), or not ours to signal
    assert not holder_is_gone(f"other-host/1:{dead.pid}:abc123")  # another machine: unknown
    assert not holder_is_gone("garbage") and not holder_is_gone(None)


def test_leases_of_a_gone_holder_are_taken_over_at_once(engine) -> None:
    import subprocess
    import sys

    from faceid.store.leases import this_machine

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = FetchQueue(engine, owner=f"{this_machine()}:{dead.pid}:dead00", cap=1)
    ghost.enqueue(["a"], "cron")
    ghost.claim("a")
    ghost.ensure_slots()
    with engine.begin() as conn:
        assert ghost.try_slot(conn, "a") == 0
    ghost.close()
    live = FetchQueue(engine, cap=1)
    assert live.claim("a") is None  # a 60 s lease, nowhere near its end
    assert live.reap() == 2  # the job and the slot
    assert live.claim("a") is not None
    with engine.begin() as conn:
        assert live.try_slot(conn, "a") == 0
