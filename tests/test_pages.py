"""AppTest checks of the pages and the dashboard: smoke tests, lookup/fetch, claim and decide,
stale-view refusal, and that attacker-controlled text never reaches a Markdown element.

Pages are rendered two ways: through ``dashboard.py`` (real routing, demo mode, a seeded SQLite
file) and alone via ``AppTest.from_function`` with a ReviewService built here, so a fake fetcher
can stand in for FaceID.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from faceid.access.actors import demo_actor
from faceid.api.simulator import generate_batch, generate_result
from faceid.core.config import Settings
from faceid.core.errors import ResultNotFound
from faceid.review.service import ReviewService
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine, memory_engine
from tests.fakes import FakeFetcher, person_doc

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEY = b"faceid-review-desk-demo-pii-key"
REVIEWER = demo_actor("demo.reviewer")
SENIOR = demo_actor("demo.senior")
AUDITOR = demo_actor("demo.auditor")
TIMEOUT = 30
HOSTILE = ("[click](http://evil)", "<img src=x onerror=alert(1)>", "<script>",
           '=HYPERLINK("http://x"', "](http", "onerror")
NOT_STORED = "1760000000,not-stored-yet"

_DOCS: list[dict[str, Any]] = []


def docs() -> list[dict[str, Any]]:
    if not _DOCS:
        _DOCS.extend(generate_batch(12, seed=11))
        hostile = generate_result(5, hostile=True)
        # An image kind the page does not know: its name becomes a label on screen.
        hostile["images"]["image_[click](http://evil)"] = hostile["images"]["image_face_front"]
        _DOCS.append(hostile)
    return _DOCS


def hostile_biz() -> str:
    return docs()[-1]["biz_info"]["biz_id"]


def seed(engine) -> None:
    for d in docs():
        store.ingest(engine, json.dumps(d).encode(), source="import", hash_key=DEMO_KEY)


@pytest.fixture
def service() -> ReviewService:
    engine = memory_engine()
    schema.create_all(engine)
    seed(engine)
    return ReviewService(engine, FakeFetcher(engine, hash_key=DEMO_KEY, seed=77), Settings())


def queue_app(service, actor) -> None:
    from pages import queue

    queue.render(service, actor)


def case_app(service, actor) -> None:
    from pages import case

    case.render(service, actor)


def page(fn, service, actor=REVIEWER, **query: str) -> AppTest:
    at = AppTest.from_function(fn, args=(service, actor), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def markdown_like(at: AppTest) -> list[str]:
    """Every element whose text Streamlit renders as Markdown."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "error", "warning",
                 "info", "success"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(m.label) for m in at.metric]
    out += [c for img in at.image for c in img.captions]
    out += [str(t.label) for t in at.tabs] + [str(e.label) for e in at.expander]
    return out


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# --------------------------------------------------------------------------- smoke


def test_queue_page_smoke(service: ReviewService) -> None:
    at = page(queue_app, service)
    no_exception(at)
    assert at.title[0].value == "Review queue"
    table = at.dataframe[0].value
    assert len(table) == 13 and "biz_id" in table.columns
    at.multiselect(key="q_liveness").set_value(["none"]).run()
    assert len(at.dataframe[0].value) == 2
    assert set(at.dataframe[0].value["status"]) == {"PROCESSING", "FAILED"}
    at.multiselect(key="q_liveness").set_value(["FAIL"]).run()
    assert not at.dataframe and any("No case matches" in i.value for i in at.info)


def test_queue_page_shows_the_fetch_queue_and_stale_leases(service: ReviewService) -> None:
    import time

    from faceid.store.fetchqueue import FetchQueue

    dead = FetchQueue(service.engine, owner="host-b:4242:dead", lease_s=0.05)
    dead.enqueue(["1760000000,held-by-a-dead-worker", "1760000000,waiting"], "cron")
    dead.claim("1760000000,held-by-a-dead-worker")
    dead.close()
    time.sleep(0.1)
    at = page(queue_app, service)
    no_exception(at)
    (panel,) = [e for e in at.expander if e.label.startswith("FaceID fetch queue")]
    assert "1 queued" in panel.label and "1 running (1 stale)" in panel.label
    jobs = panel.dataframe[0].value
    row = jobs[jobs["biz_id"] == "1760000000,held-by-a-dead-worker"].iloc[0]
    assert row["state"] == "stale"
    assert row["detail"].startswith("STALE: host-b:4242:dead stopped renewing its lease")


