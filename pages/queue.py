"""Queue page: filter, sort and page the stored cases (all in SQL), open one, or look up /
fetch a biz_id that is not stored yet. The "linked" column counts the other cases with the same
ID number (and says when one of them is under another name)."""

from __future__ import annotations

import streamlit as st

import pages
from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.api import vocab
from faceid.review.decisions import STATES
from faceid.review.queue import BAND_OPTIONS, LIVENESS_OPTIONS, SORTS, UNASSIGNED, QueueFilter
from faceid.review.service import ReviewService
from faceid.store.summary import RISK_FLAGS
from pages import _widgets as w

TABLE_KEY = "queue_table"
PAGE_KEY = "queue_page"
PAGE_SIZES = (25, 50, 100)
ANYONE = "__anyone__"
ME = "__me__"
PROCEDURES = tuple(vocab.PROCEDURE_MEANING)
STATUSES = tuple(vocab.STATUS_MEANING)


def _filters(actor: Actor) -> tuple[QueueFilter, str, int]:
    with st.expander("Filters and sorting", expanded=True):
        c = st.columns(4)
        statuses = c[0].multiselect("Status", STATUSES, key="q_status")
        procedures = c[1].multiselect("Procedure", PROCEDURES, key="q_procedure")
        liveness = c[2].multiselect("Liveness", list(LIVENESS_OPTIONS),
                                    format_func=LIVENESS_OPTIONS.__getitem__, key="q_liveness")
        bands = c[3].multiselect("Face compare band", list(BAND_OPTIONS),
                                 format_func=BAND_OPTIONS.__getitem__, key="q_band")
        c = st.columns(4)
        flags = c[0].multiselect("Risk flags (any of)", list(RISK_FLAGS),
                                 format_func=RISK_FLAGS.__getitem__, key="q_flags")
        states = c[1].multiselect("Decision state", list(STATES), default=["pending",
                                                                           "escalated"],
                                  key="q_state")
        assignee = c[2].selectbox(
            "Assignee", [ANYONE, UNASSIGNED, ME],
            format_func={ANYONE: "Anyone", UNASSIGNED: "Unclaimed",
                         ME: "Claimed by me"}.__getitem__, key="q_assignee")
        min_age = c[3].number_input("Older than (hours)", min_value=0, max_value=24 * 365,
                                    value=0, step=1, key="q_min_age")
        c = st.columns([3, 2, 1])
        search = c[0].text_input("Search biz_id, biz_no or name", key="q_search",
                                 max_chars=128)
        sort = c[1].selectbox("Sort", list(SORTS), format_func=SORTS.__getitem__,
                              key="q_sort")
        size = c[2].selectbox("Rows per page", PAGE_SIZES, key="q_size")
        linked = st.checkbox("Only cases linked to others", key="q_linked",
                             help="Cases whose ID number (matched by keyed hash) appears in at "
                                  "least one other case.")
    who = {ANYONE: None, ME: actor.username}.get(assignee, assignee)
    f = QueueFilter(
        statuses=tuple(statuses), procedure_types=tuple(procedures), liveness=tuple(liveness),
        bands=tuple(bands), risk_flags=tuple(flags), decision_states=tuple(states),
        assignee=who, search=search, min_age_hours=float(min_age) if min_age else None,
        linked_only=bool(linked),
    )
    return f, sort, int(size)


def render(service: ReviewService, actor: Actor) -> None:
    # Leaving a case for the queue: the next opening of any case is a new audited view.
    st.session_state.pop(pages.VIEWED_KEY, None)
    st.title("Review queue")
    w.lookup_box(service, actor, "queue")
    w.fetch_queue_panel(service, actor)

    f, sort, size = _filters(actor)
    page = int(st.session_state.get(PAGE_KEY, 1) or 1)
    result = service.queue(f, sort, page, size, actor=actor)
    if result.page != page:
        # Filters shrank the result: keep the pager inside the new page range.
        st.session_state[PAGE_KEY] = result.page

    top = st.columns([3, 1], vertical_alignment="center")
    top[0].caption(f"{result.total} case(s) match · page {result.page} of {result.pages} · "
                   "names are masked in the list · select a row to open the case")
    nxt = top[1].button("Next case for me", key="queue_next", width="stretch",
                        disabled=not actor.can(Permission.CLAIM))
    if nxt:
        biz_id = service.next_case(actor)
        if biz_id is None:
            st.info("No unclaimed case is waiting for you.")
        else:
            pages.open_case(biz_id)

    if result.total == 0:
        st.info("No case matches these filters.")
        return
    event = w.table(
        result.rows,
        key=TABLE_KEY,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "score": st.column_config.NumberColumn("score", format="%.3f",
                                                   help="result_faceid confidence"),
            "risks": st.column_config.NumberColumn("risks", help="number of risk flags"),
            "biz_id": st.column_config.TextColumn("biz_id", width="medium"),
            "face compare": st.column_config.TextColumn(
                "face compare", help="Strictest FaceID threshold result_faceid reaches "
                "(1e-6 = lowest false-accept risk)"),
            "linked": st.column_config.TextColumn(
                "linked", width=120,
                help="Other cases with the same ID number; 'other name' when any of them "
                "carries a different name (open the case to see them)"),
        },
    )
    rows = list(event.selection.rows) if event is not None else []
    if rows and 0 <= rows[0] < len(result.biz_ids):
        pages.open_case(result.biz_ids[rows[0]])
    if result.pages > 1:
        st.pagination(result.pages, key=PAGE_KEY)
