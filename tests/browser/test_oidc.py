"""OIDC sign-in end to end in a real browser: ``st.login`` against a local OpenID provider.

The desk runs in live mode with ``[auth]`` in its secrets file pointing at ``oidc_idp.IdP``
(discovery, authorization code with PKCE, RS256 ID token with the nonce, JWKS) over loopback.
Chromium follows the real redirects: desk -> /authorize -> /oauth2callback -> desk. Checked:

- an identity registered on an account (issuer + subject) is signed in with that account's
  role, and the sign-in is audited with the method;
- an identity without an account is refused ("Not authorised"), audited, and sees no data;
- signing out ends the session and the identity cookie (back to the sign-in button);
- disabling the account while signed in ends the session at the next click;
- the identity is matched on issuer + subject only: the same e-mail under another subject is
  refused.
Screenshots: artifacts/screenshots/oidc-*.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, col, select

from faceid.access.actors import Actor
from faceid.accounts.users import UserService
from faceid.api.simulator import generate_result
from faceid.store import schema
from faceid.store import write as store
from faceid.store.db import make_engine
from faceid.store.tables import AuditEvent

from .harness import free_port, run_streamlit, screenshot, wait_idle
from .live import live_env
from .oidc_idp import IdP

PII_KEY = "browser-oidc-pii-key"
API_SECRET = "browser-oidc-api-secret"
CLIENT_SECRET = "oidc-client-secret-for-tests"
SIGN_IN = "Sign in with your organisation account"


def _events(db: Path, action: str) -> list[AuditEvent]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            return list(s.exec(select(AuditEvent).where(AuditEvent.action == action)
                               .order_by(col(AuditEvent.id))).all())
    finally:
        engine.dispose()


def arrive(page, landmark) -> None:
    """Wait for the landmark of the page we end on, then for the app to be idle. (Waiting for
    idle first would read a page that is being replaced.)"""
    expect(landmark).to_be_visible(timeout=30_000)
    wait_idle(page)


def leave(page, button, landmark) -> None:
    """Click a button that leaves the page (st.login/st.logout and the IdP's redirects) and
    arrive where it ends. The click must be seen to navigate first: st.logout reruns the
    script before the browser leaves, so the landmark (the sign-in button) can show for a
    moment on the page that is about to go, and a click on it there would be lost."""
    with page.expect_navigation(timeout=30_000):
        button.click()
    arrive(page, landmark)


@pytest.mark.browser
def test_oidc_sign_in_refusal_and_sign_out(page, tmp_path: Path) -> None:
    idp = IdP(client_id="faceid-desk", client_secret=CLIENT_SECRET).start()
    db = tmp_path / "live.db"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    store.ingest(engine, json.dumps(generate_result(3, status="OK")).encode(),
                 source="import", hash_key=PII_KEY.encode())
    UserService(engine).add(Actor("cli:test", "test", "admin"), "sam", "senior",
                            display_name="Sam Senior", oidc_iss=idp.issuer,
                            oidc_sub="subject-sam")
    engine.dispose()

    port = free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-cookie-secret-only-for-this-test-0123456789"\n'
        f'client_id = "{idp.client_id}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{idp.metadata_url}"\n', encoding="utf-8")
    try:
        with (live_env(db, api_secret=API_SECRET, pii_key=PII_KEY) as env,
              run_streamlit("dashboard.py", env=env, port=port,
                            args=["--secrets.files", str(secrets)]) as base):
            page.goto(base)
            wait_idle(page)
            expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
            expect(page.get_by_label("Password")).to_have_count(0)  # OIDC only
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
            screenshot(page, "oidc-sign-in", full_page=False)

            # 1. An identity nobody registered: refused, no menu, no data.
            idp.next_subject, idp.email = "subject-stranger", "sam@example.com"
            leave(page, page.get_by_role("button", name=SIGN_IN),
                  page.get_by_role("heading", name="Not authorised"))
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
            expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
            screenshot(page, "oidc-refused", full_page=False)
            assert idp.tokens_issued == 1  # the code was really exchanged
            refused = _events(db, "login.failed")
            assert len(refused) == 1 and "subject-stranger" in (refused[0].detail or "")
            leave(page, page.get_by_role("button", name="Sign out"),
                  page.get_by_role("button", name=SIGN_IN))

            # 2. The registered identity: signed in as sam, with the senior's menu.
            idp.next_subject = "subject-sam"
            leave(page, page.get_by_role("button", name=SIGN_IN),
                  page.get_by_role("heading", name="Review queue"))
            sidebar = page.get_by_test_id("stSidebar")
            expect(sidebar.get_by_text("Sam Senior · sam · senior")).to_be_visible()
            nav = page.get_by_test_id("stSidebarNav")
            expect(nav.get_by_text("Reports")).to_be_visible()  # senior: yes
            expect(nav.get_by_text("Users")).to_have_count(0)  # admin only
            screenshot(page, "oidc-signed-in", full_page=False)
            logins = _events(db, "login")
            assert [e.actor for e in logins] == ["sam"]
            assert '"method": "oidc"' in (logins[0].detail or "")
            assert idp.requests.count("POST /token") == 2

            # 3. Sign out: the desk session and the identity cookie end.
            leave(page, sidebar.get_by_role("button", name="Sign out"),
                  page.get_by_role("button", name=SIGN_IN))
            expect(page.get_by_role("heading", name="Review queue")).to_have_count(0)
            page.reload()
            wait_idle(page)
            expect(page.get_by_role("button", name=SIGN_IN)).to_be_visible()
            assert [e.actor for e in _events(db, "logout")] == ["sam"]

            # 4. Disabled while signed in: the next click ends the session (the identity
            #    cookie alone opens nothing).
            leave(page, page.get_by_role("button", name=SIGN_IN),
                  page.get_by_role("heading", name="Review queue"))
            engine = make_engine(f"sqlite:///{db}")
            UserService(engine).disable(Actor("cli:test", "test", "admin"), "sam")
            engine.dispose()
            page.get_by_test_id("stSidebarNav").get_by_text("Failed verifications").click()
            arrive(page, page.get_by_role("heading", name="Sign in again"))
            expect(page.get_by_text("Your account was disabled or its role changed")
                   ).to_be_visible()
            expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
            expect(page.get_by_role("heading", name="Failed verifications")).to_have_count(0)
            screenshot(page, "oidc-revoked", full_page=False)
            assert _events(db, "logout")[-1].actor == "sam"
    finally:
        idp.stop()
