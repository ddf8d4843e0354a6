"""Streamlit pages of the review desk.

Each page module exposes ``render(service, actor)``: it only renders and calls the service.
``dashboard.py`` routes them with ``st.navigation`` (the ``pages/`` folder is therefore never
auto-discovered) and registers the Page objects here so one page can open another.
"""

from __future__ import annotations

import streamlit as st

QUEUE = "queue"
CASE = "case"
COMPARE = "compare"
_ROUTES_KEY = "_faceid_routes"
#: The case the case page last recorded a "view" for (cleared when the queue is shown, so
#: re-opening a case from the queue records a new view, but reruns of one page do not).
VIEWED_KEY = "_faceid_viewed_case"
#: One-shot message shown at the top of the case page on its next render.
CASE_FLASH = "case_flash"
#: biz_ids another page asks the compare page to pick (consumed by its next render: the
#: picker's own state would otherwise win over a new deep link).
COMPARE_PREFILL = "_faceid_compare_prefill"


def register(routes: dict[str, st.Page]) -> None:
    """Remember this run's Page objects by name (``st.switch_page`` needs the object for a
    callable page)."""
    st.session_state[_ROUTES_KEY] = routes


def open_case(biz_id: str) -> None:
    """Go to the case page showing ``biz_id`` (deep link ``?biz_id=``)."""
    page = st.session_state.get(_ROUTES_KEY, {}).get(CASE)
    if page is None:
        # Rendered outside the dashboard (a test app): stay on this script, set the link
        # (once: a still-selected table row must not rerun forever).
        if st.query_params.get("biz_id") != biz_id:
            st.query_params["biz_id"] = biz_id
            st.rerun()
        return
    st.switch_page(page, query_params={"biz_id": biz_id})


def open_queue() -> None:
    page = st.session_state.get(_ROUTES_KEY, {}).get(QUEUE)
    if page is None:
        st.query_params.clear()
        st.rerun()
    st.switch_page(page)


def open_compare(biz_ids: list[str]) -> None:
    """Go to the compare page with ``biz_ids`` picked (deep link ``?compare=…`` repeated)."""
    ids = list(biz_ids)
    st.session_state[COMPARE_PREFILL] = ids
    page = st.session_state.get(_ROUTES_KEY, {}).get(COMPARE)
    if page is None:
        # Rendered outside the dashboard (a test app) or for a role without the page: leave
        # the request and the link in place; there is no compare page to switch to.
        st.query_params["compare"] = ids
        return
    st.switch_page(page, query_params={"compare": ids})