def test_case_page_smoke(service: ReviewService) -> None:
    biz = next(d["biz_info"]["biz_id"] for d in docs()
               if d.get("images") and d["status"] == "OK")
    at = page(case_app, service, biz_id=biz)
    no_exception(at)
    assert [t.label for t in at.tabs] == ["Images", "ID card", "Liveness", "Face compare",
                                          "Timeline", "Raw response"]
    assert len(at.image) >= 2 and at.json
    assert biz in [c.value for c in at.code]
    assert button(at, "Claim this case")
    timeline = at.dataframe[-1].value
    assert list(timeline["action"]) == ["imported", "view"]
    # Reruns of the same page do not add "view" events; the zoom/rotate view renders.
    at.radio(key="img_rotate").set_value(90).run()
    no_exception(at)
    assert list(at.dataframe[-1].value["action"]) == ["imported", "view"]


def test_case_page_without_or_with_unknown_biz_id(service: ReviewService) -> None:
    at = page(case_app, service)
    no_exception(at)
    assert at.title[0].value == "Case" and at.text_input(key="case_biz_id")
    at = page(case_app, service, biz_id="nope")
    no_exception(at)
    assert at.title[0].value == "Case not found" and "nope" in [c.value for c in at.code]


@pytest.fixture
def dashboard_db(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path}/desk.db"
    engine = make_engine(url)
    schema.upgrade(engine)
    seed(engine)
    engine.dispose()
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_BASE_URL", "FACEID_PII_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def dashboard() -> AppTest:
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT).run()


def test_dashboard_smoke_select_claim_decide(dashboard_db: str) -> None:
    at = dashboard()
    no_exception(at)
    assert "DEMO MODE" in at.sidebar.warning[0].value
    assert "demo.reviewer" in " ".join(t.value for t in at.sidebar.text)
    assert {m.label for m in at.sidebar.metric} >= {"Pending", "Claimed", "Decided today"}
    assert at.title[0].value == "Review queue"
    first = at.dataframe[0].value.iloc[0]["biz_id"]
    # AppTest cannot click a grid row: seed the selection state the grid would send.
    at.session_state["queue_table"] = {"selection": {"rows": [0], "columns": [],
                                                     "cells": []}}
    at.run()
    no_exception(at)
    assert at.title[0].value == "Case" and at.query_params["biz_id"] == first
    button(at, "Claim this case").click().run()
    assert "You hold the claim on this case." in [s.value for s in at.success]
    # Reject needs a reason and a note: refused with a plain message, nothing recorded.
    at.radio(key="decide_outcome").set_value("reject")
    button(at, "Record decision").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    at.radio(key="decide_outcome").set_value("reject")
    at.selectbox(key="decide_reason").set_value("face_mismatch")
    at.text_area(key="decide_note").set_value("Different person on the ID photo.")
    button(at, "Record decision").click().run()
    no_exception(at)
    assert any("Decision recorded" in s.value for s in at.success)
    history = [d.value for d in at.dataframe]
    decisions = next(d for d in history if "outcome" in d.columns)
    assert list(decisions["outcome"]) == ["reject"]
    timeline = next(d for d in history if "action" in d.columns)
    assert list(timeline["action"])[-2:] == ["claim", "decide"]
    # "Next case" opens the oldest unclaimed pending case.
    button(at, "Next case").click().run()
    no_exception(at)
    assert at.query_params["biz_id"] != first
    assert at.title[0].value == "Case"


