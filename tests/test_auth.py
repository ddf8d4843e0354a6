"""Sign-in: the session gate (``faceid.accounts.auth``, with a dict as session state) and the
dashboard's live mode through AppTest (password form, OIDC mapping, expiry, revocation, sign-out,
menus)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from streamlit.testing.v1 import AppTest

from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.accounts import auth
from faceid.accounts.auth import (
    REAUTH_KEY,
    SESSION_KEY,
    LoginThrottle,
    SessionGate,
    SignedIn,
)
from faceid.accounts.sessions import SessionPolicy
from faceid.accounts.users import UserService
from faceid.store import schema
from faceid.store.db import make_engine
from faceid.store.tables import AuditEvent

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor("root.admin", "Root Admin", "admin")
PASSWORD = "correct horse battery staple"
ISS = "https://idp.example.com"
T0 = datetime(2025, 10, 10, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def cheap() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(engine: Engine) -> UserService:
    svc = UserService(engine, cheap())
    svc.add(ADMIN, "rita", "reviewer", display_name="Rita", password=PASSWORD)
    svc.add(ADMIN, "otto", "senior", oidc_iss=ISS, oidc_sub="sub-otto")
    return svc


@pytest.fixture
def gate(users: UserService, clock: Clock) -> SessionGate:
    return SessionGate(users, SessionPolicy(idle_minutes=30, absolute_hours=12), clock=clock)


def actions(engine: Engine) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(engine) as s:
        rows = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
        return [(e.actor, e.action, json.loads(e.detail or "{}")) for e in rows
                if e.action in ("login", "login.failed", "logout")]


# --------------------------------------------------------------------------- password sessions


def test_password_sign_in_rerun_and_sign_out(gate: SessionGate, engine: Engine,
                                             clock: Clock) -> None:
    state: dict[str, Any] = {"leftover_widget": 1}
    assert gate.current(state) is None
    assert gate.sign_in_password(state, "rita", "wrong password!!") is None
    assert gate.notice(state) == auth.WRONG and SESSION_KEY not in state
    actor = gate.sign_in_password(state, " Rita ", PASSWORD)
    assert actor == Actor("rita", "Rita", "reviewer")
    assert "leftover_widget" not in state and gate.notice(state) is None  # a fresh session
    clock.now += timedelta(minutes=20)
    assert gate.current(state) == actor
    assert state[SESSION_KEY].last_seen == clock.now  # activity moves the idle clock
    assert gate.sign_out(state) == auth.Method.PASSWORD
    assert gate.current(state) is None and gate.notice(state) == auth.SIGNED_OUT
    assert [(a, act) for a, act, _ in actions(engine)] == [
        ("anonymous", "login.failed"), ("rita", "login"), ("rita", "logout")]
    assert actions(engine)[-1][2] == {"reason": "user"}


def test_idle_and_absolute_expiry_clear_the_session(gate: SessionGate, engine: Engine,
                                                    clock: Clock) -> None:
    state: dict[str, Any] = {}
    gate.sign_in_password(state, "rita", PASSWORD)
    state["case_reveal:x"] = True  # e.g. a reveal flag: must not survive the session
    clock.now += timedelta(minutes=30)
    assert gate.current(state) is None
    assert gate.notice(state) == auth.EXPIRED and "case_reveal:x" not in state
    assert actions(engine)[-1] == ("rita", "logout", {"reason": "expired"})
    # Active every 25 minutes, still out after 12 hours.
    gate.sign_in_password(state, "rita", PASSWORD)
    for _ in range(int(12 * 60 / 25)):
        clock.now += timedelta(minutes=25)
        assert gate.current(state) is not None
    clock.now += timedelta(minutes=25)
    assert gate.current(state) is None and gate.notice(state) == auth.EXPIRED


def test_disable_or_role_change_takes_effect_at_the_next_rerun(
        gate: SessionGate, users: UserService, engine: Engine) -> None:
    state: dict[str, Any] = {}
    gate.sign_in_password(state, "rita", PASSWORD)
    users.set_role(ADMIN, "rita", "auditor")
    assert gate.current(state) is None and gate.notice(state) == auth.REVOKED
    assert actions(engine)[-1] == ("rita", "logout", {"reason": "revoked"})
    # Signing in again picks up the new role; a disable then ends that session too.
    assert gate.sign_in_password(state, "rita", PASSWORD) == Actor("rita", "Rita", "auditor")
    users.disable(ADMIN, "rita")
    assert gate.current(state) is None and gate.notice(state) == auth.REVOKED
    assert gate.sign_in_password(state, "rita", PASSWORD) is None


def test_a_forged_or_stale_session_record_grants_nothing(gate: SessionGate) -> None:
    # The record names a user who does not exist / a role the account does not have.
    state: dict[str, Any] = {SESSION_KEY: SignedIn("ghost", "admin", "password", T0, T0)}
    assert gate.current(state) is None
    state = {SESSION_KEY: SignedIn("rita", "admin", "password", T0, T0)}
    assert gate.current(state) is None
    assert gate.current({SESSION_KEY: {"username": "rita"}}) is None  # not a SignedIn


def test_throttle_after_repeated_failures(gate: SessionGate, engine: Engine,
                                          clock: Clock) -> None:
    state: dict[str, Any] = {}
    for _ in range(auth.MAX_FAILURES):
        assert gate.sign_in_password(state, "rita", "not the password") is None
    # Even the right password is refused now, without being checked, and that is audited.
    assert gate.sign_in_password(state, "RITA", PASSWORD) is None
    assert gate.notice(state) == auth.THROTTLED
    assert actions(engine)[-1][2] == {"method": "password", "reason": "throttled",
                                      "username": "rita"}
    clock.now += auth.FAILURE_WINDOW
    assert gate.sign_in_password(state, "rita", PASSWORD) is not None


def test_throttle_window_is_per_username() -> None:
    t = LoginThrottle(max_failures=2, window=timedelta(minutes=1))
    t.failed("a", T0)
    t.failed("a", T0 + timedelta(seconds=30))
    assert t.blocked("a", T0 + timedelta(seconds=40)) and not t.blocked("b", T0)
    assert not t.blocked("a", T0 + timedelta(seconds=61))  # the first failure aged out


# --------------------------------------------------------------------------- OIDC sessions


def claims(sub: str = "sub-otto", **extra: Any) -> dict[str, Any]:
    return {"is_logged_in": True, "iss": ISS, "sub": sub, "iat": int(T0.timestamp()), **extra}


def test_oidc_maps_issuer_and_subject_never_email(gate: SessionGate, engine: Engine) -> None:
    state: dict[str, Any] = {}
    actor = gate.sign_in_oidc(state, claims(email="someone@example.com"))
    assert actor is not None and (actor.username, actor.role) == ("otto", "senior")
    assert actions(engine)[-1] == ("otto", "login", {"method": "oidc"})
    assert gate.current(state, claims()) == actor
    # The session is bound to that identity: another one (or none) in st.user ends it.
    assert gate.current(dict(state), claims("sub-mallory")) is None
    assert gate.current(dict(state), {"is_logged_in": False}) is None
    # Same subject at another issuer, or the e-mail of a registered user: not otto.
    for other in ({"iss": "https://evil.example", "sub": "sub-otto"},
                  {"iss": ISS, "sub": "sub-mallory", "email": "otto@example.com",
                   "preferred_username": "otto"}):
        assert gate.sign_in_oidc({}, {**claims(), **other}) is None


def test_unknown_identity_is_refused_and_audited_once(gate: SessionGate,
                                                      engine: Engine) -> None:
    state: dict[str, Any] = {}
    for _ in range(3):  # every rerun of the "not authorised" page
        assert gate.sign_in_oidc(state, claims("sub-stranger")) is None
    assert gate.notice(state) == auth.NOT_AUTHORISED
    refused = [a for a in actions(engine) if a[1] == "login.failed"]
    assert refused == [("anonymous", "login.failed",
                        {"method": "oidc", "reason": "no enabled account", "oidc_iss": ISS,
                         "oidc_sub": "sub-stranger"})]


def test_oidc_expiry_counts_from_the_idp_login_and_needs_a_fresh_login(
        gate: SessionGate, users: UserService, clock: Clock) -> None:
    # The 30-day identity cookie of an IdP login 13 hours ago: not a fresh sign-in.
    clock.now = T0 + timedelta(hours=13)
    state: dict[str, Any] = {}
    assert gate.sign_in_oidc(state, claims()) is None
    assert state[REAUTH_KEY] and gate.notice(state) == auth.EXPIRED
    # A fresh IdP login works; an idle expiry then blocks a silent re-login from the cookie.
    fresh = claims(iat=int(clock.now.timestamp()))
    state = {}
    assert gate.sign_in_oidc(state, fresh) is not None
    clock.now += timedelta(minutes=31)
    assert gate.current(state, fresh) is None and state[REAUTH_KEY]
    assert gate.sign_in_oidc(state, fresh) is None
    # Disabling the account ends an OIDC session at once although the cookie lives on.
    state = {}
    assert gate.sign_in_oidc(state, fresh) is not None
    assert gate.current(state, fresh) is not None
    users.disable(ADMIN, "otto")
    assert gate.current(state, fresh) is None and gate.notice(state) == auth.REVOKED


# --------------------------------------------------------------------------- menus and config


@pytest.mark.parametrize(("role", "pages"), [
    ("reviewer", ["queue", "case", "audit", "compare"]),
    ("senior", ["queue", "case", "audit", "compare", "reports"]),
    ("auditor", ["queue", "case", "audit", "compare", "reports"]),
    ("admin", ["queue", "case", "audit", "compare", "reports", "users"]),
])
def test_role_based_menus(role: str, pages: list[str]) -> None:
    assert auth.visible_pages(Actor("x", "X", role)) == pages
    assert auth.visible_pages(None) == []
    assert set(auth.PAGE_PERMISSIONS.values()) <= set(Permission)


def test_oidc_provider_config_and_missing_authlib() -> None:
    assert auth.oidc_providers(None) == [] == auth.oidc_providers({})
    assert auth.oidc_providers({"redirect_uri": "x", "cookie_secret": "y"}) == []
    assert auth.oidc_providers({"client_id": "c", "client_secret": "s"}) == ["default"]
    assert auth.oidc_providers({"cookie_secret": "y", "okta": {"client_id": "c"},
                                "other": {"x": 1}}) == ["okta"]
    message = auth.missing_authlib_message()
    assert auth.AUTHLIB_REQUIREMENT in message and "[auth]" in message


# --------------------------------------------------------------------------- the dashboard


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Live-mode settings (credentials, a PII key) over a fresh SQLite file with users."""
    url = f"sqlite:///{tmp_path}/desk.db"
    eng = make_engine(url)
    schema.upgrade(eng)
    svc = UserService(eng, cheap())
    svc.add(ADMIN, "rita", "reviewer", display_name="Rita", password=PASSWORD)
    svc.add(ADMIN, "aude", "auditor", password=PASSWORD)
    svc.add(ADMIN, "otto", "senior", oidc_iss=ISS, oidc_sub="sub-otto")
    for var, value in {"DATABASE_URL": url, "FACEID_API_KEY": "live-key",
                       "FACEID_API_SECRET": "live-secret-value",
                       "FACEID_BASE_URL": "http://127.0.0.1:9",
                       "FACEID_PII_KEY": "pii-key-for-tests"}.items():
        monkeypatch.setenv(var, value)
    yield eng
    eng.dispose()


