"""User administration (admins): who may sign in, with which role and how.

Renders what ``UserService`` returns and calls it for every change; the service checks the
``manage_users`` permission, keeps one enabled admin, hashes passwords (argon2) and records
every change in the audit trail. Passwords are typed into password fields inside forms that
clear on submit, and never shown or echoed. Usernames and display names are shown only in
table cells and st.text (a display name is free text).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from faceid.access.actors import Actor
from faceid.access.permissions import Role
from faceid.accounts.users import MIN_PASSWORD_LENGTH, UserService
from faceid.core.errors import InvalidRole, UserError
from pages import _widgets as w

FLASH = "users_flash"
ROLES = [r.value for r in Role]
ROLE_HELP = ("reviewer: claims and decides cases · senior: also second reviews, reports and "
             "masked export · auditor: read-only, reports, masked export · admin: everything, "
             "users, unmasked export")
PASSWORD, OIDC = "Password", "OIDC identity (issuer + subject)"


def render(service: UserService, actor: Actor) -> None:
    st.title("Users")
    st.caption("Who may sign in, with which role, and how. Every change is recorded in the "
               "audit trail; a disabled user is signed out at their next click.")
    if actor.is_demo:
        st.info("Demo mode signs in with demo users, not these accounts: they are used when "
                "the desk runs with FaceID credentials.")
    w.show_flash(FLASH)
    users = service.list_users(actor)
    if not users:
        st.info("No accounts yet: add the first one below (or with the `user add` command).")
    else:
        w.table([{"username": u.username, "display name": u.display_name or "",
                  "role": u.role, "signs in with": u.auth,
                  "status": "disabled" if u.disabled else "active",
                  "created (UTC)": u.created_at.strftime("%Y-%m-%d %H:%M")} for u in users])

    left, right = st.columns(2)
    with left:
        _add_user(service, actor)
    with right:
        _change_user(service, actor, [u.username for u in users],
                     {u.username: u for u in users})


def _apply(action: Any, done: str) -> None:
    """Run one service call; its plain error or ``done`` is shown after the rerun."""
    try:
        action()
    except (UserError, InvalidRole) as exc:  # plain, secret-free texts
        w.flash(FLASH, "error", str(exc))
        return
    w.flash(FLASH, "success", done)


def _add_user(service: UserService, actor: Actor) -> None:
    st.subheader("Add a user")
    method = st.radio("Signs in with", [PASSWORD, OIDC], key="users_add_method",
                      horizontal=True)
    with st.form("users_add", clear_on_submit=True):
        username = st.text_input("Username", max_chars=128, key="users_add_name",
                                 help="Lower-case letters, digits and . _ @ -")
        display = st.text_input("Display name", max_chars=256, key="users_add_display")
        role = st.selectbox("Role", ROLES, key="users_add_role", help=ROLE_HELP)
        if method == PASSWORD:
            password = st.text_input(f"Password (at least {MIN_PASSWORD_LENGTH} characters)",
                                     type="password", max_chars=256, key="users_add_pw")
            again = st.text_input("Password again", type="password", max_chars=256,
                                  key="users_add_pw2")
        else:
            issuer = st.text_input("OIDC issuer (iss)", max_chars=512, key="users_add_iss",
                                   placeholder="https://login.example.com/")
            subject = st.text_input("OIDC subject (sub)", max_chars=256, key="users_add_sub",
                                    help="The identity provider's stable id for the person "
                                    "(not the e-mail address).")
        if not st.form_submit_button("Add user", type="primary"):
            return
    name = username.strip().lower()
    if method == PASSWORD:
        if password != again:
            w.say("error", "The two passwords differ; nothing was saved.")
            return
        _apply(lambda: service.add(actor, username, role, display_name=display or None,
                                   password=password),
               f"User {name} added ({role}, password).")
    else:
        _apply(lambda: service.add(actor, username, role, display_name=display or None,
                                   oidc_iss=issuer.strip(), oidc_sub=subject.strip()),
               f"User {name} added ({role}, OIDC).")
    st.rerun()


def _change_user(service: UserService, actor: Actor, names: list[str],
                 by_name: dict[str, Any]) -> None:
    st.subheader("Change a user")
    if not names:
        st.info("No users yet.")
        return
    name = st.selectbox("User", names, key="users_pick")
    user = by_name[name]
    st.text(f"{user.username} · {user.role} · {user.auth} · "
            f"{'disabled' if user.disabled else 'active'}")

    role_col, status_col = st.columns(2)
    with role_col:
        new_role = st.selectbox("Role", ROLES, index=ROLES.index(user.role)
                                if user.role in ROLES else 0, key=f"users_role_{name}",
                                help=ROLE_HELP)
        if st.button("Change role", key=f"users_role_btn_{name}",
                     disabled=new_role == user.role):
            _apply(lambda: service.set_role(actor, name, new_role),
                   f"{name} is now {new_role}.")
            st.rerun()
    with status_col:
        st.write("")  # align with the selectbox
        if user.disabled:
            if st.button("Enable", key=f"users_enable_{name}"):
                _apply(lambda: service.enable(actor, name), f"{name} may sign in again.")
                st.rerun()
        elif st.button("Disable", key=f"users_disable_{name}",
                       help="Refuses sign-in from now on and ends their open sessions."):
            _apply(lambda: service.disable(actor, name), f"{name} is disabled.")
            st.rerun()

    if user.auth != "password":
        return
    with st.form(f"users_pw_{name}", clear_on_submit=True):
        password = st.text_input("New password", type="password", max_chars=256,
                                 key=f"users_pw_new_{name}")
        again = st.text_input("New password again", type="password", max_chars=256,
                              key=f"users_pw_again_{name}")
        if not st.form_submit_button("Set password"):
            return
    if password != again:
        w.say("error", "The two passwords differ; nothing was saved.")
        return
    _apply(lambda: service.set_password(actor, name, password), f"Password of {name} set.")
    st.rerun()