def test_dashboard_demo_user_switch(dashboard_db: str) -> None:
    at = dashboard()
    at.sidebar.selectbox(key="demo_user").set_value("demo.auditor").run()
    no_exception(at)
    assert "demo.auditor" in " ".join(t.value for t in at.sidebar.text)
    assert button(at, "Next case for me").disabled


# --------------------------------------------------------------------------- lookup / fetch


def test_lookup_stored_opens_the_case(service: ReviewService) -> None:
    at = page(queue_app, service)
    biz = docs()[0]["biz_info"]["biz_id"]
    at.text_input(key="queue_biz_id").set_value(biz)
    button(at, "Look up").click().run()
    no_exception(at)
    assert at.query_params["biz_id"] == biz


def test_lookup_not_stored_shows_quota_then_fetches(service: ReviewService) -> None:
    at = page(queue_app, service)
    at.text_input(key="queue_biz_id").set_value(NOT_STORED)
    button(at, "Look up").click().run()
    no_exception(at)
    assert "2 reads left until 2025-10-11 08:00:00 UTC" in texts(at)
    button(at, "Fetch now (spends one read)").click().run()
    no_exception(at)
    assert [b for b, _ in service.fetcher.fetched] == [NOT_STORED]
    assert at.query_params["biz_id"] == NOT_STORED


def test_fetch_error_is_plain_words(service: ReviewService) -> None:
    service.fetcher.raise_exc = ResultNotFound(http_status=400)
    at = page(queue_app, service)
    at.text_input(key="queue_biz_id").set_value(NOT_STORED)
    button(at, "Look up").click().run()
    button(at, "Fetch now (spends one read)").click().run()
    no_exception(at)
    assert any("did not store" in e.value for e in at.error)
    assert any("FaceID has no result for this biz_id" in t for t in texts(at))


def test_auditor_cannot_fetch(service: ReviewService) -> None:
    at = page(queue_app, service, actor=AUDITOR)
    at.text_input(key="queue_biz_id").set_value(NOT_STORED)
    button(at, "Look up").click().run()
    assert not [b for b in at.button if b.label.startswith("Fetch now")]
    assert any("cannot fetch" in i.value for i in at.info)


# --------------------------------------------------------------------------- decide flows


def test_stale_view_is_refused_on_the_page(service: ReviewService) -> None:
    biz = docs()[1]["biz_info"]["biz_id"]
    at = page(case_app, service, biz_id=biz)
    button(at, "Claim this case").click().run()
    # Meanwhile a senior breaks the claim and the reviewer re-claims in another tab: the
    # version this page rendered (2) is now stale.
    service.release(biz, SENIOR, 2)
    service.claim(biz, REVIEWER, 3)
    button(at, "Record decision").click().run()
    no_exception(at)
    assert any("changed after you opened it" in e.value for e in at.error)
    assert at.dataframe  # the page re-rendered with the fresh case
    view = service.open_case(biz, REVIEWER, record_view=False)
    assert view is not None and view.decisions.empty and view.version == 4
    # The refreshed page decides fine.
    button(at, "Record decision").click().run()
    assert any("Decision recorded" in s.value for s in at.success)


def test_claim_conflict_and_auditor_read_only(service: ReviewService) -> None:
    biz = docs()[2]["biz_info"]["biz_id"]
    service.claim(biz, demo_actor("demo.reviewer2"), 1)
    at = page(case_app, service, biz_id=biz)
    assert not [b for b in at.button if b.label == "Claim this case"]
    assert any("Claimed by demo" in i.value for i in at.info)
    service.add_note(biz, REVIEWER, "reviewer remark")
    at = page(case_app, service, actor=AUDITOR, biz_id=biz)
    labels = {b.label for b in at.button}
    assert "Claim this case" not in labels and "Record decision" not in labels
    assert "Reveal personal data (audited)" not in labels
    # Read-only: the auditor sees the notes but gets no note form.
    assert "Add note" not in labels and not [t for t in at.text_area if t.key == "note_text"]
    shown = texts(at)
    assert "reviewer remark" in shown
    assert any(t.endswith(" UTC · demo.reviewer") for t in shown)


