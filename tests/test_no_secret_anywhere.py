"""The api_secret appears nowhere: not in logs, not on any page, not in an export, not in the DB.

FaceID takes the api_secret in the query string (OWASP ASVS 14.2.1 broken by design), so the
compensating controls — redacting log filter, secret-free exceptions, no URL in any message —
are tested on the real path end to end with a distinctive secret:

1. a simulator that only accepts that secret, and a desk built from live-mode ``Settings``;
2. fetches that succeed, and that fail every way the client knows: 403 (wrong secret on the
   FaceID side), 500 (retried once), 400 (no such result), connection refused (retried);
3. every page rendered with AppTest: ``dashboard.py`` in live mode (password sign-in as an
   admin, queue, case with personal data revealed, a lookup + fetch from the page) and the
   audit / compare / reports pages with a service bound to that admin;
4. an unmasked CSV export;
5. then a scan for the secret and for ``api_secret=`` in: every log record at DEBUG (pytest's
   caplog, plus a handler added to the root logger *after* the desk installed its redaction, so
   only the logger-level filters and the code's own hygiene protect it), every AppTest
   element's protobuf and value, the CSV, and every column of every table (bytes and JSON too).

``test_the_scan_finds_an_injected_secret`` shows the scan is not vacuous: it plants the secret
in each of those places and expects each to be reported.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from argon2 import PasswordHasher
from sqlalchemy import Engine, MetaData, select
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from faceid.access.actors import Actor
from faceid.accounts.users import UserService
from faceid.api.client import FaceIDClient
from faceid.api.simulator import SimulatorState, generate_result, start_in_thread
from faceid.app import Desk, build_desk
from faceid.core import csvsafe
from faceid.core.config import Settings
from faceid.core.timeutil import utcnow
from faceid.review.service import ReviewService
from faceid.store import schema
from faceid.store.db import memory_engine
from faceid.store.fetching import FetchService
from faceid.store.tables import Inbox

ROOT = Path(__file__).resolve().parent.parent
CANARY = "SECRET-canary-9f3b"
NEEDLES = (CANARY, "api_secret=")
API_KEY = "live-key-roles"
ADMIN = Actor("ada", "Ada Admin", "admin")
PASSWORD = "the admin's long desk password"
PII_KEY = "pii-key-for-the-secret-test"


# --------------------------------------------------------------------------- the scan


def findings(where: str, text: str | bytes | None) -> list[str]:
    if text is None:
        return []
    blob = text.decode("latin-1") if isinstance(text, bytes | bytearray | memoryview) else text
    return [f"{where}: {needle!r}" for needle in NEEDLES if needle in blob]


def db_dump(engine: Engine) -> Iterator[tuple[str, Any]]:
    """(table.column, value) for every column of every row of every table, as stored."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    yield f"{table.name}.{column}", value


def scan_db(engine: Engine) -> list[str]:
    out: list[str] = []
    seen_tables = set()
    for where, value in db_dump(engine):
        seen_tables.add(where.split(".")[0])
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        elif value is not None and not isinstance(value, str | bytes | bytearray | memoryview):
            value = str(value)
        out += findings(f"db {where}", value)
    return out


def walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def scan_app(at: AppTest, label: str) -> list[str]:
    out: list[str] = []
    for node in walk(at._tree):
        proto = getattr(node, "proto", None)
        # The protobuf text holds every label, value, option and the dataframe's Arrow bytes
        # (ASCII survives the escaping); the value adds the decoded table as text.
        out += findings(f"{label} {getattr(node, 'type', '?')} proto", str(proto))
        try:
            value = node.value
        except Exception:
            value = None
        if hasattr(value, "to_string"):
            value = value.to_string()
        out += findings(f"{label} {getattr(node, 'type', '?')} value", repr(value))
    out += findings(f"{label} session_state", repr(at.session_state.to_dict()))
    return out


