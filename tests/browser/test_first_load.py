"""The first browser session after a server start: no legacy ``pages/`` mode.

Streamlit treats a ``pages`` folder beside the entry point as an old-style multipage app until
the first ``st.navigation`` call in the process; ``scripts/desk.py`` (what ``make run`` and
the harness use) turns that off before the server starts. Each test here starts its own
server, so its first request really is the first of the process.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .harness import run_streamlit, screenshot, wait_idle
from .test_review_flow import seed_db

NOT_FOUND = "Page not found"


@pytest.fixture
def desk(tmp_path, monkeypatch):
    db = tmp_path / "desk.db"
    ids = seed_db(str(db))
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with run_streamlit("dashboard.py", env={"DATABASE_URL": f"sqlite:///{db}"}) as base:
        yield base, ids


@pytest.mark.browser
def test_deep_link_as_the_very_first_request(page, desk) -> None:
    base, ids = desk
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    page.goto(f"{base}/cases?biz_id={ids[0]}")
    wait_idle(page)
    expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()
    expect(page.get_by_text(ids[0]).first).to_be_visible()
    page.wait_for_timeout(500)  # the notice, if any, arrives with the first run's messages
    assert page.get_by_text(NOT_FOUND).count() == 0
    assert not dialogs
    screenshot(page, "first-load-deep-link", full_page=False)


@pytest.mark.browser
def test_first_widget_change_after_loading_root_is_kept(page, desk) -> None:
    base, ids = desk
    page.goto(base)
    wait_idle(page)
    expect(page.get_by_text(f"{len(ids)} case(s) match")).to_be_visible()
    # The seeded cases are five different people: none is linked to another.
    page.get_by_text("Only cases linked to others").click()
    wait_idle(page)
    # The first interaction took effect (it used to be swallowed by the legacy pages/ mode).
    expect(page.get_by_text("0 case(s) match")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Only cases linked to others")).to_be_checked()
    assert page.get_by_text(NOT_FOUND).count() == 0
