"""The CSV export as compliance receives it: clicked in a real browser, the file read back.

Seeded with the demo data set (hostile OCR text included: formulas, HTML, scripts). As the demo
auditor on Reports: the page says how many rows the export holds, the "Export CSV" button
downloads the file (the server builds it when clicked), and the file has the BOM, the
documented header, one row per case, masked names and ID numbers, and no cell a spreadsheet
would read as a formula. The export is in the audit trail under the auditor's name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, select

from faceid.store.db import make_engine
from faceid.store.export_lines import COLUMN_NAMES
from faceid.store.tables import AuditEvent

from .harness import run_streamlit, screenshot, wait_idle
from .test_insights_pages import seed_demo

FORMULA_START = tuple("=+-@\t\r\n\0＝＋－＠")


@pytest.mark.browser
def test_export_download_opens_cleanly_and_leaks_nothing(page, tmp_path: Path,
                                                         monkeypatch) -> None:
    db = tmp_path / "desk.db"
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_PII_KEY"):
        monkeypatch.delenv(var, raising=False)
    seed_demo(db, count=30)
    with run_streamlit("dashboard.py", env={"DATABASE_URL": f"sqlite:///{db}"}) as base:
        page.goto(base)
        wait_idle(page)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Failed verifications").click()  # not the first page (decision 20)
        wait_idle(page)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_role("combobox", name="Demo user (switch to try claim conflicts)").click()
        page.get_by_role("option", name="Demo Auditor (auditor)").click()
        wait_idle(page)
        nav.get_by_text("Reports").click()
        wait_idle(page)
        announced = page.get_by_text(re.compile(r"verification\(s\) match these filters"))
        expect(announced).to_be_visible()
        rows_announced = int(announced.inner_text().split()[0].replace(",", ""))
        assert rows_announced == 30
        button = page.get_by_role("button", name="Export CSV")
        button.scroll_into_view_if_needed()
        screenshot(page, "export-reports", full_page=False)
        with page.expect_download(timeout=60_000) as dl:
            button.click()
        download = dl.value
        assert download.suggested_filename.startswith("verifications-")
        assert download.suggested_filename.endswith(".csv")
        data = Path(download.path()).read_bytes()

    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the Chinese correctly
    text = data.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text, newline="")))
    assert table[0] == list(COLUMN_NAMES)
    body = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert len(body) == rows_announced
    assert text.split("\n", 1)[0].endswith("\r")  # CRLF line ends
    numbers = [r["idcard_number"] for r in body if r["idcard_number"]]
    names = [r["idcard_name"] for r in body if r["idcard_name"]]
    assert numbers and names
    assert all("*" in n and not re.search(r"\d{6,}", n) for n in numbers), numbers
    assert all("*" in n for n in names), names
    cells = [cell for r in body for cell in r.values()]
    assert not [c for c in cells if c.startswith(FORMULA_START)], "a cell starts a formula"
    hostile = [c for c in cells if c.startswith("'")]
    assert hostile, "the demo set carries formula-like OCR text: some cell must be prefixed"

    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            events = s.exec(select(AuditEvent).where(AuditEvent.action == "export")).all()
    finally:
        engine.dispose()
    assert [e.actor for e in events] == ["demo.auditor"]
    detail = json.loads(events[0].detail or "{}")
    assert detail["rows"] == rows_announced and detail["unmasked"] is False
