"""Fixtures for real-browser tests: Debian chromium driven by Playwright's sync API.

Playwright's own browser download does not work on these machines, so we always launch the
system chromium (FACEID_CHROMIUM, default /usr/bin/chromium).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import harness


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = harness.chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        harness.skip_or_fail(f"chromium not found at {path} (apt-get install chromium)")
    # Imported here so that collecting this directory never needs playwright to import.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=path, headless=True, args=harness.CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    """A fresh context (own cookies/storage) per test; screenshot saved if the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                harness.screenshot(page, f"FAILED-{request.node.name}")
            except Exception as exc:  # never let a screenshot error mask the real failure
                print(f"could not save failure screenshot: {exc}")
        context.close()


@pytest.fixture
def run_streamlit():
    """The ``harness.run_streamlit`` context manager, for tests that prefer a fixture."""
    return harness.run_streamlit


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so `page` teardown knows whether the test failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
