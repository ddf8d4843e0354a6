"""Look up and fetch a biz_id in a real browser, through the durable fetch queue.

Live mode against a simulator in this process. A reviewer looks up a biz_id that is not stored,
sees the reads left, fetches it (one read), and lands on the case; looking it up again opens the
case without a read. A biz_id another process is fetching right now says so instead of offering
to spend a read. The queue page's "FaceID fetch queue" panel shows the jobs.
Screenshots: artifacts/screenshots/fetch-*.png.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from faceid.access.actors import Actor
from faceid.accounts.users import UserService
from faceid.api.simulator import SimulatorState, generate_result, start_in_thread
from faceid.store import schema
from faceid.store.db import make_engine
from faceid.store.fetchqueue import FetchQueue

from .harness import run_streamlit, screenshot, wait_idle

KEY, SECRET, PII_KEY = "live-key", "browser-fetch-api-secret", "browser-fetch-pii-key"
PASSWORD = "a long and boring test password"


def _case(state: SimulatorState, seed: int) -> str:
    now = int(time.time())
    return state.add(generate_result(seed, f"{now},{uuid.UUID(int=seed, version=4)}",
                                     status="OK", procedure_type="still"))


def _look_up(page, biz_id: str) -> None:
    page.get_by_label("Open or fetch a biz_id").fill(biz_id)
    page.get_by_role("button", name="Look up").click()
    wait_idle(page)


@pytest.mark.browser
def test_look_up_fetch_once_and_see_the_queue(page, tmp_path: Path) -> None:
    db = tmp_path / "fetch.db"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    UserService(engine).add(Actor("cli:test", "test", "admin"), "rita", "reviewer",
                            display_name="Rita Reviewer", password=PASSWORD)
    with start_in_thread(SimulatorState(api_key=KEY, api_secret=SECRET)) as sim:
        wanted, busy = _case(sim.state, 71), _case(sim.state, 72)
        # Another process (a worker on another machine) holds the job of ``busy`` right now.
        other = FetchQueue(engine, owner="host-z:4711:abcdef")
        other.enqueue([busy], "notify")
        assert other.claim(busy) is not None
        env = {"DATABASE_URL": f"sqlite:///{db}", "FACEID_API_KEY": KEY,
               "FACEID_API_SECRET": SECRET, "FACEID_BASE_URL": sim.base_url,
               "FACEID_PII_KEY": PII_KEY}
        with run_streamlit("dashboard.py", env=env) as base:
            page.goto(base)
            wait_idle(page)
            page.get_by_label("Username").fill("rita")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            wait_idle(page)
            expect(page.get_by_role("heading", name="Review queue")).to_be_visible()

            _look_up(page, wanted)
            expect(page.get_by_text("Not in the store yet").first).to_be_visible()
            expect(page.get_by_text("3 reads left").first).to_be_visible()
            screenshot(page, "fetch-lookup", full_page=False)
            page.get_by_role("button", name="Fetch now (spends one read)").click()
            wait_idle(page)
            expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()
            expect(page.get_by_test_id("stCode").filter(has_text=wanted)).to_be_visible()
            assert sim.state.reads(wanted) == 1
            screenshot(page, "fetch-stored-case", full_page=False)

            page.get_by_test_id("stSidebarNav").get_by_text("Queue").click()
            wait_idle(page)
            _look_up(page, wanted)  # stored now: opens the case, spends nothing
            expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()
            assert sim.state.reads(wanted) == 1

            page.get_by_test_id("stSidebarNav").get_by_text("Queue").click()
            wait_idle(page)
            _look_up(page, busy)
            expect(page.get_by_text("Being fetched right now by host-z:4711:abcdef",
                                    exact=False)).to_be_visible()
            expect(page.get_by_role("button", name="Fetch now (spends one read)")
                   ).to_have_count(0)
            expect(page.get_by_role("button", name="Wait for that fetch and open the case "
                                    "(no read)")).to_be_visible()
            panel = page.get_by_text("FaceID fetch queue:", exact=False)
            expect(panel).to_contain_text("1 running")
            expect(panel).to_contain_text("1 done")
            panel.click()
            wait_idle(page)
            screenshot(page, "fetch-busy-elsewhere", full_page=False)
            assert sim.state.reads(busy) == 0
        other.close()
    engine.dispose()
