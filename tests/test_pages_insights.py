"""AppTest smoke tests of the audit, compare and reports pages, with hostile FaceID text.

The pages run against ``tests/insights_app.py`` (an in-memory seeded InsightsService). Besides
"renders without an exception", each test checks that attacker text (Markdown links/images,
HTML, spreadsheet formulas) never reaches an element that renders Markdown, while it does reach
a safe one (table cell, st.text/st.code) — so the scan cannot pass by showing nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import pages

APP = str(Path(__file__).with_name("insights_app.py"))
HOSTILE_BIZ_ID = "[click](http://evil.example),<script>alert(1)</script>"
SIM_IDS = ("sim,1", "sim,2", "sim,3")
# Substrings that only attacker-supplied values contain.
MARKERS = ("evil", "HYPERLINK", "<script", "](", "+cmd", "@SUM")


def _app(page: str, role: str = "auditor", **state: Any) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["t_page"] = page
    at.session_state["t_role"] = role
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _markdown_texts(at: AppTest) -> Iterator[str]:
    """Every rendered element whose body is Markdown."""
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "warning",
                 "error", "success", "latex"):
        for el in getattr(at, kind):
            yield str(el.value)
    for el in at.metric:
        yield f"{el.label} {el.value}"


def _safe_texts(at: AppTest) -> str:
    parts = [str(el.value) for el in at.text] + [str(el.value) for el in at.code]
    parts += [el.value.to_string() for el in at.dataframe]
    return "\n".join(parts)


def _assert_no_hostile_markdown(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    for text in _markdown_texts(at):
        for marker in MARKERS:
            assert marker not in text, (marker, text)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record drill-downs instead of navigating (the test app has no case page)."""
    calls: list[str] = []

    def fake_open_case(biz_id: str) -> None:
        import streamlit as st

        calls.append(biz_id)
        st.stop()

    monkeypatch.setattr(pages, "open_case", fake_open_case)
    return calls


# --------------------------------------------------------------------------- audit


def test_audit_page_renders_counts_charts_and_hostile_values_safely() -> None:
    at = _app("audit").run()
    _assert_no_hostile_markdown(at)
    assert at.title[0].value == "Failed verifications"
    labels = {m.label: m.value for m in at.metric}
    assert int(labels["Cases in range"]) == 29 and int(labels["Did not end well"]) > 1
    safe = _safe_texts(at)
    assert "HYPERLINK" in safe and "<script>" in safe and "evil.example" in safe
    assert len(at.get("vega_lite_chart")) >= 2  # by reason, by day
    assert {b.label for b in at.get("download_button")} == {"Numbers (CSV)"}


def test_audit_filters_narrow_the_list(opened: list[str]) -> None:
    at = _app("audit").run()
    at.selectbox(key="audit_reason").set_value("genuineness").run()
    _assert_no_hostile_markdown(at)
    cases = at.dataframe[-1].value
    assert HOSTILE_BIZ_ID in set(cases["biz_id"])
    assert all("genuineness" in r for r in cases["failure reasons"])
    total = int({m.label: m.value for m in at.metric}["Cases in range"])
    assert total == len(cases)


def test_audit_row_selection_opens_the_case(opened: list[str]) -> None:
    at = _app("audit", audit_cases={"selection": {"rows": [0], "columns": [], "cells": []}})
    at.run()
    assert not at.exception
    assert len(opened) == 1 and opened[0]  # the newest failed case's biz_id


# --------------------------------------------------------------------------- compare


def test_compare_page_side_by_side_from_deep_link() -> None:
    at = _app("compare")
    at.query_params["compare"] = [SIM_IDS[0], SIM_IDS[1], HOSTILE_BIZ_ID]
    at.run()
    _assert_no_hostile_markdown(at)
    assert [s.value for s in at.subheader][:3] == ["Case 1", "Case 2", "Case 3"]
    assert HOSTILE_BIZ_ID in [c.value for c in at.code]  # shown, as code
    table = at.dataframe[0].value
    assert {"section", "field", "Case 1", "Case 2", "Case 3", "differs"} <= set(table.columns)
    assert table["differs"].any()
    assert len(at.get("image")) >= 1  # best frames of the simulated OK cases
    names = table[table["field"] == "name (masked)"].to_string()
    assert "=*" in names and "HYPERLINK" not in names  # hostile names arrive masked


def test_compare_only_differences_and_linked_cases() -> None:
    at = _app("compare", compare_ids="\n".join(SIM_IDS[:2])).run()
    full = len(at.dataframe[0].value)
    at.toggle(key="compare_only_diff").set_value(True).run()
    _assert_no_hostile_markdown(at)
    diff = at.dataframe[0].value
    assert 0 < len(diff) < full and diff["differs"].all()


def test_compare_needs_two_cases_and_reports_unknown_ones() -> None:
    at = _app("compare", compare_ids=SIM_IDS[0]).run()
    assert at.info[0].value.startswith("Enter at least two")
    at = _app("compare", compare_ids=f"{SIM_IDS[0]}\n[x](http://evil.example)").run()
    _assert_no_hostile_markdown(at)
    assert "not stored" in at.warning[0].value


# --------------------------------------------------------------------------- reports


def test_reports_page_is_refused_to_a_reviewer() -> None:
    # The dashboard leaves Reports out of a reviewer's menu; rendered anyway, the page says
    # so and shows no numbers and no export.
    at = _app("reports", role="reviewer").run()
    _assert_no_hostile_markdown(at)
    assert at.title[0].value == "Reports"
    assert not at.get("download_button") and not at.get("vega_lite_chart")
    assert any("roles allowed to export" in i.value for i in at.info)


@pytest.mark.parametrize("role", ["auditor", "senior", "admin"])
def test_reports_page_renders_and_offers_the_export(role: str) -> None:
    at = _app("reports", role=role).run()
    _assert_no_hostile_markdown(at)
    assert at.title[0].value == "Reports"
    buttons = {b.label for b in at.get("download_button")}
    assert "Numbers (CSV)" in buttons
    # Only a role allowed to export unmasked is offered the choice.
    assert ("export_unmasked" in {c.key for c in at.checkbox}) == (role == "admin")
    assert any(label.startswith("Export CSV") for label in buttons)
    safe = _safe_texts(at)
    assert "idcard_number" in safe  # the documented column list is shown


def test_reports_unmasked_toggle_changes_the_button() -> None:
    at = _app("reports", role="admin").run()
    at.checkbox(key="export_unmasked").check().run()
    assert not at.exception
    assert "Export CSV (UNMASKED)" in {b.label for b in at.get("download_button")}
