"""Small render helpers shared by the pages (UI only: nothing here touches the database).

Rule for every page: a string that came from FaceID, from a document or from a person (OCR,
biz_no, biz_extra_data, notes, usernames, error texts) is shown only with ``st.text``,
``st.code``, ``st.json`` or inside ``st.dataframe`` cells, never interpolated into Markdown
(st.markdown/st.write/st.caption/st.title/alerts render links and images). The one exception
is ``say``, which backslash-escapes every Markdown character first.
"""

from __future__ import annotations

import io
import re
import string
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any

import streamlit as st
from PIL import Image

import pages
from faceid.access.actors import Actor
from faceid.access.permissions import Permission, PermissionDenied
from faceid.core import timeutil

_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")


def md_escape(text: str) -> str:
    """Backslash-escape every ASCII punctuation character (CommonMark allows it for all of
    them), so links, images, emphasis, ``:directives:`` and ``$math$`` cannot form."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def say(kind: str, text: str) -> None:
    """An alert box (success/info/warning/error) whose text is Markdown-escaped."""
    getattr(st, kind)(md_escape(text))


def flash(key: str, kind: str, text: str) -> None:
    """Keep a message for the next run (callbacks run before the page renders)."""
    st.session_state[key] = (kind, text)


def show_flash(key: str) -> None:
    msg = st.session_state.pop(key, None)
    if msg:
        say(*msg)


def guarded(render: Callable[[Any, Actor], None], service: Any, actor: Actor) -> None:
    """Run a page; a role refusal from the service layer becomes a plain error on the page.

    Menus already hide what a role may not use; this is for the service's own check (a stale
    menu, a role changed mid-session): the refusal text names only role and operation.
    """
    try:
        render(service, actor)
    except PermissionDenied as exc:
        say("error", str(exc))


def table(df: Any, **kwargs: Any) -> Any:
    """A read-only grid of a service's DataFrame (or a list of row dicts): cells are text, never
    HTML or Markdown."""
    kwargs.setdefault("hide_index", True)
    kwargs.setdefault("width", "stretch")
    return st.dataframe(df, **kwargs)


def kv_table(rows: Iterable[tuple[str, Any]], **kwargs: Any) -> None:
    """A two-column field/value table; values are shown as text (cells never render HTML)."""
    data = [{"field": k, "value": "—" if v is None or v == "" else str(v)} for k, v in rows]
    # Columns spelled out: an empty table keeps its header.
    table(data or {"field": [], "value": []}, **kwargs)


def highlight_rows(df: Any, predicate: Callable[[Any], bool], colour: str = "#fde2e2") -> Any:
    """A Styler of the service's DataFrame shading the rows for which ``predicate`` is true
    (low quality, over threshold). Pages never build DataFrames themselves."""
    def shade(row: Any) -> list[str]:
        style = f"background-color: {colour}" if predicate(row) else ""
        return [style] * len(row)

    return df.style.apply(shade, axis=1)


def transform_image(data: bytes, rotate: int = 0, zoom: float = 1.0) -> bytes:
    """Rotate by a multiple of 90 degrees (counter-clockwise) and scale; returns JPEG bytes."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                 270: Image.Transpose.ROTATE_270}
        if rotate % 360 in turns:
            img = img.transpose(turns[rotate % 360])
        if zoom != 1.0:
            w, h = img.size
            img = img.resize((max(1, int(w * zoom)), max(1, int(h * zoom))),
                             Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=92)
        return out.getvalue()


# --------------------------------------------------------------------------- lookup / fetch


