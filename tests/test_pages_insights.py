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
from tests.fakes import person_doc

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


def test_audit_date_presets_answer_why_yesterday_failed(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """"Yesterday" is one click: the UTC day before today (pinned here to 2025-10-02, the
    day after the hand-made hostile case), and a picker for any other range."""
    from datetime import UTC, datetime

    from faceid.core import timeutil

    monkeypatch.setattr(timeutil, "utcnow", lambda: datetime(2025, 10, 2, 8, tzinfo=UTC))

    def in_range(at: AppTest) -> int:
        return int({m.label: m.value for m in at.metric}["Cases in range"])

    at = _app("audit").run()
    assert in_range(at) == 29 and not at.date_input  # all dates: no picker shown
    at.segmented_control(key="audit_dates_preset").set_value("Yesterday").run()
    _assert_no_hostile_markdown(at)
    yesterday = in_range(at)
    assert 1 <= yesterday < 29
    assert HOSTILE_BIZ_ID in set(at.dataframe[-1].value["biz_id"])
    at.segmented_control(key="audit_dates_preset").set_value("Today").run()
    assert in_range(at) == 0
    at.segmented_control(key="audit_dates_preset").set_value("Pick dates").run()
    picker = at.date_input(key="audit_dates")
    picker.set_value((datetime(2025, 10, 1).date(), datetime(2025, 10, 1).date())).run()
    assert in_range(at) == yesterday


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
    at = _app("compare", compare_mode="text", compare_ids="\n".join(SIM_IDS[:2])).run()
    full = len(at.dataframe[0].value)
    at.toggle(key="compare_only_diff").set_value(True).run()
    _assert_no_hostile_markdown(at)
    diff = at.dataframe[0].value
    assert 0 < len(diff) < full and diff["differs"].all()


def test_compare_needs_two_cases_and_reports_unknown_ones() -> None:
    at = _app("compare", compare_mode="text", compare_ids=SIM_IDS[0]).run()
    assert at.info[0].value.startswith("Pick at least 2 cases")
    at = _app("compare", compare_mode="text",
              compare_ids=f"{SIM_IDS[0]}\n[x](http://evil.example)").run()
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


def test_reports_says_how_many_rows_the_export_holds() -> None:
    at = _app("reports", role="auditor").run()
    captions = [c.value for c in at.caption]
    assert "29 verification(s) match these filters." in captions
    at.selectbox(key="export_liveness").set_value("FAIL").run()
    (line,) = [c.value for c in at.caption if "match these filters" in c.value]
    fails = int(line.split()[0])
    assert 1 <= fails < 29
    export = next(b for b in at.get("download_button") if b.proto.label == "Export CSV")
    assert not export.proto.disabled
    at.text_input(key="export_reviewer").input("nobody-decided-these").run()
    assert ("0 verification(s) match these filters — nothing to export."
            in [c.value for c in at.caption])
    export = next(b for b in at.get("download_button") if b.proto.label == "Export CSV")
    assert export.proto.disabled


def test_reports_unmasked_toggle_changes_the_button() -> None:
    at = _app("reports", role="admin").run()
    at.checkbox(key="export_unmasked").check().run()
    assert not at.exception
    assert "Export CSV (UNMASKED)" in {b.label for b in at.get("download_button")}


# --------------------------------------------------------------------------- compare picker

NUMBER = "110101199003071234"


@pytest.fixture(scope="module")
def picker_engine() -> Iterator[Any]:
    """One person seen five times (once under another name, once via biz_no only), a
    stranger, and 55 unrelated cases stored after them (so the picker has two pages)."""
    import json

    from faceid.api.simulator import generate_batch
    from faceid.store import schema
    from faceid.store import write as store
    from faceid.store.db import memory_engine

    engine = memory_engine()
    schema.create_all(engine)
    docs = [person_doc(1, "1,me", "张三", NUMBER, biz_no="order-7"),
            person_doc(2, "2,alias", "李四", NUMBER),
            person_doc(3, "3,again", "张三", NUMBER),
            person_doc(4, "4,again", "张三", NUMBER),
            person_doc(5, "5,same-order", "王五", "440101199001011234", biz_no="order-7"),
            person_doc(6, "6,stranger", "赵六", "510101199001011234")]
    docs += generate_batch(55, seed=3)
    for doc in docs:
        store.ingest(engine, json.dumps(doc).encode(), source="import", hash_key=b"k")
    yield engine
    engine.dispose()


# Unannotated: AppTest.from_function runs this function's source without the module's imports.
def compare_app(engine, role) -> None:
    from faceid.access.actors import Actor
    from faceid.reports.insights import InsightsService
    from pages import compare

    actor = Actor(f"apptest.{role}", "AppTest", role)
    compare.render(InsightsService(engine).for_actor(actor), actor)


def _compare(engine: Any, role: str = "reviewer") -> AppTest:
    return AppTest.from_function(compare_app, args=(engine, role), default_timeout=60)


def _compared(at: AppTest) -> list[str]:
    """The biz_ids of the side-by-side table, in column order."""
    table = at.dataframe[0].value
    row = table[table["field"] == "biz_id"].iloc[0]
    return [row[c] for c in table.columns if c.startswith("Case ")]


def test_compare_picker_lists_searches_and_keeps_the_picks(picker_engine: Any) -> None:
    at = _compare(picker_engine).run()
    _assert_no_hostile_markdown(at)
    assert at.radio(key="compare_mode").value == "pick"
    pick = at.multiselect(key="compare_pick")
    assert len(pick.options) == 50  # one page of the newest cases, not the whole table
    assert any("61 case(s) stored · newest first · list page 1 of 2" in c.value
               for c in at.caption)
    assert any(i.value.startswith("Pick at least 2 cases") for i in at.info)
    # The second page of the list comes from the service too.
    at.session_state["compare_options_page"] = 2
    at.run()
    assert len(at.multiselect(key="compare_pick").options) == 11
    # A prefix search (biz_no here) narrows the options server-side.
    at.text_input(key="compare_search").input("order-7").run()
    pick = at.multiselect(key="compare_pick")
    assert [o.split(" · ")[0] for o in pick.options] == ["5,same-order", "1,me"]
    pick.set_value(["1,me", "5,same-order"]).run()
    _assert_no_hostile_markdown(at)
    assert _compared(at) == ["1,me", "5,same-order"]
    assert at.query_params["compare"] == ["1,me", "5,same-order"]  # shareable link
    assert len(at.get("image")) == 2  # best frames side by side
    # Another search keeps what is picked among the options, and adds to it.
    at.text_input(key="compare_search").input("2,al").run()
    pick = at.multiselect(key="compare_pick")
    assert [o.split(" · ")[0] for o in pick.options] == ["1,me", "5,same-order", "2,alias"]
    pick.set_value(["1,me", "5,same-order", "2,alias"]).run()
    assert _compared(at) == ["1,me", "5,same-order", "2,alias"]
    t = at.dataframe[0].value.set_index("field")
    assert t.loc["same ID number group", "differs"]  # A, B, A: the alias is the same number
    # The advanced box starts from the same cases.
    at.radio(key="compare_mode").set_value("text").run()
    assert at.text_area(key="compare_ids").value == "1,me\n5,same-order\n2,alias"
    assert _compared(at) == ["1,me", "5,same-order", "2,alias"]


def test_compare_all_attempts_of_oneperson_doc(picker_engine: Any) -> None:
    from faceid.reports.insights import InsightsService

    linked = InsightsService(picker_engine).linked_cases("1,me")
    at = _compare(picker_engine).run()
    at.radio(key="compare_mode").set_value("person").run()
    assert any("Choose one case" in i.value for i in at.info)
    at.text_input(key="compare_search").input("1,me").run()
    at.selectbox(key="compare_person").select("1,me").run()
    _assert_no_hostile_markdown(at)
    # Five attempts (four linked): the chosen one and the three most recent others.
    assert _compared(at) == ["1,me", *linked.biz_ids[:3]]
    assert any("This person has 5 attempts: comparing the chosen case and the 3 most recent"
               in i.value for i in at.info)
    assert any("under another name" in e.value for e in at.error)  # the linked list below
    at.text_input(key="compare_search").input("6,str").run()
    at.selectbox(key="compare_person").select("6,stranger").run()
    assert any("nothing to compare" in i.value for i in at.info) and not at.dataframe


def test_compare_deep_link_of_more_than_four(picker_engine: Any) -> None:
    ids = ["1,me", "2,alias", "3,again", "4,again", "6,stranger"]
    at = _compare(picker_engine)
    at.query_params["compare"] = ids
    at.run()
    _assert_no_hostile_markdown(at)
    assert any("The link names 5 cases: the first 4 are picked" in i.value for i in at.info)
    assert at.multiselect(key="compare_pick").value == ids[:4]
    assert _compared(at) == ids[:4]
    assert at.query_params["compare"] == ids[:4]
