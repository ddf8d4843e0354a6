"""Hostile content in a real browser: OCR text and notes are shown as text, never run or loaded.

The store holds simulated hostile cases (``generate_result(..., hostile=True)``: HTML, Markdown
links, spreadsheet formulas in the OCR fields and biz_extra_data) plus a note and a decision
note carrying script, event-handler, ``javascript:`` link and remote-image payloads. The queue,
the case page (every tab, every expander, personal data revealed), the failed-verification
audit and the compare page are opened in chromium; nothing may execute (``window.__pwned``, no
dialog), no payload ``<script>``/``<a href=javascript:>``/``<img>`` may reach the DOM, and no
request may go to the payload's host — while the payload text is on the page, as text.
Served images are checked too: their URLs carry no biz_id, name or ID number.
Screenshots: artifacts/screenshots/hostile-*.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from playwright.sync_api import expect

from faceid.access.actors import demo_actor
from faceid.api.simulator import generate_result
from faceid.core.config import Settings
from faceid.review.service import ReviewService
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine

from .harness import run_streamlit, screenshot, wait_idle

DEMO_KEY = b"faceid-review-desk-demo-pii-key"
PAYLOAD = ('<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> '
           "[click me](javascript:window.__pwned=1) ![x](http://127.0.0.1:9/track.png)")
EVIL_HOSTS = ("127.0.0.1:9", "evil")
TABS = ("Images", "ID card", "Liveness", "Face compare", "Timeline", "Raw response")


def seed(path: Path) -> tuple[list[str], list[dict]]:
    """Hostile OK cases with images, one with a hostile note and an escalation note."""
    docs = []
    seed_no = 1
    while len(docs) < 3:
        doc = generate_result(seed_no, status="OK", hostile=True)
        seed_no += 1
        if doc.get("images"):
            docs.append(doc)
    engine = make_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    ids = [store.ingest(engine, json.dumps(d).encode(), source="import",
                        hash_key=DEMO_KEY).biz_id for d in docs]
    svc = ReviewService(engine, None, Settings())
    other = demo_actor("demo.reviewer2")
    svc.add_note(ids[0], other, PAYLOAD)
    svc.claim(ids[0], other, 1)
    # Escalated, so it stays in the default queue (pending + escalated).
    svc.decide(ids[0], other, "escalate", "other", "decision note: " + PAYLOAD, 2)
    engine.dispose()
    return ids, docs


def dom_findings(page) -> list[str]:
    """What the payload would have left in the DOM had it been rendered as HTML/Markdown."""
    return page.evaluate(
        """(hosts) => {
            const out = [];
            if (typeof window.__pwned !== "undefined") out.push("window.__pwned is set");
            for (const s of document.scripts)
                if (s.textContent.includes("__pwned")) out.push("script: " + s.textContent);
            for (const a of document.querySelectorAll("a[href]")) {
                const href = a.getAttribute("href");
                if (/^\\s*javascript:/i.test(href) || hosts.some(h => href.includes(h)))
                    out.push("link: " + href);
            }
            for (const el of document.querySelectorAll("[onerror], [onload], [onclick]"))
                out.push("handler attribute on <" + el.tagName + ">");
            for (const img of document.querySelectorAll("img")) {
                const src = img.getAttribute("src") || "";
                if (src === "x" || hosts.some(h => src.includes(h))) out.push("img: " + src);
            }
            return out;
        }""",
        list(EVIL_HOSTS),
    )


def image_urls(page) -> list[str]:
    return page.locator("[data-testid='stImage'] img").evaluate_all(
        "els => els.map(e => e.src)")


@pytest.mark.browser
def test_hostile_text_is_shown_never_executed(page, tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "hostile.db"
    ids, docs = seed(db)
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))

    with run_streamlit("dashboard.py", env={"DATABASE_URL": f"sqlite:///{db}"}) as base:
        page.goto(base)
        wait_idle(page)
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        screenshot(page, "hostile-queue", full_page=False)
        assert dom_findings(page) == []

        # The case with the hostile note: every tab, every expander, personal data revealed.
        page.goto(f"{base}/cases?{urlencode({'biz_id': ids[0]})}")
        wait_idle(page)
        page.get_by_role("button", name="Reveal personal data (audited)").click()
        wait_idle(page)
        expect(page.get_by_text("Personal data revealed until")).to_be_visible()
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            wait_idle(page)
            for summary in page.locator("[data-testid='stExpander'] summary").all():
                if summary.is_visible():
                    summary.click()
                    wait_idle(page)
            assert dom_findings(page) == [], tab
        page.get_by_role("tab", name="Images").click()
        wait_idle(page)
        # The note is on the page, whole, as text — not as markup.
        note = page.get_by_test_id("stText").filter(has_text="window.__pwned")
        expect(note).to_have_count(1)
        expect(note).to_have_text(PAYLOAD)
        cells = page.locator("[data-testid='stDataFrame'] [role='gridcell']")
        # The revealed hostile OCR address is text in the ID card tab's table.
        page.get_by_role("tab", name="ID card").click()
        wait_idle(page)
        expect(cells.filter(has_text="<img src=x onerror=alert(1)>").first).to_be_attached()
        screenshot(page, "hostile-case")
        page.get_by_role("tab", name="Timeline").click()
        wait_idle(page)
        expect(cells.filter(has_text="decision note: <script>").first).to_be_attached()
        screenshot(page, "hostile-case-timeline", full_page=False)

        # Served images: /media/<hash>, with nothing about the person or case in the URL.
        page.get_by_role("tab", name="Images").click()
        wait_idle(page)
        urls = image_urls(page)
        assert urls and all("/media/" in u for u in urls), urls
        person = docs[0]["idcard_info"]
        secrets_in_urls = [ids[0], quote(ids[0], safe=""), ids[0].split(",")[-1],
                           person["idcard_number"], quote(person["idcard_name"], safe="")]
        assert not [u for u in urls for s in secrets_in_urls if s and s in u], urls

        page.goto(f"{base}/failed-verifications")
        wait_idle(page)
        expect(page.get_by_role("heading", name="Failed verifications")).to_be_visible()
        assert dom_findings(page) == []

        page.goto(f"{base}/compare-cases?" + urlencode([("compare", i) for i in ids]))
        wait_idle(page)
        expect(page.get_by_role("heading", name="Side by side")).to_be_visible()
        assert dom_findings(page) == []
        assert image_urls(page), "best frames shown"
        screenshot(page, "hostile-compare", full_page=False)

    assert dialogs == []
    assert not [u for u in requests if any(h in u for h in EVIL_HOSTS)], requests
