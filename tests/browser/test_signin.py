"""Live-mode sign-in in a real browser: nothing but the sign-in form until a correct password,
role-based menu after it, sign-out back to the form.

A deep link followed before signing in opens its page after sign-in; served image URLs carry
no biz_id, name or ID number. Live mode means FaceID credentials are set; the base URL points
at a simulator this test runs in-process (so nothing leaves the machine), and
``FACEID_PII_KEY`` is set as live mode needs.
Screenshots: artifacts/screenshots/signin-*.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import expect

from faceid.access.actors import Actor
from faceid.accounts.users import UserService
from faceid.api.simulator import generate_result
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine

from .harness import run_streamlit, screenshot, wait_idle
from .live import live_env

PII_KEY = "browser-test-pii-key"
API_SECRET = "browser-test-api-secret"
PASSWORD = "a long and boring test password"


def seed(path: Path) -> tuple[str, dict]:
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    doc = next(d for d in (generate_result(s, status="OK") for s in range(1, 50))
               if d.get("images"))
    biz = store.ingest(engine, json.dumps(doc).encode(), source="import",
                       hash_key=PII_KEY.encode()).biz_id
    UserService(engine).add(Actor("cli:test", "test", "admin"), "rita", "reviewer",
                            display_name="Rita Reviewer", password=PASSWORD)
    engine.dispose()
    return biz, doc["idcard_info"]


def sign_in_form_only(page) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_role("heading", name="Review queue")).to_have_count(0)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # no menu before sign-in
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
    expect(page.locator("[data-testid='stImage'] img")).to_have_count(0)


@pytest.mark.browser
def test_live_mode_sign_in_and_out(page, tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "live.db"
    biz, person = seed(db)
    with (live_env(db, api_secret=API_SECRET, pii_key=PII_KEY) as env,
          run_streamlit("dashboard.py", env=env) as base):
        page.goto(base)
        wait_idle(page)
        sign_in_form_only(page)
        screenshot(page, "signin-form", full_page=False)
        # A deep link to a case is no way around it.
        page.goto(f"{base}/cases?{urlencode({'biz_id': biz})}")
        wait_idle(page)
        sign_in_form_only(page)
        expect(page.get_by_text(biz)).to_have_count(0)

        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password", exact=True).fill("not the password at all")
        page.get_by_role("button", name="Sign in").click()
        wait_idle(page)
        expect(page.get_by_text("Wrong username or password")).to_be_visible()
        sign_in_form_only(page)
        # The password is not kept in the form.
        expect(page.get_by_label("Password", exact=True)).to_have_value("")
        screenshot(page, "signin-wrong-password", full_page=False)

        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        wait_idle(page)
        # Signed in from the deep link: the linked case opens.
        expect(page.get_by_role("heading", name="Case", exact=True)).to_be_visible()
        expect(page.get_by_test_id("stCode").filter(has_text=biz)).to_be_visible()
        images = page.locator("[data-testid='stImage'] img")
        expect(images.first).to_be_visible()
        urls = images.evaluate_all("els => els.map(e => e.src)")
        # Served as /media/<hash>: the URL says nothing about the case or the person.
        assert urls and all("/media/" in u for u in urls), urls
        assert not [u for u in urls for part in (*biz.split(","), person["idcard_number"],
                                                 quote(person["idcard_name"]))
                    if part in u], urls
        screenshot(page, "signin-deep-link-case", full_page=False)

        page.get_by_test_id("stSidebarNav").get_by_text("Queue").click()
        wait_idle(page)
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Rita Reviewer · rita · reviewer")).to_be_visible()
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav.get_by_text("Queue")).to_be_visible()
        expect(nav.get_by_text("Failed verifications")).to_be_visible()
        expect(nav.get_by_text("Reports")).to_have_count(0)  # no export for reviewers
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        screenshot(page, "signin-queue", full_page=False)

        sidebar.get_by_role("button", name="Sign out").click()
        wait_idle(page)
        sign_in_form_only(page)
        expect(page.get_by_text("You signed out.")).to_be_visible()
        screenshot(page, "signin-signed-out", full_page=False)
