"""Compare 2-4 cases side by side, and list the cases linked to one of them (same ID number or
same biz_no), flagging an ID number that appears under another name.

Deep link: ``?compare=<biz_id>&compare=<biz_id>`` (repeated; biz_ids contain commas). Every
value from FaceID is shown in table cells or with ``st.text``/``st.code``, never as Markdown.
"""

from __future__ import annotations

import streamlit as st

import pages
from faceid.actors import Actor
from faceid.errors import FaceIDError
from faceid.export import frame_csv
from faceid.insights import COMPARE_MAX, CompareView, InsightsService
from pages import _widgets as w

IDS_KEY = "compare_ids"
ONLY_DIFF_KEY = "compare_only_diff"
LINKED_OF_KEY = "compare_linked_of"


def _requested_ids() -> list[str]:
    if IDS_KEY not in st.session_state:
        # First visit: take the deep link's biz_ids into the box.
        st.session_state[IDS_KEY] = "\n".join(st.query_params.get_all("compare"))
    text = str(st.session_state.get(IDS_KEY) or "")
    return [line.strip() for line in text.splitlines() if line.strip()]


def render(service: InsightsService, actor: Actor) -> None:
    st.title("Compare cases")
    ids = _requested_ids()
    st.text_area(f"biz_ids to compare, one per line (2 to {COMPARE_MAX})", key=IDS_KEY,
                 height=120, max_chars=4 * 300,
                 help="One per line: a biz_id may itself contain a comma.")
    if len(ids) < 2:
        st.info("Enter at least two biz_ids.")
        return
    try:
        view = service.compare(ids)
    except FaceIDError as exc:  # our errors carry plain text, never the input
        w.say("warning", str(exc))
        return

    _frames(view)
    st.subheader("Side by side")
    only = st.toggle("Only rows that differ", key=ONLY_DIFF_KEY)
    table = view.only_differences() if only else view.table
    st.caption(f"{int(view.table['differs'].sum())} of {len(view.table)} rows differ "
               "(shaded). Names and ID numbers are masked; equal letters in 'same ID number "
               "group' mean the same ID number.")
    w.table(w.highlight_rows(table, lambda r: bool(r["differs"])), height=520)
    st.download_button("Comparison (CSV)", data=frame_csv(view.table),
                       file_name="comparison.csv", mime="text/csv", key="compare_dl",
                       on_click="ignore", icon=":material/download:")
    _linked(service, view)


def _frames(view: CompareView) -> None:
    cols = st.columns(len(view.biz_ids))
    for i, (col, label, biz_id) in enumerate(zip(cols, view.labels, view.biz_ids,
                                                strict=True)):
        with col:
            st.subheader(label)
            st.code(biz_id, language=None, wrap_lines=True)
            frame = view.frames.get(biz_id)
            if frame:
                st.image(frame, caption="Best frame", width="stretch")
            else:
                st.text("No face image stored.")
            if st.button("Open case", key=f"compare_open_{i}", width="stretch"):
                pages.open_case(biz_id)


def _linked(service: InsightsService, view: CompareView) -> None:
    st.subheader("Linked cases")
    st.caption("Other stored cases with the same ID number (matched by keyed hash) or the same "
               "biz_no.")
    choice = st.selectbox("Linked cases of", list(range(len(view.labels))), key=LINKED_OF_KEY,
                          format_func=lambda i: view.labels[i])
    try:
        linked = service.linked_cases(view.biz_ids[choice])
    except FaceIDError as exc:
        w.say("warning", str(exc))
        return
    if linked.other_name_count:
        st.error(f"This ID number appears under another name in {linked.other_name_count} "
                 "other case(s).")
    if linked.rows.empty:
        st.info("No other case shares this ID number or biz_no.")
        return
    if linked.truncated:
        st.caption("Showing the most recent linked cases only.")
    event = w.table(linked.rows, key="compare_linked_table", on_select="rerun",
                    selection_mode="single-row")
    rows = list(event.selection.rows) if event is not None else []
    if rows and 0 <= rows[0] < len(linked.biz_ids):
        pages.open_case(linked.biz_ids[rows[0]])
    st.download_button("Linked cases (CSV)", data=frame_csv(linked.rows),
                       file_name="linked-cases.csv", mime="text/csv", key="compare_linked_dl",
                       on_click="ignore", icon=":material/download:")