def lookup_box(service: Any, actor: Actor, prefix: str) -> None:
    """A biz_id box: stored -> open the case; not stored -> reads left + a Fetch button."""
    state_key = f"{prefix}_lookup"
    with st.form(f"{prefix}_lookup_form", border=False, enter_to_submit=True):
        cols = st.columns([4, 1], vertical_alignment="bottom")
        biz_id = cols[0].text_input("Open or fetch a biz_id", key=f"{prefix}_biz_id",
                                    placeholder="e.g. 1462259748,52b13fb5-…", max_chars=256)
        submitted = cols[1].form_submit_button("Look up", width="stretch")
    if submitted:
        st.session_state.pop(state_key, None)
        try:
            view = service.lookup(biz_id, actor)
        except Exception as exc:  # ReviewError: our own plain text
            say("error", str(exc) if _is_review_error(exc) else "The lookup failed.")
            return
        if view.stored:
            pages.open_case(view.biz_id)
        st.session_state[state_key] = view
    view = st.session_state.get(state_key)
    if view is None or view.stored:
        return
    with st.container(border=True):
        st.markdown("**Not in the store yet**")
        st.text(view.biz_id)
        if view.can_fetch and view.reads_left is not None:
            until = f"until {view.deadline}" if view.deadline else "(deadline unknown)"
            plural = "read" if view.reads_left == 1 else "reads"
            st.text(f"{view.reads_left} {plural} left {until}")
        st.text(view.message)
        if not view.can_fetch:
            st.warning("FaceID allows no further read of this result.")
            return
        if not actor.can(Permission.CLAIM):
            st.info("Your role cannot fetch from FaceID (it spends a read).")
            return
        label = ("Wait for that fetch and open the case (no read)"
                 if getattr(view, "fetching_elsewhere", False)
                 else "Fetch now (spends one read)")
        if st.button(label, key=f"{prefix}_fetch", type="primary"):
            with st.spinner("Asking FaceID…"):
                out = service.fetch(view.biz_id, actor)
            if out.stored:
                st.session_state.pop(state_key, None)
                flash(pages.CASE_FLASH, "success", out.message)
                pages.open_case(out.biz_id)
            if getattr(out, "pending", False):
                st.info("Another process is fetching this result right now; look it up again "
                        "in a moment (no read was spent by this click).")
            else:
                st.error("The fetch did not store a result.")
            st.text(out.message)


def fetch_queue_panel(service: Any, actor: Actor) -> None:
    """The durable fetch queue at a glance; opened by itself when something is waiting,
    running, stale or failed."""
    view = service.fetch_queue(actor)
    if view is None:
        return
    with st.expander(f"FaceID fetch queue: {view.summary}", expanded=False):
        if not view.rows:
            st.caption("Nothing queued, running or failed.")
            return
        st.caption("'stale': the process holding the job stopped renewing its lease (killed or "
                   "cut off); the next worker takes it over and the ledger decides whether a "
                   "read is left.")
        table(view.rows, key="fetch_queue_table")


def _is_review_error(exc: Exception) -> bool:
    from faceid.core.errors import FaceIDError

    return isinstance(exc, FaceIDError)


#: Date-range presets, in UTC days (the desk's dates are UTC everywhere): the questions ops
#: ask first ("why did yesterday's fail?") are one click, any other range is a date picker.
ALL_DATES, PICK_DATES = "All dates", "Pick dates"
RANGE_PRESETS: dict[str, tuple[int, int] | None] = {
    ALL_DATES: None,
    "Today": (0, 0),
    "Yesterday": (1, 1),
    "Last 7 days": (6, 0),
    "Last 30 days": (29, 0),
    PICK_DATES: None,
}


def date_range(label: str, key: str, *, help: str | None = None  # noqa: A002 - st's name
               ) -> tuple[date | None, date | None]:
    """(first, last) UTC day, inclusive; (None, None) for all dates."""
    choice = st.segmented_control(label, list(RANGE_PRESETS), default=ALL_DATES,
                                  key=f"{key}_preset", help=help)
    if choice == PICK_DATES:
        picked: Any = st.date_input("From – to (UTC)", value=(), key=key)
        picked = tuple(picked) if isinstance(picked, tuple | list) else (picked,)
        start = picked[0] if picked else None
        return start, (picked[1] if len(picked) > 1 else start)
    days = RANGE_PRESETS.get(choice or ALL_DATES)
    if days is None:
        return None, None
    today = timeutil.utcnow().date()
    return today - timedelta(days=days[0]), today - timedelta(days=days[1])
