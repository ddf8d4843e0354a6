"""The review flow in a real browser: queue -> case (images really load) -> claim -> decide ->
the decision on the timeline. Screenshots go to artifacts/screenshots/review-*.png."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from faceid.api.simulator import generate_batch
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine

from .harness import run_streamlit, screenshot, wait_idle

DEMO_KEY = b"faceid-review-desk-demo-pii-key"
# Streamlit's grid: 35 px header and 35 px rows; the first column is the row selector.
ROW_PX = 35


def seed_db(path: str) -> list[str]:
    """Five OK cases that all carry images (so whichever row is first has pictures)."""
    docs = [d for d in generate_batch(30, seed=11) if d.get("images")][:5]
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    ids = []
    for d in docs:
        ids.append(store.ingest(engine, json.dumps(d).encode(), source="import",
                                hash_key=DEMO_KEY).biz_id)
    engine.dispose()
    return ids


@pytest.mark.browser
def test_queue_case_claim_decide_timeline(page, tmp_path, monkeypatch) -> None:
    db = tmp_path / "desk.db"
    seed_db(str(db))
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with run_streamlit("dashboard.py", env={"DATABASE_URL": f"sqlite:///{db}"}) as base:
        page.goto(base)
        wait_idle(page)
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        expect(page.get_by_text("DEMO MODE:")).to_be_visible()
        screenshot(page, "review-queue", full_page=False)

        # Select the first row through the grid's row-selector column.
        grid = page.get_by_test_id("stDataFrame").first
        expect(grid).to_be_visible()
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 15, box["y"] + ROW_PX + ROW_PX / 2)
        page.wait_for_url("**/cases?biz_id=*")
        wait_idle(page)
        expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()

        # The images were delivered as bytes and decoded by the browser.
        images = page.locator("[data-testid='stImage'] img")
        expect(images.first).to_be_visible()
        # Each image loads on its own request: wait until all have (CI once caught one of
        # four still loading), then read what the browser decoded.
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_function(
                """() => {
                    const els = [...document.querySelectorAll("[data-testid='stImage'] img")];
                    return els.length >= 2 && els.every(e => e.complete && e.naturalWidth > 0);
                }""",
                timeout=15_000)
        widths = images.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert len(widths) >= 2 and all(w > 0 for w in widths), widths
        assert all(src.startswith(base) for src in
                   images.evaluate_all("els => els.map(e => e.src)")), "no data: URIs"
        screenshot(page, "review-case", full_page=False)

        page.get_by_role("button", name="Claim this case").click()
        wait_idle(page)
        expect(page.get_by_text("You hold the claim on this case.")).to_be_visible()

        page.get_by_label("Note (required to reject or escalate)").fill("Same person; ID ok.")
        page.get_by_role("button", name="Record decision").click()
        wait_idle(page)
        # The escaped flash message renders as plain words (no stray backslashes).
        expect(page.get_by_text("Decision recorded: Approve (case is now approved).")
               ).to_be_visible()
        expect(page.get_by_role("button", name="Next case")).to_be_visible()

        page.get_by_role("tab", name="Timeline").click()
        wait_idle(page)
        cells = page.locator("[data-testid='stDataFrame'] td[role='gridcell']")
        expect(cells.filter(has_text="decide").first).to_be_attached()
        expect(cells.filter(has_text="claim").first).to_be_attached()
        screenshot(page, "review-decided", full_page=False)

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT actor, outcome FROM decisions").fetchall()
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_events ORDER BY id")]
    assert rows == [("demo.reviewer", "approve")]
    assert actions[-3:] == ["view", "claim", "decide"]
