"""Compare 2-4 cases side by side, and list the cases linked to one of them (same ID number or
same biz_no), flagging an ID number that appears under another name.

Three ways to choose the cases:

- **Pick cases**: a multiselect whose options are one page of stored cases, newest first, or the
  cases whose biz_id / biz_no contains what is typed in the search box (searched and paged by
  the service, never loaded whole); what is already picked always stays among the options;
- **All attempts of one person**: choose one case, get it and its most recent linked cases (same
  ID-number hash or same biz_no), four in all, with a note when the person has more;
- **Type biz_ids** (advanced): one per line.

Deep link: ``?compare=<biz_id>&compare=<biz_id>`` (repeated; biz_ids contain commas) opens the
picker with those cases picked; the case page's "Compare these attempts" does the same through
``pages.open_compare``. The URL follows what is compared, so it can be shared. Every value from
FaceID is shown in table cells or with ``st.text``/``st.code``, never as Markdown; option labels
of the pickers are plain text.
"""

from __future__ import annotations

import streamlit as st

import pages
from faceid.access.actors import Actor
from faceid.core.csvsafe import frame_csv
from faceid.core.errors import FaceIDError
from faceid.reports.compare import CaseOptions, CompareView
from faceid.reports.insights import InsightsService
from faceid.reports.queries import COMPARE_MIN
from faceid.review.linking import COMPARE_MAX
from pages import _widgets as w

IDS_KEY = "compare_ids"
ONLY_DIFF_KEY = "compare_only_diff"
LINKED_OF_KEY = "compare_linked_of"
MODE_KEY = "compare_mode"
PICK_KEY = "compare_pick"
PERSON_KEY = "compare_person"
SEARCH_KEY = "compare_search"
OPTIONS_PAGE_KEY = "compare_options_page"
#: The cases last compared (plain session state, not a widget): carried from one way of
#: choosing to another, since a widget's state is dropped while it is not shown.
CURRENT_KEY = "_compare_current"
NOTE_KEY = "_compare_note"
OPTIONS_PAGE_SIZE = 50
MODES = {"pick": "Pick cases", "person": "All attempts of one person",
         "text": "Type biz_ids (advanced)"}


def _clean(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(b.strip() for b in ids if b and b.strip()))


def _start() -> None:
    """Apply a request from another page, or on a first visit the deep link, to the picker."""
    ss = st.session_state
    requested = ss.pop(pages.COMPARE_PREFILL, None)
    if requested is None and not any(k in ss for k in (MODE_KEY, PICK_KEY, IDS_KEY)):
        requested = st.query_params.get_all("compare") or None
    if not requested:
        return
    ids = _clean(list(requested))
    ss[MODE_KEY] = "pick"
    ss[PICK_KEY] = ids[:COMPARE_MAX]
    ss[CURRENT_KEY] = ids[:COMPARE_MAX]
    ss.pop(IDS_KEY, None)
    ss.pop(NOTE_KEY, None)
    if len(ids) > COMPARE_MAX:
        ss[NOTE_KEY] = (f"The link names {len(ids)} cases: the first {COMPARE_MAX} are "
                        "picked (compare takes at most four).")


def render(service: InsightsService, actor: Actor) -> None:
    st.title("Compare cases")
    _start()
    note = st.session_state.pop(NOTE_KEY, None)
    if note:
        st.info(note)
    mode = st.radio("Choose the cases", list(MODES), format_func=MODES.__getitem__,
                    key=MODE_KEY, horizontal=True)
    if mode == "text":
        ids = _typed()
    elif mode == "person":
        ids = _person(service)
    else:
        ids = _picked(service)
    if ids is None:
        return
    st.session_state[CURRENT_KEY] = ids
    if st.query_params.get_all("compare") != ids:
        # The URL follows the comparison, so it can be bookmarked or sent to a colleague.
        if ids:
            st.query_params["compare"] = ids
        else:
            del st.query_params["compare"]
    if len(ids) < COMPARE_MIN:
        st.info(f"Pick at least {COMPARE_MIN} cases (at most {COMPARE_MAX}).")
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


