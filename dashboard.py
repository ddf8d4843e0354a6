"""FaceID Review Desk: ``streamlit run dashboard.py``.

The entrypoint only wires: it builds the Desk once per process (``st.cache_resource``), signs in
the actor, shows the sidebar and routes every page explicitly with ``st.navigation`` (so the
``pages/`` folder is never auto-discovered, and a page not listed here cannot be reached).
Each page is a callable that receives its collaborator: ``render(service, actor)``.
"""

from __future__ import annotations

import streamlit as st

import pages
from faceid.actors import DEMO_ACTORS, Actor, demo_actor
from faceid.app import Desk, build_desk
from faceid.config import Settings, load_settings
from faceid.errors import FaceIDError
from pages import audit, case, compare, queue, reports
from pages._widgets import md_escape


@st.cache_resource(show_spinner="Opening the desk…")
def get_desk(database_url: str, base_url: str, demo: bool, _settings: Settings) -> Desk:
    # Keyed on what makes two desks different; the settings object itself (which holds the
    # secret) is excluded from the cache key by its leading underscore.
    return build_desk(_settings)


def sign_in(desk: Desk) -> Actor | None:
    """The signed-in actor. Real sign-in is a later issue; ``Actor`` is the seam for it."""
    if not desk.demo:
        # Fail closed: without sign-in, live FaceID data must not be shown to anyone.
        return None
    names = [a.username for a in DEMO_ACTORS]
    st.sidebar.selectbox("Demo user (switch to try claim conflicts)", names,
                         format_func=lambda u: demo_actor(u).label, key="demo_user")
    return demo_actor(st.session_state.get("demo_user"))


def sidebar(desk: Desk, actor: Actor) -> None:
    sb = st.sidebar
    if desk.demo:
        sb.warning("DEMO MODE: simulated FaceID data, demo users, no real sign-in.")
    sb.caption(f"Mode: {desk.settings.mode_label}")
    sb.caption("Signed in as")
    sb.text(f"{actor.display_name} · {actor.username} · {actor.role}")
    try:
        counts = desk.review.counts()
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


def main() -> None:
    # First Streamlit command of every run (importing the modules above renders nothing).
    st.set_page_config(page_title="FaceID Review Desk", page_icon=":material/badge:",
                       layout="wide")
    try:
        settings = load_settings()
        desk = get_desk(settings.database_url, settings.base_url, settings.demo, settings)
    except FaceIDError as exc:
        # Our errors carry plain, secret-free text.
        st.error(md_escape(f"The desk cannot start: {exc}"))
        st.stop()
    actor = sign_in(desk)
    if actor is None:
        st.error("Live mode needs sign-in, which is not available yet: the desk stays locked. "
                 "Remove the FaceID credentials to use demo mode.")
        st.stop()
    sidebar(desk, actor)
    review = desk.review

    # url_paths must not equal a file stem in pages/: Streamlit treats a "pages" folder next to
    # the entrypoint as an old-style multipage app until st.navigation first runs (and AppTest
    # on every run), and would then execute pages/case.py itself for the hash of "case".
    queue_page = st.Page(lambda: queue.render(review, actor), title="Queue",
                         url_path="work-queue", icon=":material/inbox:", default=True)
    case_page = st.Page(lambda: case.render(review, actor), title="Case", url_path="cases",
                        icon=":material/fact_check:")
    insights = desk.insights
    audit_page = st.Page(lambda: audit.render(insights, actor), title="Failed verifications",
                         url_path="failed-verifications", icon=":material/report:")
    compare_page = st.Page(lambda: compare.render(insights, actor), title="Compare",
                           url_path="compare-cases", icon=":material/compare:")
    reports_page = st.Page(lambda: reports.render(insights, actor), title="Reports",
                           url_path="metrics", icon=":material/monitoring:")
    nav = {
        "Review": [queue_page, case_page],
        "Insights": [audit_page, compare_page, reports_page],
    }
    pages.register({pages.QUEUE: queue_page, pages.CASE: case_page})
    st.navigation(nav).run()


main()
