"""The insights pages in a real browser, seeded with the demo data set (which holds one person
under two names): Failed verifications and Reports render their Vega-Lite charts (as the demo
admin, a role allowed the reports), and the case page's "Compare these attempts" opens Compare
with the best frames loaded. Screenshots: artifacts/screenshots/insights-*.png."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
from playwright.sync_api import expect

from faceid.cli.commands.demo import demo_cases
from faceid.core.config import Settings
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine

from .harness import run_streamlit, screenshot, wait_idle

CHART = "[data-testid='stVegaLiteChart']"


def seed_demo(path: Path, count: int = 30) -> list[str]:
    """The demo cases, stored as the app will read them; returns the biz_ids of the person
    seen under two names (same ID number)."""
    # Demo mode keys the ID-number hash with the demo key: the app must find the same hashes.
    key = Settings().hash_key()
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    by_number: dict[str, list[str]] = defaultdict(list)
    # Dated like `python -m faceid demo-seed` does (the last two weeks), so the charts' time
    # axes match the desk's own stored_at for cases without a verify time.
    for doc in demo_cases(count, now=int(time.time())):
        result = store.ingest(engine, json.dumps(doc).encode(), source="import", hash_key=key)
        assert result.error is None, result.error
        number = (doc.get("idcard_info") or {}).get("idcard_number")
        if number:
            by_number[number].append(result.biz_id)
    engine.dispose()
    (pair,) = [ids for ids in by_number.values() if len(ids) > 1]
    return pair


def charts_drawn(page) -> list[bool]:
    """For each Vega-Lite chart on the page: whether it holds a drawn canvas or svg."""
    return page.locator(CHART).evaluate_all(
        """els => els.map(e => {
            const c = e.querySelector('canvas');
            return (c !== null && c.width > 0 && c.height > 0)
                || e.querySelector('svg.marks, svg[class*="marks"]') !== null;
        })""")


def wait_for_charts(page, at_least: int) -> list[bool]:
    expect(page.locator(CHART).nth(at_least - 1)).to_be_visible()
    # Vega draws after the element appears: poll until every chart has its canvas.
    page.wait_for_function(
        """([sel, n]) => {
            const els = [...document.querySelectorAll(sel)];
            return els.length >= n && els.every(e => {
                const c = e.querySelector('canvas');
                return (c && c.width > 0 && c.height > 0) || e.querySelector('svg');
            });
        }""", arg=[CHART, at_least])
    return charts_drawn(page)


@pytest.mark.browser
def test_insights_pages_charts_and_compare_from_the_case(page, tmp_path, monkeypatch) -> None:
    db = tmp_path / "desk.db"
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_PII_KEY"):
        monkeypatch.delenv(var, raising=False)
    pair = seed_demo(db)
    with run_streamlit("dashboard.py", env={"DATABASE_URL": f"sqlite:///{db}"}) as base:
        page.goto(base)
        wait_idle(page)
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()

        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Failed verifications").click()
        wait_idle(page)
        expect(page.get_by_role("heading", name="Failed verifications")).to_be_visible()

        # The reports need a role allowed to export: switch to the demo admin in the sidebar.
        # Not on the page first loaded: there the first widget change is lost (Streamlit sees
        # the pages/ folder next to dashboard.py until st.navigation has run once).
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_role("combobox", name="Demo user (switch to try claim conflicts)").click()
        page.get_by_role("option", name="Demo Admin (admin)").click()
        wait_idle(page)
        expect(sidebar.get_by_text("demo.admin")).to_be_visible()
        expect(nav.get_by_text("Reports")).to_be_visible()  # the admin's menu has it

        # The admin's menu also has the Users page (and only the admin's).
        nav.get_by_text("Users").click()
        wait_idle(page)
        expect(page.get_by_role("heading", name="Users")).to_be_visible()
        expect(page.get_by_role("heading", name="Add a user")).to_be_visible()
        screenshot(page, "insights-users", full_page=False)
        nav.get_by_text("Failed verifications").click()
        wait_idle(page)

        drawn = wait_for_charts(page, 2)  # by reason, by day
        assert len(drawn) >= 2 and all(drawn), drawn
        screenshot(page, "insights-failed-verifications", full_page=False)

        nav.get_by_text("Reports").click()
        wait_idle(page)
        expect(page.get_by_role("heading", name="Reports")).to_be_visible()
        drawn = wait_for_charts(page, 3)  # pass rate, failure reasons, decisions/backlog
        assert len(drawn) >= 3 and all(drawn), drawn
        screenshot(page, "insights-reports", full_page=False)

        # The person seen under two names: the case page says so, and compares the attempts.
        # Opened in the app (the lookup box) rather than by URL: a fresh load would start a new
        # session (demo reviewer again), and a deep link first shows Streamlit's "Page not
        # found" dialog over the page (the same pages/ folder effect).
        nav.get_by_text("Case", exact=True).click()
        wait_idle(page)
        page.get_by_label("Open or fetch a biz_id").fill(pair[0])
        page.get_by_role("button", name="Look up").click()
        page.wait_for_url("**/cases?biz_id=*")
        wait_idle(page)
        expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()
        expect(page.get_by_text("This ID number appears under ANOTHER name")).to_be_visible()
        linked = page.get_by_role("heading", name="Linked cases")
        expect(linked).to_be_visible()
        screenshot(page, "insights-case-alert", full_page=False)
        linked.scroll_into_view_if_needed()
        screenshot(page, "insights-case-linked", full_page=False)

        page.get_by_role("button", name="Compare these attempts").click()
        page.wait_for_url("**/compare-cases?compare=*")
        wait_idle(page)
        expect(page.get_by_role("heading", name="Side by side")).to_be_visible()
        assert sorted(page.evaluate("() => new URLSearchParams(location.search)"
                                    ".getAll('compare')")) == sorted(pair)
        images = page.locator("[data-testid='stImage'] img")
        expect(images.nth(1)).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
            ".filter(i => i.complete && i.naturalWidth > 0).length >= 2")
        widths = images.evaluate_all("els => els.map(e => e.complete ? e.naturalWidth : 0)")
        assert len(widths) >= 2 and all(w > 0 for w in widths), widths
        # Still the admin after st.switch_page (the demo choice survives a page switch).
        expect(sidebar.get_by_text("demo.admin")).to_be_visible()
        expect(nav.get_by_text("Reports")).to_be_visible()
        screenshot(page, "insights-compare", full_page=False)
        page.get_by_role("heading", name="Side by side").scroll_into_view_if_needed()
        screenshot(page, "insights-compare-table", full_page=False)

        # The queue's "linked" column and filter: only the two attempts remain.
        nav.get_by_text("Queue", exact=True).click()
        wait_idle(page)
        page.get_by_text("Only cases linked to others").click()
        wait_idle(page)
        expect(page.get_by_text("2 case(s) match")).to_be_visible()
        cells = page.locator("[data-testid='stDataFrame'] td[role='gridcell']")
        expect(cells.filter(has_text="1 · other name")).to_have_count(2)
        screenshot(page, "insights-queue-linked", full_page=False)