def dashboard(**secrets: Any) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=30)
    at.secrets.update(secrets)
    return at


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="signin_username").set_value(username)
    at.text_input(key="signin_password").set_value(password)
    return at.button[0].click().run()


def signed_in_as(at: AppTest) -> str:
    return " ".join(t.value for t in at.sidebar.text)


def alerts(elements: Any) -> list[str]:
    # Alerts go through md_escape: compare without the backslashes.
    return [str(e.value).replace("\\", "") for e in elements]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_dashboard_password_sign_in_expiry_revocation_and_sign_out(live: Engine) -> None:
    at = dashboard().run()
    no_exception(at)
    assert [s.value for s in at.subheader] == ["Sign in"] and not at.dataframe
    sign_in(at, "rita", "not the password")
    assert auth.WRONG in alerts(at.warning) and not at.dataframe
    sign_in(at, "rita", PASSWORD)
    no_exception(at)
    assert at.title[0].value == "Review queue" and "rita · reviewer" in signed_in_as(at)
    assert any("No case matches" in i.value for i in at.info)  # the (empty) queue
    # Idle for an hour (the session's last activity moved back): expired at the next click.
    rec = at.session_state[SESSION_KEY]
    at.session_state[SESSION_KEY] = replace(rec, last_seen=rec.last_seen - timedelta(hours=1))
    at.run()
    assert [s.value for s in at.subheader] == ["Sign in"] and not at.sidebar.text
    assert any("session expired" in w for w in alerts(at.warning))
    sign_in(at, "rita", PASSWORD)
    assert at.title[0].value == "Review queue"
    # An admin disables the account: the very next rerun is signed out.
    UserService(live, cheap()).disable(ADMIN, "rita")
    at.run()
    assert at.title[0].value == "FaceID Review Desk"
    assert any("disabled" in w for w in alerts(at.warning))
    UserService(live, cheap()).enable(ADMIN, "rita")
    sign_in(at, "rita", PASSWORD)
    next(b for b in at.sidebar.button if b.label == "Sign out").click().run()
    no_exception(at)
    assert [s.value for s in at.subheader] == ["Sign in"]
    assert auth.SIGNED_OUT in alerts(at.warning)
    assert [a for _, a, _ in actions(live)] == [
        "login.failed", "login", "logout", "login", "logout", "login", "logout"]
    assert [d.get("reason") for _, a, d in actions(live) if a == "logout"] == [
        "expired", "revoked", "user"]


