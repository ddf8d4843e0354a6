"""AppTest script for the audit, compare and reports pages (not a test module itself).

Builds one in-memory store per process (``st.cache_resource``) seeded with simulated cases,
hostile ones included, plus hand-made rows whose FaceID-supplied columns (status, fail_reason,
verify_error, genuineness signals, biz_id, reviewer, reason) are Markdown/HTML/formula payloads.
``st.session_state["t_page"]`` picks the page, ``["t_role"]`` the actor's role.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from sqlmodel import Session  # noqa: E402

from faceid.access.actors import Actor  # noqa: E402
from faceid.api.simulator import generate_batch, generate_result  # noqa: E402
from faceid.reports.insights import InsightsService  # noqa: E402
from faceid.store import schema  # noqa: E402
from faceid.store import write as store  # noqa: E402
from faceid.store.db import memory_engine  # noqa: E402
from faceid.store.tables import Decision, Verification  # noqa: E402
from pages import _widgets as w  # noqa: E402
from pages import audit, compare, reports  # noqa: E402

HOSTILE_BIZ_ID = "[click](http://evil.example),<script>alert(1)</script>"
SIM_IDS = ("sim,1", "sim,2", "sim,3")
MD_LINK = "[click](http://evil.example)"
FORMULA = '=HYPERLINK("http://evil.example","a")'
IMG = "![x](http://evil.example/x.png)"
SCRIPT = "<script>alert(1)</script>"


@st.cache_resource
def seeded_service() -> InsightsService:
    engine = memory_engine()
    schema.create_all(engine)
    key = b"apptest-key"
    docs = [generate_result(100 + i, biz_id, status="OK", procedure_type="video",
                            hostile=i == 0) for i, biz_id in enumerate(SIM_IDS)]
    docs += generate_batch(25, seed=9, hostile_rate=0.3)
    for doc in docs:
        store.ingest(engine, json.dumps(doc).encode(), source="import", hash_key=key)
    now = datetime(2025, 10, 1, 12, tzinfo=UTC)
    with Session(engine) as s:
        v = Verification(biz_id=HOSTILE_BIZ_ID, biz_no=MD_LINK, status=FORMULA[:64],
                         fail_reason=MD_LINK, procedure_type="video", liveness_result="FAIL",
                         verify_error=SCRIPT, genuineness_exceeded=IMG, faceid_band="none",
                         idcard_name=FORMULA, idcard_number="+cmd|' /C calc'!A0",
                         risk_flags="status_not_ok,liveness_fail,verify_error,"
                         "compare_below_1e-3,genuineness", risk_count=5,
                         verified_at=now, stored_at=now, decision_state="rejected")
        s.add(v)
        s.flush()
        s.add(Decision(verification_id=v.id, biz_id=v.biz_id, actor=MD_LINK, outcome="reject",
                       reason=FORMULA[:64], decided_at=now, based_on_version=1))
        s.commit()
    return InsightsService(engine)


_PAGES = {"audit": audit.render, "compare": compare.render, "reports": reports.render}
_role = str(st.session_state.get("t_role", "auditor"))
_actor = Actor(f"apptest.{_role}", "AppTest", _role)
# As dashboard.py does: the page gets a service bound to the actor, so every call it makes is
# checked against that role (a refusal shows as a plain error, as w.guarded renders it).
w.guarded(_PAGES[str(st.session_state.get("t_page", "audit"))],
          seeded_service().for_actor(_actor), _actor)