class Capture(logging.Handler):
    """Formats every record the root logger sees, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stream = io.StringIO()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


def scan_logs(caplog: pytest.LogCaptureFixture, capture: Capture) -> list[str]:
    out: list[str] = []
    for rec in caplog.records:
        out += findings(f"log {rec.name}", rec.getMessage())
        out += findings(f"log {rec.name} traceback", rec.exc_text)
    out += findings("caplog text", caplog.text)
    out += findings("root handler", capture.stream.getvalue())
    return out


# --------------------------------------------------------------------------- the scenario


def closed_port() -> int:
    # A port nothing listens on (bound, read, released): connecting to it is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    yield handler
    logging.getLogger().removeHandler(handler)


def new_case(state: SimulatorState, seed: int, **kw: Any) -> str:
    return state.add(generate_result(seed, anchor=int(time.time()), status="OK", **kw))


def test_the_api_secret_is_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture,
                                   capture: Capture) -> None:
    caplog.set_level(logging.DEBUG)
    state = SimulatorState(api_key=API_KEY, api_secret=CANARY, recent=True)
    fetch_ok = [new_case(state, 700 + i) for i in range(3)] + [new_case(state, 9, hostile=True)]
    refused, broken, from_page = new_case(state, 801), new_case(state, 802), new_case(state, 803)
    sim = start_in_thread(state)
    url = f"sqlite:///{tmp_path}/desk.db"
    settings = Settings(api_key=API_KEY, api_secret=CANARY, base_url=sim.base_url,
                        database_url=url, pii_key=PII_KEY, timeout_s=5)
    desk: Desk | None = None
    try:
        desk = build_desk(settings)
        # Added after build_desk installed the redacting filter on the root handlers: this
        # handler gets no filter of its own, so it sees whatever the loggers let through.
        logging.getLogger().addHandler(capture)
        svc = desk.review

        # -- fetches, good and bad
        for biz in fetch_ok:
            out = svc.fetch(biz, ADMIN)
            assert out.ok and out.stored, out.message
        state.api_secret = "the-real-secret-rotated"  # FaceID now refuses ours: 403
        assert not svc.fetch(refused, ADMIN).ok
        state.api_secret = CANARY
        state.fail_next("INTERNAL_ERROR", 2)  # 500, retried once, still 500
        assert not svc.fetch(broken, ADMIN).ok
        assert not svc.fetch(f"{int(time.time())},no-such-case", ADMIN).ok  # 400
        dead = FaceIDClient(API_KEY, CANARY, f"http://127.0.0.1:{closed_port()}",
                            timeout_s=2, sleep=lambda s: None)  # connection refused, retried
        offline = ReviewService(desk.engine, FetchService(desk.engine, lambda: dead, settings),
                                settings)
        assert not offline.fetch(refused, ADMIN).ok
        dead.close()
        # Positive control: the secret really travelled, and each failure really happened.
        codes = state.stats()["responses_by_code"]
        assert codes.get("OK", 0) >= len(fetch_ok) and codes.get("AUTHENTICATION_ERROR")
        assert codes.get("INTERNAL_ERROR") == 2 and codes.get("RESULT_NOT_FOUND")

        # -- every page
        UserService(desk.engine, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)) \
            .add(Actor("cli:test", "test", "admin"), ADMIN.username, "admin",
                 display_name=ADMIN.display_name, password=PASSWORD)
        for var, value in {"FACEID_API_KEY": API_KEY, "FACEID_API_SECRET": CANARY,
                           "FACEID_BASE_URL": sim.base_url, "FACEID_PII_KEY": PII_KEY,
                           "DATABASE_URL": url}.items():
            monkeypatch.setenv(var, value)
        found = dashboard_pages(from_page) + insight_pages(desk, fetch_ok)

        # -- an export, unmasked (the most that can leave the desk)
        csv_bytes = desk.insights.for_actor(ADMIN).export_bytes(None, ADMIN, unmasked=True)
        assert csv_bytes.count(b"\r\n") > len(fetch_ok)  # header + the fetched cases
        found += findings("export csv", csv_bytes)
        found += scan_db(desk.engine)
        found += scan_logs(caplog, capture)
        assert caplog.records and capture.stream.getvalue()  # the logs were really captured
        assert not found, "\n".join(found)
    finally:
        st.cache_resource.clear()  # the dashboard's Desk holds a client with the secret
        if desk is not None:
            desk.close()
        sim.stop()


def dashboard_pages(not_stored: str) -> list[str]:
    """dashboard.py in live mode: sign in, queue, case (revealed), lookup + fetch by page."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    found = scan_app(at, "sign-in")
    at.text_input(key="signin_username").set_value(ADMIN.username)
    at.text_input(key="signin_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert at.title[0].value == "Review queue", [e.value for e in at.exception]
    found += scan_app(at, "queue")
    at.text_input(key="queue_biz_id").set_value(not_stored)
    next(b for b in at.button if b.label == "Look up").click().run()
    next(b for b in at.button if b.label.startswith("Fetch now")).click().run()
    assert at.title[0].value == "Case" and not at.exception, [e.value for e in at.exception]
    found += scan_app(at, "case after fetch")
    next(b for b in at.button if b.label == "Reveal personal data (audited)").click().run()
    assert any("revealed" in w.value for w in at.warning)
    found += scan_app(at, "case revealed")
    return found


def _insight_page(name, desk, actor):  # noqa: ANN001 - AppTest runs this source alone
    from pages import _widgets as w
    from pages import audit, compare, reports

    render = {"audit": audit.render, "compare": compare.render, "reports": reports.render}
    w.guarded(render[name], desk.insights.for_actor(actor), actor)


def insight_pages(desk: Desk, ids: list[str]) -> list[str]:
    found: list[str] = []
    for name in ("audit", "compare", "reports"):
        at = AppTest.from_function(_insight_page, args=(name, desk, ADMIN), default_timeout=60)
        if name == "compare":
            at.query_params["compare"] = ids[:3]
        at.run()
        assert not at.exception and at.title, (name, [e.value for e in at.exception])
        found += scan_app(at, name)
    return found


# --------------------------------------------------------------------------- the scan itself


def _leaky_page() -> None:
    import streamlit as st  # AppTest runs this function's source on its own

    st.text("fetch failed: https://api.example/x?api_key=k&api_secret=" + "SECRET-canary-9f3b")


def test_the_scan_finds_an_injected_secret(caplog: pytest.LogCaptureFixture,
                                           capture: Capture) -> None:
    # Emitted straight to the handlers: the redacting filter (installed process-wide by the
    # test above) would otherwise scrub it first, and this checks the scan, not the filter.
    record = logging.LogRecord("faceid.test", logging.WARNING, __file__, 1, "leak %s",
                               (CANARY,), None)
    caplog.handler.emit(record)
    capture.emit(record)
    found = scan_logs(caplog, capture)
    assert "log faceid.test: 'SECRET-canary-9f3b'" in found
    assert any(f.startswith("root handler") for f in found)
    at = AppTest.from_function(_leaky_page).run()
    assert any("text proto" in f for f in scan_app(at, "page"))
    eng = memory_engine()
    schema.create_all(eng)
    with Session(eng) as s:
        s.add(Inbox(source="api", received_at=utcnow(), body=b"x" + CANARY.encode(),
                    body_sha256="0" * 64))
        s.commit()
    assert scan_db(eng) == [f"db inbox.body: {CANARY!r}"]
    assert findings("csv", csvsafe.BOM + b"a,api_secret=1") == ["csv: 'api_secret='"]


# --------------------------------------------------------------------------- hardening config


def test_streamlit_config_hides_error_details_toolbar_and_grid_export() -> None:
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    # Exception text can carry a FaceID URL (the secret): the browser gets none of it.
    assert config["client"]["showErrorDetails"] == "none"
    assert config["client"]["toolbarMode"] == "viewer"  # no rerun/clear-cache/deploy menu
    assert config["client"]["disableDataExport"] is True  # no formula-unsafe grid CSV
    assert config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False
    # Credentials live in secrets.toml, which is never committed.
    assert ".streamlit/secrets.toml" in (ROOT / ".gitignore").read_text().splitlines()
    assert "[faceid]" in (ROOT / ".streamlit" / "secrets.toml.example").read_text()