def test_dashboard_oidc_identity_mapping(live: Engine) -> None:
    auth_cfg = {"redirect_uri": "http://localhost:8501/oauth2callback",
                "cookie_secret": "cookie-secret-for-tests", "client_id": "desk",
                "client_secret": "idp-secret", "server_metadata_url":
                "https://idp.example.com/.well-known/openid-configuration"}
    now = int(datetime.now(UTC).timestamp())
    # Registered identity: straight to the queue, no password form.
    at = dashboard(auth=auth_cfg)
    at.user = {"is_logged_in": True, "iss": ISS, "sub": "sub-otto", "iat": now,
               "email": "otto@example.com"}
    at.run()
    no_exception(at)
    assert at.title[0].value == "Review queue" and "otto · senior" in signed_in_as(at)
    at.run()  # the next click: the same session, re-checked, not a new sign-in
    assert "otto · senior" in signed_in_as(at)
    assert [a for who, a, _ in actions(live) if who == "otto"] == ["login"]
    # A signed-in IdP user with no account here: the "not authorised" page, audited.
    at = dashboard(auth=auth_cfg)
    at.user = {"is_logged_in": True, "iss": ISS, "sub": "sub-nobody", "iat": now}
    at.run()
    no_exception(at)
    assert [s.value for s in at.subheader] == ["Not authorised"] and not at.dataframe
    assert [b.label for b in at.button] == ["Sign out"]
    # Not signed in, and Authlib missing in this venv: a clear message, not a traceback.
    at = dashboard(auth=auth_cfg)
    at.user = {"is_logged_in": False}
    at.run()
    no_exception(at)
    if auth.authlib_available():
        assert [b.label for b in at.button] == ["Sign in with your organisation account"]
    else:
        assert any(auth.AUTHLIB_REQUIREMENT in e for e in alerts(at.error))
    assert not at.text_input  # OIDC configured: no password form
    refused = [d for _, a, d in actions(live) if a == "login.failed"]
    assert refused == [{"method": "oidc", "reason": "no enabled account", "oidc_iss": ISS,
                        "oidc_sub": "sub-nobody"}]
