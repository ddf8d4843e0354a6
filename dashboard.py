"""FaceID Review Desk: ``streamlit run dashboard.py``.

The entrypoint only wires: it builds the Desk once per process (``st.cache_resource``), signs
the user in, shows the sidebar and routes every page explicitly with ``st.navigation`` (so the
``pages/`` folder is never auto-discovered, and a page not listed here cannot be reached).
Each page is a callable that receives its collaborator: ``render(service, actor)``.

Sign-in (decisions in ``faceid.accounts.auth``, widgets here):

* demo mode (no FaceID credentials): a clearly labelled demo user, switchable in the sidebar;
* ``[auth]`` in secrets.toml: ``st.login`` (OIDC), the identity mapped to an account by issuer
  + subject; an unknown identity gets the "not authorised" page;
* otherwise: local accounts (``python -m faceid user add``) with a password form.

Until someone is signed in, the only page registered is the sign-in page, so no URL reaches a
case, an image or an export. Every rerun re-checks the session (expiry, account disabled, role
changed) before anything else renders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

import pages
from faceid.access.actors import DEMO_ACTORS, Actor, demo_actor
from faceid.accounts import auth
from faceid.accounts.sessions import SessionPolicy
from faceid.app import Desk, build_desk
from faceid.core.config import Settings, load_settings
from faceid.core.errors import FaceIDError
from pages import _widgets as w
from pages import audit, case, compare, queue, reports, users
from pages._widgets import md_escape

TITLE = "FaceID Review Desk"
#: Page -> URL path. A url_path must not equal a file stem in pages/: Streamlit treats a "pages"
#: folder next to the entrypoint as an old-style multipage app until st.navigation first runs
#: (and AppTest on every run), and would then execute pages/case.py itself for "case".
URL_PATHS = {"queue": "work-queue", "case": "cases", "audit": "failed-verifications",
             "compare": "compare-cases", "reports": "metrics", "users": "user-admin"}


@st.cache_resource(show_spinner="Opening the desk…")
def get_desk(database_url: str, base_url: str, demo: bool, _settings: Settings) -> Desk:
    # Keyed on what makes two desks different; the settings object itself (which holds the
    # secret) is excluded from the cache key by its leading underscore.
    desk = build_desk(_settings)
    desk.start_worker()
    return desk


@st.cache_resource
def get_gate(database_url: str, _desk: Desk) -> auth.SessionGate:
    # One gate per desk: its login throttle must be shared by every session of the process.
    return auth.SessionGate(_desk.users, SessionPolicy.from_env())


def auth_section() -> Any:
    """secrets.toml ``[auth]`` (None without a secrets file: ``st.secrets`` would raise)."""
    if not st.secrets.load_if_toml_exists():
        return None
    return st.secrets.get("auth")


# --------------------------------------------------------------------------- sign-in


#: The demo user last chosen, in plain session state: ``st.switch_page`` (queue -> case, case
#: -> compare) reruns without the sidebar widget's value, which then fell back to the first
#: demo user while the widget still showed the chosen one.
DEMO_CHOICE = "_demo_user_choice"


def _remember_demo_user() -> None:
    st.session_state[DEMO_CHOICE] = st.session_state.get("demo_user")


def demo_sign_in() -> Actor:
    names = [a.username for a in DEMO_ACTORS]
    choice = st.session_state.get(DEMO_CHOICE)
    st.sidebar.selectbox("Demo user (switch to try claim conflicts)", names,
                         index=names.index(choice) if choice in names else 0,
                         format_func=lambda u: demo_actor(u).label, key="demo_user",
                         on_change=_remember_demo_user)
    return demo_actor(st.session_state.get("demo_user"))


def sign_in_page(gate: auth.SessionGate, providers: list[str]) -> None:
    """The one page a visitor who is not signed in can reach."""
    st.title(TITLE)
    if providers:
        _oidc_sign_in(gate, providers)
    else:
        _password_sign_in(gate)


def _password_sign_in(gate: auth.SessionGate) -> None:
    st.subheader("Sign in")
    notice = gate.notice(st.session_state)
    if notice:
        w.say("warning", notice)
    with st.form("signin", clear_on_submit=True):
        username = st.text_input("Username", key="signin_username", max_chars=128,
                                 autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password",
                                 max_chars=256, autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    st.caption("Accounts are created by an admin with `python -m faceid user add`.")
    if submitted:
        # Success or failure, rerun: the next run shows the desk, or this form with the
        # reason (kept in the session by the gate), and no password stays in any widget.
        gate.sign_in_password(st.session_state, username or "", password or "")
        st.rerun()


def _oidc_sign_in(gate: auth.SessionGate, providers: list[str]) -> None:
    notice = gate.notice(st.session_state)
    if st.user.get("is_logged_in"):
        # Signed in at the IdP but refused here (unknown identity, or a stale session that
        # must sign in afresh): the way forward is to end the IdP session.
        refused = notice == auth.NOT_AUTHORISED
        st.subheader("Not authorised" if refused else "Sign in again")
        w.say("error" if refused else "warning", notice or auth.EXPIRED)
        st.button("Sign out", key="oidc_signout", on_click=st.logout)
        return
    st.subheader("Sign in")
    if notice:
        w.say("warning", notice)
    if not auth.authlib_available():
        # st.login would raise StreamlitMissingAuthlibError: say what to install instead.
        w.say("error", auth.missing_authlib_message())
        return
    for name in providers:
        label = ("Sign in with your organisation account" if name == "default"
                 else f"Sign in with {name}")
        st.button(label, key=f"login_{name}", type="primary", on_click=st.login,
                  args=(None if name == "default" else name,))


def sign_in(desk: Desk) -> tuple[Actor | None, auth.SessionGate | None, list[str]]:
    """The signed-in actor (None: show the sign-in page), the gate and the OIDC providers."""
    if desk.demo:
        return demo_sign_in(), None, []
    gate = get_gate(desk.settings.database_url, desk)
    providers = auth.oidc_providers(auth_section())
    claims = dict(st.user) if providers else None
    actor = gate.current(st.session_state, claims)
    if actor is None and claims and claims.get("is_logged_in"):
        actor = gate.sign_in_oidc(st.session_state, claims)
    return actor, gate, providers


def _sign_out(gate: auth.SessionGate) -> None:
    if gate.sign_out(st.session_state) == auth.Method.OIDC:
        # Also end the identity cookie (and the IdP session where it supports it).
        st.logout()


# --------------------------------------------------------------------------- layout


def sidebar(desk: Desk, actor: Actor, gate: auth.SessionGate | None) -> None:
    sb = st.sidebar
    if desk.demo:
        sb.warning("DEMO MODE: simulated FaceID data, demo users, no real sign-in.")
    sb.caption(f"Mode: {desk.settings.mode_label}")
    sb.caption("Signed in as")
    sb.text(f"{actor.display_name} · {actor.username} · {actor.role}")
    if gate is not None:
        sb.button("Sign out", key="signout", icon=":material/logout:", on_click=_sign_out,
                  args=(gate,))
    try:
        counts = desk.review.counts(actor)
    except Exception:  # the counts are a convenience: never block the page on them
        sb.caption("Queue counts unavailable.")
        return
    c = sb.columns(2)
    c[0].metric("Pending", counts["pending"])
    c[1].metric("Unclaimed", counts["unclaimed"])
    c[0].metric("Claimed", counts["claimed"])
    c[1].metric("Escalated", counts["escalated"])
    c[0].metric("Decided today", counts["decided_today"])
    c[1].metric("All cases", counts["total"])


def navigation(desk: Desk, actor: Actor) -> dict[str, list[Any]]:
    """The pages this actor's role may use; the others are not registered at all."""
    review = desk.review
    # Every call the insights pages make is checked against this actor's role.
    insights = desk.insights.for_actor(actor)

    def guarded(render: Callable[[Any, Actor], None], service: Any) -> Callable[[], None]:
        return lambda: w.guarded(render, service, actor)

    all_pages = {
        "queue": st.Page(guarded(queue.render, review), title="Queue",
                         url_path=URL_PATHS["queue"], icon=":material/inbox:", default=True),
        "case": st.Page(guarded(case.render, review), title="Case", url_path=URL_PATHS["case"],
                        icon=":material/fact_check:"),
        "audit": st.Page(guarded(audit.render, insights), title="Failed verifications",
                         url_path=URL_PATHS["audit"], icon=":material/report:"),
        "compare": st.Page(guarded(compare.render, insights), title="Compare",
                           url_path=URL_PATHS["compare"], icon=":material/compare:"),
        "reports": st.Page(guarded(reports.render, insights), title="Reports",
                           url_path=URL_PATHS["reports"], icon=":material/monitoring:"),
        "users": st.Page(guarded(users.render, desk.users), title="Users",
                         url_path=URL_PATHS["users"], icon=":material/group:"),
    }
    allowed = auth.visible_pages(actor)
    pages.register({name: all_pages[name] for name in (pages.QUEUE, pages.CASE, pages.COMPARE)
                    if name in allowed})
    sections = {"Review": ["queue", "case"], "Insights": ["audit", "compare", "reports"],
                "Admin": ["users"]}
    return {title: [all_pages[n] for n in names if n in allowed]
            for title, names in sections.items() if any(n in allowed for n in names)}


def main() -> None:
    # First Streamlit command of every run (importing the modules above renders nothing).
    st.set_page_config(page_title=TITLE, page_icon=":material/badge:", layout="wide")
    try:
        settings = load_settings()
        desk = get_desk(settings.database_url, settings.base_url, settings.demo, settings)
        actor, gate, providers = sign_in(desk)
    except FaceIDError as exc:
        # Our errors carry plain, secret-free text.
        st.error(md_escape(f"The desk cannot start: {exc}"))
        st.stop()
    if actor is None:
        assert gate is not None

        def form() -> None:
            sign_in_page(gate, providers)

        # Only the sign-in form is registered, under its own path and under every page's path:
        # a deep link (say /cases?biz_id=…) shows the form instead of "page not found", and
        # after sign-in the same URL opens the real page, since a page's identity is its path.
        signin = [st.Page(form, title="Sign in", url_path="sign-in", icon=":material/login:",
                          default=True)]
        signin += [st.Page(form, title="Sign in", url_path=path) for path in URL_PATHS.values()]
        st.navigation(signin, position="hidden").run()
        return
    sidebar(desk, actor, gate)
    st.navigation(navigation(desk, actor)).run()


main()