def test_dashboard_live_mode_shows_only_the_sign_in_form(dashboard_db: str,
                                                         monkeypatch) -> None:
    # (Signing in, expiry, revocation and menus: tests/test_auth.py.)
    monkeypatch.setenv("FACEID_API_KEY", "k")
    monkeypatch.setenv("FACEID_API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("FACEID_PII_KEY", "pii-key-for-tests")
    at = dashboard()
    no_exception(at)
    assert [s.value for s in at.subheader] == ["Sign in"]
    assert {t.label for t in at.text_input} == {"Username", "Password"}
    assert not at.dataframe and not at.sidebar.metric and not at.image
    assert "s3cr3t-value" not in repr(at)


def test_dashboard_bad_config_is_plain(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    at = dashboard()
    no_exception(at)
    assert any("The desk cannot start" in e.value and "Unsupported database" in e.value
               for e in at.error)


# --------------------------------------------------------------------------- security


def test_hostile_text_never_reaches_markdown(service: ReviewService) -> None:
    at = page(case_app, service, biz_id=hostile_biz())
    button(at, "Reveal personal data (audited)").click().run()
    no_exception(at)
    at.text_area(key="note_text").set_value("[x](http://evil) <img src=x onerror=alert(1)>")
    button(at, "Add note").click().run()
    no_exception(at)
    cells = " ".join(d.value.to_string() for d in at.dataframe)
    # The hostile strings are on the page (as data), so the scan below is not vacuous...
    assert "[click](http://evil)" in cells
    assert "[x](http://evil) <img src=x onerror=alert(1)>" in texts(at)  # the note
    assert "=HYPERLINK" in cells
    # ...but never inside an element that renders Markdown.
    for value in markdown_like(at):
        for bad in HOSTILE:
            assert bad not in value, (bad, value)


def test_url_paths_do_not_shadow_page_files() -> None:
    # Streamlit runs pages/<stem>.py itself for a url_path equal to a file stem in pages/
    # (old-style multipage mode, active until st.navigation first runs): a blank page.
    import ast
    import re

    source = (ROOT / "dashboard.py").read_text(encoding="utf-8")
    paths = set(re.findall(r'url_path="([^"]+)"', source))
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "URL_PATHS"
                                                for t in node.targets):
            paths |= set(ast.literal_eval(node.value).values())
    stems = {p.stem for p in (ROOT / "pages").glob("*.py")}
    assert {"sign-in", "work-queue", "user-admin"} <= paths, paths
    assert not paths & stems, paths & stems


def test_escape_helper() -> None:
    from pages._widgets import md_escape

    assert md_escape("[x](http://evil)") == r"\[x\]\(http\:\/\/evil\)"
    assert md_escape("**b** :red[x] $y$") == r"\*\*b\*\* \:red\[x\] \$y\$"


# --------------------------------------------------------------------------- personal data


def shown(at: AppTest) -> str:
    """Everything a page shows as data: tables, text, code, JSON, metrics."""
    parts = [d.value.to_string() for d in at.dataframe] + texts(at)
    parts += [c.value for c in at.code] + [str(j.value) for j in at.json]
    parts += [str(m.value) for m in at.metric]
    return "\n".join(parts)


def compare_app(engine, actor) -> None:
    from faceid.reports.insights import InsightsService
    from pages import compare

    compare.render(InsightsService(engine).for_actor(actor), actor)


def test_personal_data_is_masked_everywhere_until_revealed(service: ReviewService) -> None:
    doc = next(d for d in docs() if d.get("images") and d["status"] == "OK"
               and d.get("idcard_info", {}).get("front_side"))
    biz, info = doc["biz_info"]["biz_id"], doc["idcard_info"]
    ocr = info["front_side"]["ocr_result"]
    bd = ocr["birthday"]
    clear = {"name": info["idcard_name"], "ID number": info["idcard_number"],
             "address": ocr["address"],
             "birthday": f"{bd['year']}-{int(bd['month']):02d}-{int(bd['day']):02d}"}
    at = page(case_app, service, biz_id=biz)
    text = shown(at)
    assert not {k for k, v in clear.items() if v in text}, "clear personal data on the page"
    assert f"{bd['year']}-**-**" in text  # the birthday keeps its year only
    assert f'"month": "{"*" * len(bd["month"])}"' in at.json[0].value  # raw JSON too
    # The reveal is explicit, allowed by role, audited, and then shows the clear values.
    button(at, "Reveal personal data (audited)").click().run()
    text = shown(at)
    assert all(v in text for v in clear.values())
    assert "reveal_pii" in list(at.dataframe[-1].value["action"])
    # Compare and the queue never show them, for any role.
    other = next(d["biz_info"]["biz_id"] for d in docs() if d["biz_info"]["biz_id"] != biz)
    for actor in (REVIEWER, SENIOR, AUDITOR):
        at = AppTest.from_function(compare_app, args=(service.engine, actor),
                                   default_timeout=TIMEOUT)
        at.query_params["compare"] = [biz, other]
        at.run()
        no_exception(at)
        assert at.dataframe and not {k for k, v in clear.items() if v in shown(at)}
        assert not {k for k, v in clear.items() if v in shown(page(queue_app, service, actor))}


# --------------------------------------------------------------------------- linked identities

NUMBER = "110101199003071234"
ALIAS = "[click](http://evil)"  # a hostile name: it must reach the page only as text


def people() -> list[dict]:
    """One person seen five times (twice under other names) and a stranger."""
    return [person_doc(1, "1,me", "张三", NUMBER, biz_no="order-7"),
            person_doc(2, "2,alias", "李四", NUMBER),
            person_doc(3, "3,hostile-alias", ALIAS, NUMBER),
            person_doc(4, "4,again", "张三", NUMBER),
            person_doc(5, "5,same-order", "王五", "440101199001011234", biz_no="order-7"),
            person_doc(6, "6,stranger", "赵六", "510101199001011234")]


@pytest.fixture
def linked_service() -> ReviewService:
    engine = memory_engine()
    schema.create_all(engine)
    for d in people():
        store.ingest(engine, json.dumps(d).encode(), source="import", hash_key=DEMO_KEY)
    return ReviewService(engine, None, Settings())


def other_names(at: AppTest, prefix: str) -> set[str]:
    (line,) = [t for t in texts(at) if t.startswith(prefix)]
    return set(line[len(prefix):].split(", "))


def linked_table(at: AppTest):
    return next(d.value for d in at.dataframe if "different name" in d.value.columns
                or "other name" in d.value.columns)


def test_case_page_linked_panel_masks_then_reveals(linked_service: ReviewService) -> None:
    at = page(case_app, linked_service, biz_id="1,me")
    no_exception(at)
    assert any("appears under ANOTHER name" in wv.value and "2 other case(s)" in wv.value
               for wv in at.warning)
    assert any(i.value.startswith("Linked: 4 other case(s) — 3 with the same ID number, "
                                  "1 with the same biz_no") for i in at.info)
    assert other_names(at, "Other name(s), masked: ") == {"李*", "[" + "*" * 19}
    table = linked_table(at)
    assert set(table["biz_id"]) == {"2,alias", "3,hostile-alias", "4,again", "5,same-order"}
    assert {"case time (UTC)", "status", "liveness", "review state"} <= set(table.columns)
    flagged = set(table.loc[table["different name"], "biz_id"])
    assert flagged == {"2,alias", "3,hostile-alias"}
    everything = shown(at)
    assert "李四" not in everything and ALIAS not in everything  # masked until revealed
    assert button(at, "Compare these attempts")
    # The reveal (audited) shows the other names in clear, as text and in cells only.
    button(at, "Reveal personal data (audited)").click().run()
    no_exception(at)
    assert other_names(at, "Other name(s): ") == {"李四", ALIAS}
    assert {"李四", ALIAS} <= set(linked_table(at)["name"])
    for value in markdown_like(at):
        for bad in HOSTILE:
            assert bad not in value, (bad, value)


def test_case_page_linked_row_opens_that_case(linked_service: ReviewService) -> None:
    at = AppTest.from_function(case_app, args=(linked_service, REVIEWER),
                               default_timeout=TIMEOUT)
    at.query_params["biz_id"] = "1,me"
    at.run()
    rows = list(linked_table(at)["biz_id"])
    at.session_state["case_linked:1,me"] = {"selection": {"rows": [1], "columns": [],
                                                          "cells": []}}
    at.run()
    no_exception(at)
    assert at.query_params["biz_id"] == rows[1]
    # The opened case has its own linked table (another key), nothing selected in it.
    assert at.code[0].value == rows[1]


def test_case_page_without_links_says_so(linked_service: ReviewService) -> None:
    at = page(case_app, linked_service, biz_id="6,stranger")
    no_exception(at)
    assert "No other case shares this ID number or biz_no." in [c.value for c in at.caption]
    assert not [b for b in at.button if b.label == "Compare these attempts"]


def test_compare_these_attempts_asks_for_compare(linked_service: ReviewService) -> None:
    import pages

    at = page(case_app, linked_service, biz_id="1,me")
    view = linked_service.open_case("1,me", REVIEWER, record_view=False)
    assert view is not None and view.linked is not None
    expected = ["1,me", *view.linked.biz_ids[:3]]  # this case + the 3 most recent linked
    button(at, "Compare these attempts").click().run()
    no_exception(at)
    # Outside the dashboard there is no compare page: the request and the link are left.
    assert at.session_state[pages.COMPARE_PREFILL] == expected
    assert at.query_params["compare"] == expected
    assert any("Compare takes 4 cases" in c.value for c in at.caption)  # 4 linked, 3 shown


def test_queue_page_linked_column_and_filter(linked_service: ReviewService) -> None:
    at = page(queue_app, linked_service)
    no_exception(at)
    table = at.dataframe[0].value
    linked = dict(zip(table["biz_id"], table["linked"], strict=True))
    assert linked["1,me"] == "3 · other name" and linked["4,again"] == "3 · other name"
    assert linked["5,same-order"] == "" and linked["6,stranger"] == ""
    assert ALIAS not in table.to_string() and "李四" not in table.to_string()
    at.checkbox(key="q_linked").check().run()
    no_exception(at)
    assert set(at.dataframe[0].value["biz_id"]) == {"1,me", "2,alias", "3,hostile-alias",
                                                    "4,again"}


@pytest.fixture
def linked_dashboard_db(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path}/desk.db"
    engine = make_engine(url)
    schema.upgrade(engine)
    for d in people():
        store.ingest(engine, json.dumps(d).encode(), source="import", hash_key=DEMO_KEY)
    engine.dispose()
    for var in ("FACEID_API_KEY", "FACEID_API_SECRET", "FACEID_BASE_URL", "FACEID_PII_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def test_dashboard_case_to_compare_these_attempts(linked_dashboard_db: str) -> None:
    engine = make_engine(linked_dashboard_db)
    view = ReviewService(engine, None, Settings()).open_case("1,me", REVIEWER,
                                                            record_view=False)
    engine.dispose()
    assert view is not None and view.linked is not None
    expected = view.linked.compare_ids()
    at = dashboard()
    row = list(at.dataframe[0].value["biz_id"]).index("1,me")
    at.session_state["queue_table"] = {"selection": {"rows": [row], "columns": [],
                                                     "cells": []}}
    at.run()
    assert at.title[0].value == "Case" and at.query_params["biz_id"] == "1,me"
    button(at, "Compare these attempts").click().run()
    no_exception(at)
    # The real compare page, pre-filled: this case and the 3 most recent linked ones.
    assert at.title[0].value == "Compare cases"
    assert at.multiselect(key="compare_pick").value == expected
    table = at.dataframe[0].value
    biz_row = table[table["field"] == "biz_id"].iloc[0]
    assert [biz_row[f"Case {i}"] for i in range(1, 5)] == expected
    assert at.query_params["compare"] == expected
