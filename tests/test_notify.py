"""The notify_url receiver over real HTTP: signature checked over the raw data string, bad ones
refused with 403 and nothing stored, good ones stored at once and completed with images."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from faceid.api.client import FaceIDClient
from faceid.api.simulator import FakeClock, SimulatorState, generate_result
from faceid.api.simulator import start_in_thread as start_sim
from faceid.core.config import Settings
from faceid.store import write as store
from faceid.store.fetching import FetchService
from faceid.store.notify import NotifyReceiver, sign_ok, signature, start_in_thread
from faceid.store.tables import AuditEvent, Inbox, StoredImage, Verification

KEY = "key-notify-tests"
SECRET = "N0TIFY-secret-never-shown"  # noqa: S105
NOW = 1_800_000_000.0
SETTINGS = Settings(api_key=KEY, api_secret=SECRET, pii_key="test-pii")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def sim(clock) -> Iterator:
    with start_sim(SimulatorState(api_key=KEY, api_secret=SECRET, clock=clock)) as server:
        yield server


@pytest.fixture
def service(mt_engine, sim, clock) -> Iterator[FetchService]:
    client = FaceIDClient(KEY, SECRET, sim.base_url, sleep=lambda s: None)
    yield FetchService(mt_engine, lambda: client, SETTINGS, clock=clock.now)
    client.close()


@pytest.fixture
def server(mt_engine, service) -> Iterator:
    receiver = NotifyReceiver(mt_engine, service, api_secret=SECRET, hash_key=b"k",
                              retry_delay_s=0.05)
    with start_in_thread(receiver) as srv:
        yield srv


def callback_data(sim, clock, seed: int) -> tuple[str, str]:
    """(biz_id, data string) of a case known to the simulator; the callback has no images."""
    biz_id = f"{int(clock.now())},{uuid.UUID(int=seed, version=4)}"
    full = generate_result(seed, biz_id, status="OK", procedure_type="still")
    sim.state.add(full)
    data = {k: v for k, v in full.items() if k != "images"}
    # Spaces after separators and raw UTF-8: the receiver must verify these bytes as sent.
    return biz_id, json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


def post(srv, data: str | None, sign: str | None, **kw) -> httpx.Response:
    form = {k: v for k, v in (("data", data), ("sign", sign)) if v is not None}
    return httpx.post(srv.base_url + "/faceid/notify", data=form, timeout=10, **kw)


def count(engine: Engine, table) -> int:
    with Session(engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def test_signature_is_sha1_of_secret_then_data() -> None:
    data = '{"biz_info": {"biz_id": "1,a"}}'
    assert signature("sec", data) == hashlib.sha1(b"sec" + data.encode()).hexdigest()
    assert sign_ok("sec", data, signature("sec", data))
    assert sign_ok("sec", data, signature("sec", data).upper())
    # Re-serialising the same JSON changes the bytes, so the signature no longer matches.
    assert not sign_ok("sec", json.dumps(json.loads(data)).replace(" ", ""),
                       signature("sec", data))
    assert not sign_ok("sec", data, "ü" * 40)


def test_good_callback_is_stored_then_completed_with_images(mt_engine, server, sim,
                                                            clock) -> None:
    biz_id, data = callback_data(sim, clock, 1)
    response = post(server, data, signature(SECRET, data))
    assert response.status_code == 200
    assert server.receiver.drain(20)
    with Session(mt_engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
        images = s.exec(select(StoredImage).where(StoredImage.verification_id == v.id)).all()
        inbox = s.exec(select(Inbox).order_by(Inbox.id)).all()
        actions = [e.action for e in s.exec(select(AuditEvent))]
    assert v.source == "api" and images  # the worker fetched the full result, images included
    assert sim.state.reads(biz_id) == 1
    assert [r.source for r in inbox] == ["notify", "api"]
    assert all(r.processed_at is not None and r.body is None for r in inbox)
    assert actions == ["fetched"]


def test_callback_for_a_stored_result_spends_no_read(mt_engine, server, service, sim,
                                                     clock) -> None:
    biz_id, data = callback_data(sim, clock, 2)
    assert service.fetch(biz_id, "alice").status == "stored"
    requests = sim.state.total_requests
    assert post(server, data, signature(SECRET, data)).status_code == 200
    assert server.receiver.drain(20)
    assert sim.state.total_requests == requests
    assert count(mt_engine, Verification) == 1


@pytest.mark.parametrize("sign", ["0" * 40, None, "", "not-hex"])
def test_bad_or_missing_signature_is_refused_and_nothing_stored(mt_engine, server, sim, clock,
                                                                 caplog, sign) -> None:
    caplog.set_level(logging.DEBUG)
    biz_id, data = callback_data(sim, clock, 3)
    response = post(server, data, sign)
    assert response.status_code == 403
    assert server.receiver.drain(5)
    assert count(mt_engine, Inbox) == 0 and count(mt_engine, Verification) == 0
    assert sim.state.total_requests == 0
    assert "refused" in caplog.text
    for leaked in (SECRET, biz_id, signature(SECRET, data)):
        assert leaked not in caplog.text


def test_data_signed_for_other_bytes_is_refused(mt_engine, server, sim, clock) -> None:
    biz_id, data = callback_data(sim, clock, 4)
    tampered = data.replace('"status": "OK"', '"status": "OK" ')
    assert post(server, tampered, signature(SECRET, data)).status_code == 403
    assert count(mt_engine, Inbox) == 0


def test_percent_and_plus_encoded_data_verifies_over_the_decoded_value(mt_engine, server, sim,
                                                                      clock) -> None:
    biz_id, data = callback_data(sim, clock, 5)
    body = f"data={quote(data, safe='')}&sign={signature(SECRET, data)}".replace("%20", "+")
    response = httpx.post(server.base_url + "/", content=body.encode(), timeout=10,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert server.receiver.drain(20)
    assert store.stored_biz_ids(mt_engine, [biz_id]) == {biz_id}


def test_oversized_and_malformed_bodies_are_refused(mt_engine, server) -> None:
    big = "x" * (server.receiver.max_body + 1)
    assert post(server, big, "s").status_code == 413
    assert httpx.post(server.base_url, content=b"{}", timeout=5,
                      headers={"Content-Type": "application/json"}).status_code == 415
    assert httpx.post(server.base_url, content=b"sign=abc", timeout=5,
                      headers={"Content-Type": "application/x-www-form-urlencoded"}
                      ).status_code == 400
    assert httpx.get(server.base_url + "/healthz", timeout=5).json()["status"] == "ok"
    assert count(mt_engine, Inbox) == 0


def test_unfetchable_result_keeps_the_callback_copy(mt_engine, server, sim, clock) -> None:
    biz_id, data = callback_data(sim, clock, 6)
    clock.advance(86400 + 1)  # FaceID has destroyed it by the time the worker asks
    assert post(server, data, signature(SECRET, data)).status_code == 200
    assert server.receiver.drain(20)
    with Session(mt_engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
    assert v.source == "notify"  # stored from the callback itself, without images
    assert v.status == "OK"


def test_transient_fetch_failure_is_retried_before_settling(mt_engine, server, sim,
                                                            clock) -> None:
    biz_id, data = callback_data(sim, clock, 7)
    sim.state.fail_next("AUTHORIZATION_ERROR", 1)  # fails once (a "never retry" code)
    assert post(server, data, signature(SECRET, data)).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not store.stored_biz_ids(mt_engine, [biz_id]):
        time.sleep(0.05)
    assert server.receiver.drain(20)
    with Session(mt_engine) as s:
        v = s.exec(select(Verification).where(Verification.biz_id == biz_id)).one()
    assert v.source == "api"  # the second try fetched the full result


def test_worker_finishes_callbacks_left_by_a_crash(mt_engine, service, sim, clock) -> None:
    biz_id, data = callback_data(sim, clock, 8)
    store.receive(mt_engine, data.encode(), source="notify", origin="before the crash")
    receiver = NotifyReceiver(mt_engine, service, api_secret=SECRET, hash_key=b"k")
    with start_in_thread(receiver):
        assert receiver.drain(20)
    assert store.stored_biz_ids(mt_engine, [biz_id]) == {biz_id}
    assert sim.state.reads(biz_id) == 1
