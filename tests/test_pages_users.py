"""AppTest of the Users page: list, add (password and OIDC), role, disable/enable, password
reset, and the service's refusals shown as plain errors (never a traceback, never a password)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select
from streamlit.testing.v1 import AppTest

from faceid.store.tables import AuditEvent

APP = str(Path(__file__).with_name("users_app.py"))


def _app(role: str = "admin") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["t_role"] = role
    at.session_state["t_db"] = uuid.uuid4().hex  # a fresh store per test
    return at.run()


def _rows(at: AppTest) -> dict[str, dict[str, Any]]:
    frame = at.dataframe[0].value
    return {r["username"]: r for r in frame.to_dict("records")}


def _messages(at: AppTest) -> list[str]:
    # Alerts are Markdown-escaped (w.say): compare the text a person reads.
    return [str(m.value).replace("\\", "") for m in [*at.error, *at.success]]


def _audit(at: AppTest) -> list[str]:
    engine = at.session_state["t_service"].engine
    with Session(engine) as s:
        return [e.action for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.id)))]


def _add(at: AppTest, name: str, role: str, **fields: str) -> AppTest:
    at.text_input(key="users_add_name").input(name)
    at.selectbox(key="users_add_role").set_value(role)
    for key, value in fields.items():
        at.text_input(key=key).input(value)
    at.button(key="FormSubmitter:users_add-Add user").click()
    return at.run()


def test_lists_accounts_without_secrets() -> None:
    at = _app()
    assert not at.exception
    rows = _rows(at)
    assert set(rows) == {"root", "rita", "olga"}
    assert rows["olga"]["signs in with"] == "oidc" and rows["rita"]["role"] == "reviewer"
    everything = at.dataframe[0].value.to_string() + " ".join(t.value for t in at.text)
    assert "argon2" not in everything and "correct horse" not in everything


def test_add_a_password_user_then_a_duplicate() -> None:
    at = _app()
    at = _add(at, "Sam.Senior", "senior", users_add_display="Sam",
              users_add_pw="a long enough pass", users_add_pw2="a long enough pass")
    assert not at.exception
    assert "User sam.senior added (senior, password)." in _messages(at)
    assert _rows(at)["sam.senior"]["role"] == "senior"
    assert _audit(at)[-1] == "user.add"
    at = _add(at, "sam.senior", "reviewer", users_add_pw="another long pass",
              users_add_pw2="another long pass")
    assert "User 'sam.senior' already exists." in _messages(at)


def test_password_rules_and_mismatch_are_plain_errors() -> None:
    at = _app()
    at = _add(at, "tom", "reviewer", users_add_pw="short", users_add_pw2="short")
    assert any("at least 12 characters" in m for m in _messages(at))
    at = _add(at, "tom", "reviewer", users_add_pw="a long enough pass",
              users_add_pw2="a long enough pasS")
    assert "The two passwords differ; nothing was saved." in _messages(at)
    assert "tom" not in _rows(at)
    assert not any("a long enough" in m for m in _messages(at))


def test_add_an_oidc_user() -> None:
    at = _app()
    at.radio(key="users_add_method").set_value("OIDC identity (issuer + subject)").run()
    at = _add(at, "ivy", "auditor", users_add_iss="https://idp.example/",
              users_add_sub="456")
    assert "User ivy added (auditor, OIDC)." in _messages(at)
    assert _rows(at)["ivy"]["signs in with"] == "oidc"
    at.radio(key="users_add_method").set_value("OIDC identity (issuer + subject)").run()
    at = _add(at, "ivy2", "auditor", users_add_iss="https://idp.example/",
              users_add_sub="456")
    assert any("already linked" in m for m in _messages(at))


def test_change_role_disable_enable_and_reset_password() -> None:
    at = _app()
    at.selectbox(key="users_pick").set_value("rita").run()
    at.selectbox(key="users_role_rita").set_value("senior").run()
    at.button(key="users_role_btn_rita").click().run()
    assert "rita is now senior." in _messages(at)
    assert _rows(at)["rita"]["role"] == "senior"

    at.button(key="users_disable_rita").click().run()
    assert _rows(at)["rita"]["status"] == "disabled"
    at.button(key="users_enable_rita").click().run()
    assert _rows(at)["rita"]["status"] == "active"

    at.text_input(key="users_pw_new_rita").input("a fresh long password!")
    at.text_input(key="users_pw_again_rita").input("a fresh long password!")
    at.button(key="FormSubmitter:users_pw_rita-Set password").click().run()
    assert "Password of rita set." in _messages(at)
    assert _audit(at)[-4:] == ["user.role", "user.disable", "user.enable", "user.passwd"]
    svc = at.session_state["t_service"]
    assert svc.authenticate("rita", "a fresh long password!") is not None


def test_oidc_users_have_no_password_form() -> None:
    at = _app()
    at.selectbox(key="users_pick").set_value("olga").run()
    assert not [t for t in at.text_input if t.key == "users_pw_new_olga"]


def test_the_last_admin_cannot_be_disabled_or_demoted() -> None:
    at = _app()
    at.selectbox(key="users_pick").set_value("root").run()
    at.button(key="users_disable_root").click().run()
    assert "root is the last enabled admin." in _messages(at)
    at.selectbox(key="users_role_root").set_value("reviewer").run()
    at.button(key="users_role_btn_root").click().run()
    assert "root is the last enabled admin." in _messages(at)
    assert _rows(at)["root"]["role"] == "admin"


def test_other_roles_are_refused_by_the_service() -> None:
    for role in ("reviewer", "senior", "auditor"):
        at = _app(role)
        assert not at.exception and not at.dataframe
        assert _messages(at) == [f"The {role} role may not manage users."]
