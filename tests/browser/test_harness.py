"""Proves the browser harness works on this machine: real server, real chromium, real clicks."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from .harness import run_streamlit, screenshot, wait_idle

HELLO_APP = "tests/browser/hello_app.py"
# Non-ASCII on purpose: the screenshot shows whether CJK fonts (fonts-noto-cjk) are installed.
NAME = "Ada 张三"


def _server_answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.browser
def test_type_click_and_read_back(page):
    with run_streamlit(HELLO_APP, env={"FACEID_HARNESS_SMOKE": "1"}) as base_url:
        page.goto(base_url)
        wait_idle(page)
        expect(page.get_by_role("heading", name="Harness hello")).to_be_visible()

        box = page.get_by_label("Name")
        box.fill(NAME)
        # Enter commits the text_input (a rerun) before the click, so the click's rerun sees it.
        box.press("Enter")
        wait_idle(page)
        page.get_by_role("button", name="Greet").click()
        wait_idle(page)

        expect(page.get_by_test_id("stText")).to_have_text(f"clicked {NAME}")
        shot = screenshot(page, "harness-hello")
        assert shot.stat().st_size > 0
    # Leaving the context manager must really stop the server.
    assert not _server_answers(base_url)


def test_dead_server_fails_with_its_log():
    # No browser needed: a script that does not exist makes streamlit exit at once, and the
    # harness must fail fast with streamlit's own message rather than wait out the timeout.
    with (
        pytest.raises(pytest.fail.Exception, match="(?s)exited with code.*does not exist"),
        run_streamlit("tests/browser/no_such_app.py", timeout=30),
    ):
        pass