# --------------------------------------------------------------------------- choosing


def _options(service: InsightsService, keep: list[str], label: str) -> CaseOptions:
    """The search box and one page of matching cases (``keep`` always among them)."""
    search = st.text_input(label, key=SEARCH_KEY, max_chars=256,
                           placeholder="e.g. 1758 (leave empty for the newest cases)")
    page = int(st.session_state.get(OPTIONS_PAGE_KEY, 1) or 1)
    opts = service.case_options(search, page, OPTIONS_PAGE_SIZE, keep=keep)
    if opts.page != page:
        # A narrower search has fewer pages: keep the pager inside them.
        st.session_state[OPTIONS_PAGE_KEY] = opts.page
    return opts


def _pager(opts: CaseOptions, searched: bool) -> None:
    what = "match the search" if searched else "stored"
    st.caption(f"{opts.total} case(s) {what} · newest first · list page {opts.page} of "
               f"{opts.pages} ({opts.page_size} a page; typing in the picker filters this page "
               "only, the search box searches them all)")
    if opts.pages > 1:
        st.pagination(opts.pages, key=OPTIONS_PAGE_KEY)


def _picked(service: InsightsService) -> list[str]:
    ss = st.session_state
    if PICK_KEY not in ss and ss.get(CURRENT_KEY):
        ss[PICK_KEY] = list(ss[CURRENT_KEY])[:COMPARE_MAX]
    picked = list(ss.get(PICK_KEY) or [])
    opts = _options(service, picked, "Find cases: part of a biz_id or biz_no (any case)")
    chosen = st.multiselect(
        f"Cases to compare ({COMPARE_MIN} to {COMPARE_MAX})", opts.biz_ids,
        format_func=lambda b: opts.labels.get(b, b), key=PICK_KEY,
        max_selections=COMPARE_MAX, placeholder="Choose cases")
    _pager(opts, bool(ss.get(SEARCH_KEY)))
    return list(chosen)


def _person(service: InsightsService) -> list[str] | None:
    current = st.session_state.get(PERSON_KEY)
    opts = _options(service, [current] if current else [],
                    "Find one attempt: part of a biz_id or biz_no (any case)")
    biz_id = st.selectbox("One attempt of the person", opts.biz_ids, index=None,
                          format_func=lambda b: opts.labels.get(b, b), key=PERSON_KEY,
                          placeholder="Choose a case")
    _pager(opts, bool(st.session_state.get(SEARCH_KEY)))
    if biz_id is None:
        st.info("Choose one case: its other attempts (same ID number or same biz_no) are "
                "compared with it.")
        return None
    try:
        linked = service.linked_cases(biz_id)
    except FaceIDError as exc:
        w.say("warning", str(exc))
        return None
    if not linked.count:
        st.info("No other case shares this case's ID number or biz_no: nothing to compare.")
        return None
    ids = linked.compare_ids()
    at_least = "at least " if linked.truncated else ""
    if linked.more_than():
        st.info(f"This person has {at_least}{linked.count + 1} attempts: comparing the chosen "
                f"case and the {COMPARE_MAX - 1} most recent others. All of them are listed "
                "under Linked cases below.")
    else:
        st.caption(f"All {linked.count + 1} attempts: the chosen case first, then newest first.")
    return ids


def _typed() -> list[str]:
    ss = st.session_state
    if IDS_KEY not in ss:
        ss[IDS_KEY] = "\n".join(ss.get(CURRENT_KEY) or [])
    st.text_area(f"biz_ids to compare, one per line ({COMPARE_MIN} to {COMPARE_MAX})",
                 key=IDS_KEY, height=120, max_chars=4 * 300,
                 help="One per line: a biz_id may itself contain a comma.")
    return _clean(str(ss.get(IDS_KEY) or "").splitlines())


# --------------------------------------------------------------------------- results


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
