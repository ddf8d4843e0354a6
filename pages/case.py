"""Case page (deep link ``?biz_id=…``): everything FaceID returned for one verification, the
linked cases (same ID number or biz_no, with an alert when the ID number appears under another
name), the review panel (claim, decide, notes) and the case timeline.

Actions run in button callbacks whose ``args`` carry the version this page rendered: the
callback runs before the next render, so a decision is checked against what the reviewer
actually saw, and a case changed meanwhile is refused as stale.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import pages
from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.core.errors import FaceIDError
from faceid.review.case_view import CaseView
from faceid.review.decisions import NOTE_MAX, OUTCOMES, REASONS
from faceid.review.linking import COMPARE_MAX, LINKED_MAX, LinkedCases
from faceid.review.service import ReviewService
from pages import _widgets as w

FLASH = pages.CASE_FLASH
DECIDED = "case_just_decided"
REVEAL_PREFIX = "case_reveal:"
COUNTERS_NOT_PROBLEMS = {"UPLOAD_TIMES", "FACE_UPLOAD_TIMES"}


def render(service: ReviewService, actor: Actor) -> None:
    biz_id = str(st.query_params.get("biz_id", "") or "").strip()
    if not biz_id:
        st.title("Case")
        st.info("Open a case from the queue, or look one up here.")
        w.lookup_box(service, actor, "case")
        _next_case_button(service, actor)
        return
    first_view = st.session_state.get(pages.VIEWED_KEY) != biz_id
    reveal = bool(st.session_state.get(REVEAL_PREFIX + biz_id))
    view = service.open_case(biz_id, actor, record_view=first_view, reveal=reveal)
    if view is None:
        st.title("Case not found")
        st.warning("No stored case has this biz_id:")
        st.code(biz_id, language=None)
        st.session_state.setdefault("case_biz_id", biz_id)
        w.lookup_box(service, actor, "case")
        return
    st.session_state[pages.VIEWED_KEY] = biz_id

    _header(service, actor, view)
    w.show_flash(FLASH)
    if view.linked is not None and view.linked.count:
        _linked_table(view.biz_id, view.linked)
    main, side = st.columns([3, 1.25], gap="large")
    with side:
        _decision_panel(service, actor, view)
        _notes_panel(service, actor, view)
    with main:
        tabs = st.tabs(["Images", "ID card", "Liveness", "Face compare", "Timeline",
                        "Raw response"])
        with tabs[0]:
            _images(view)
        with tabs[1]:
            _idcard(view)
        with tabs[2]:
            _liveness(view)
        with tabs[3]:
            _compare(view)
        with tabs[4]:
            _history(view)
        with tabs[5]:
            _raw(view)


# --------------------------------------------------------------------------- header


def _header(service: ReviewService, actor: Actor, view: CaseView) -> None:
    top = st.columns([5, 1], vertical_alignment="center")
    top[0].title("Case")
    if top[1].button("← Queue", key="case_back", width="stretch"):
        pages.open_queue()
    st.code(view.biz_id, language=None)
    left, right = st.columns([3, 2])
    with left:
        rows: list[tuple[str, Any]] = [
            ("biz_no", view.biz_no),
            ("request_id", view.request_id),
            ("status", view.status),
            ("status means", view.status_meaning),
        ]
        if view.fail_reason:
            rows += [("fail_reason", view.fail_reason),
                     ("fail_reason means", view.fail_reason_meaning)]
        rows += [("verified at", view.verified_at), ("stored at", view.stored_at),
                 ("source", view.source),
                 ("time used (ms)", view.time_used)]
        w.kv_table(rows)
    with right:
        if view.awaiting_second_review:
            # Usernames are data (st.text), never Markdown.
            st.warning("Waiting for a second review by a senior reviewer who did not make "
                       "this decision (four eyes). Decision under review by:")
            st.text(view.decided_by or "—")
        w.kv_table([("review state", view.decision_state),
                    ("state means", view.state_meaning),
                    ("claimed by", view.assignee or "nobody"),
                    ("claimed at", view.claimed_at),
                    ("last decided by", view.decided_by),
                    ("last decided at", view.decided_at),
                    ("case version", view.version)])
        if view.risk_flags:
            w.say("error", "Risk flags: " + "; ".join(label for _, label in view.risk_flags))
        else:
            st.success("No risk flags.")
        if view.linked is not None:
            _linked_summary(view.linked)
        if view.parse_flags:
            with st.expander(f"{len(view.parse_flags)} value(s) did not fit the FaceID page"):
                for flag in view.parse_flags:
                    st.text(flag)
        _purge_notes(view)
        _reveal_controls(service, actor, view)
    if not view.has_results:
        st.info("FaceID returns no ID card, liveness or compare results for this status.")


def _linked_summary(linked: LinkedCases) -> None:
    """Next to the risk flags: how many cases are linked, and the alias alert."""
    if not linked.count:
        st.caption("No other case shares this ID number or biz_no.")
        return
    # Only numbers and fixed words go into these Markdown alerts; names go through st.text.
    at_least = "at least " if linked.truncated else ""
    st.info(f"Linked: {at_least}{linked.count} other case(s) — {linked.same_id_count} with the "
            f"same ID number, {linked.same_biz_no_count} with the same biz_no (listed below).",
            icon=":material/link:")
    if not linked.other_name_count:
        return
    st.warning(f"**This ID number appears under ANOTHER name** in {at_least}"
               f"{linked.other_name_count} other case(s).", icon=":material/warning:")
    if linked.names_revealed:
        st.text("Other name(s): " + ", ".join(linked.other_names))
    else:
        st.text("Other name(s), masked: " + ", ".join(linked.other_names))
        st.caption("Reveal this case's personal data (audited) to see them in clear.")


def _linked_table(biz_id: str, linked: LinkedCases) -> None:
    """The linked cases (select one to open it) and the way into Compare."""
    st.subheader("Linked cases")
    st.caption("Other stored cases with this case's ID number (matched by keyed hash) or "
               "biz_no, newest first; a different name under the same ID number is shaded. "
               "Select a row to open that case."
               + (f" Only the {LINKED_MAX} most recent are listed." if linked.truncated else ""))
    # One key per case: the selection made here must not carry over to the case it opens
    # (that page has the same table, and would open its own first row at once).
    event = w.table(w.highlight_rows(linked.rows, lambda r: bool(r["different name"])),
                    key=f"case_linked:{biz_id}", on_select="rerun",
                    selection_mode="single-row",
                    height=min(400, 38 + 35 * len(linked.rows)),
                    column_config={"different name": st.column_config.CheckboxColumn(
                        "other name", help="Same ID number, different name")})
    rows = list(event.selection.rows) if event is not None else []
    if rows and 0 <= rows[0] < len(linked.biz_ids):
        pages.open_case(linked.biz_ids[rows[0]])
    ids = linked.compare_ids()
    if st.button("Compare these attempts", key="case_compare_linked",
                 icon=":material/compare:",
                 help=f"Opens Compare with this case and the {len(ids) - 1} most recent "
                      "linked case(s) side by side."):
        pages.open_compare(ids)
    if linked.more_than(COMPARE_MAX):
        st.caption(f"Compare takes {COMPARE_MAX} cases: this one and the {COMPARE_MAX - 1} most "
                   "recent linked ones.")


def _purge_notes(view: CaseView) -> None:
    # What the retention policy removed, and when: a purged case is not a broken case.
    if view.images_purged_at:
        st.info(f"Images purged on {view.images_purged_at} by retention policy.")
    if view.pii_purged_at:
        st.info(f"Personal data (name, ID number, address, birthday) purged on "
                f"{view.pii_purged_at} by retention policy.")


def _reveal_controls(service: ReviewService, actor: Actor, view: CaseView) -> None:
    if view.pii_revealed:
        w.say("warning", f"Personal data revealed until {view.reveal_until} (audited).")
        st.button("Mask again", key="case_mask", on_click=_mask, args=(view.biz_id,))
    elif view.can_reveal:
        st.button("Reveal personal data (audited)", key="case_reveal", on_click=_reveal,
                  args=(service, actor, view.biz_id))
    else:
        st.caption("Personal data is masked; your role cannot reveal it.")


# --------------------------------------------------------------------------- images


def _image(where: Any, img: Any) -> None:
    if img.data is not None:
        size = f" ({img.width}×{img.height})" if img.width else ""
        # Captions render Markdown, and an image kind FaceID invents becomes its label.
        where.image(img.data, caption=w.md_escape(img.label + size), width=320)
    else:
        where.warning(w.md_escape(f"{img.label}: {img.problem}"))


def _images(view: CaseView) -> None:
    purged = [i for i in view.images if i.state == "purged"]
    if purged:
        when = view.images_purged_at or "an earlier date"
        # Escaped: an image kind FaceID invents becomes its label.
        w.say("info", f"Images purged on {when} by retention policy "
                      f"({len(purged)} image(s): " + ", ".join(i.label for i in purged) + ").")
    shown = [i for i in view.images if i.state != "purged"]
    if not shown:
        if not purged:
            st.info("No images were returned for this case.")
        return
    by_kind = {i.kind: i for i in shown}
    # The liveness face beside the ID card portrait side: the comparison a reviewer makes.
    face = by_kind.get("best") or by_kind.get("face_front")
    pair = [i for i in (face, by_kind.get("idcard_front")) if i is not None]
    if pair:
        cols = st.columns(2)
        for col, img in zip(cols, pair, strict=False):
            _image(col, img)
    rest = [i for i in shown if i not in pair]
    if rest:
        cols = st.columns(3)
        for n, img in enumerate(rest):
            _image(cols[n % 3], img)
    usable = [i for i in shown if i.data is not None]
    if not usable:
        return
    with st.expander("Full size: zoom and rotate"):
        c = st.columns([2, 2, 2])
        kind = c[0].selectbox("Image", [i.kind for i in usable],
                              format_func=lambda k: by_kind[k].label, key="img_kind")
        rotate = c[1].radio("Rotate", [0, 90, 180, 270], horizontal=True,
                            format_func=lambda d: f"{d}°", key="img_rotate")
        zoom = c[2].slider("Zoom", min_value=0.5, max_value=4.0, value=1.5, step=0.25,
                           key="img_zoom")
        data = by_kind[kind].data
        assert data is not None
        st.image(w.transform_image(data, int(rotate), float(zoom)), width="content",
                 caption=w.md_escape(by_kind[kind].label))


# --------------------------------------------------------------------------- ID card


def _idcard(view: CaseView) -> None:
    if view.pii_purged_at:
        st.info(f"Personal data purged on {view.pii_purged_at} by retention policy: the "
                "values below read [purged].")
    if not view.ocr and view.confirmed.empty:
        st.info("No ID card information in this result.")
        return
    w.kv_table([("idcard_mode", view.idcard_mode),
                ("user chose", view.idcard_mode_user),
                ("uneditable fields", ", ".join(view.uneditable_fields) or "none"),
                ("portrait side uploads", view.uploads.get("front")),
                ("emblem side uploads", view.uploads.get("back"))])
    st.subheader("Confirmed values vs OCR")
    st.caption("Differences are shaded. 'uneditable' fields could not be changed by the user.")
    w.table(w.highlight_rows(view.confirmed, lambda r: bool(r["differs"])),
            column_config={"differs": st.column_config.CheckboxColumn("differs"),
                           "uneditable": st.column_config.CheckboxColumn("uneditable")})
    titles = {"front": "Portrait side (front)", "back": "Emblem side (back)"}
    for side in ("front", "back"):
        if side not in view.ocr and side not in view.legality:
            continue
        st.subheader(titles[side])
        if side in view.ocr:
            st.caption("OCR with lite 2.0 quality checks: low quality (< 0.8) or a logic "
                       "error is shaded.")
            df = view.ocr[side]
            w.table(w.highlight_rows(df, lambda r: r["check"] not in ("ok", "no check")),
                    column_config={"quality": st.column_config.NumberColumn(format="%.3f")})
        if side in view.legality:
            st.caption("Legality: how much the photo looks like each kind of document.")
            w.table(view.legality[side], column_config={
                "score": st.column_config.ProgressColumn("score", min_value=0.0,
                                                         max_value=1.0, format="%.3f")})


# --------------------------------------------------------------------------- liveness


def _liveness(view: CaseView) -> None:
    live = view.liveness
    if live is None:
        st.info("No liveness result in this response.")
        return
    rows: list[tuple[str, Any]] = [
        ("result", live.result), ("result means", live.result_meaning),
        ("procedure", live.procedure_type), ("procedure means", live.procedure_meaning)]
    if live.still_type:
        rows += [("still type", live.still_type), ("still type means", live.still_meaning)]
    w.kv_table(rows)
    if live.result == "FAIL":
        st.error("Liveness FAILED.")
    st.subheader("Detail counters")
    if live.counters.empty:
        st.caption("No detail counters were returned.")
    else:
        w.table(w.highlight_rows(
            live.counters,
            lambda r: bool(r["count"]) and r["counter"] not in COUNTERS_NOT_PROBLEMS,
            colour="#fff3cd"))
    st.subheader("Fake-face signals")
    if live.signals.empty:
        st.caption("No genuineness signals were returned.")
    else:
        w.table(w.highlight_rows(live.signals, lambda r: bool(r["over threshold"])),
                column_config={"over threshold":
                               st.column_config.CheckboxColumn("over threshold")})
    if live.signals_exceeded:
        w.say("error", "Over threshold: " + ", ".join(live.signals_exceeded))
    if live.face_replaced == 1:
        st.error("Face replacement detected (face_replaced = 1).")
    extra: list[tuple[str, Any]] = []
    if live.face_replaced is not None:
        extra.append(("face_replaced", live.face_replaced))
    if live.selfie_inconsistent is not None:
        extra += [("selfie_inconsistent", live.selfie_inconsistent),
                  ("means", live.selfie_inconsistent_meaning)]
    if live.selfie_metadata is not None:
        extra += [("selfie_metadata_inconsistent", live.selfie_metadata),
                  ("means", live.selfie_metadata_meaning)]
    if extra:
        w.kv_table(extra)


# --------------------------------------------------------------------------- face compare


def _compare(view: CaseView) -> None:
    if view.verify_error:
        st.error("Face compare returned an error:")
        st.text(f"{view.verify_error}: {view.verify_error_meaning}")
    if view.comparisons.empty:
        st.info("No face comparisons in this result.")
    else:
        st.caption("Higher confidence = lower risk. Each comparison against FaceID's four "
                   "thresholds; below 1e-3 is shaded.")
        w.table(w.highlight_rows(view.comparisons,
                                 lambda r: str(r["risk level"]).startswith("below")),
                column_config={k: st.column_config.NumberColumn(format="%.3f")
                               for k in ("confidence", "1e-3", "1e-4", "1e-5", "1e-6")})
    if view.id_exceptions:
        st.subheader("ID exceptions")
        w.table(view.id_exceptions)
        if any(e["exception"] == "id_attacked" and e["value"] == 1 for e in view.id_exceptions):
            st.warning("This ID number has been used in attacks before.")
    if view.multifaces_tag is not None:
        w.kv_table([("multifaces_tag", view.multifaces_tag)])


# --------------------------------------------------------------------------- history / raw


def _history(view: CaseView) -> None:
    st.subheader("Decisions")
    if view.decisions.empty:
        st.caption("No decision yet.")
    else:
        w.table(view.decisions)
    st.subheader("Timeline (UTC)")
    w.table(view.timeline)


def _raw(view: CaseView) -> None:
    st.caption("The stored response as received; images are replaced by sha256 references. "
               "Personal data is masked unless revealed.")
    if view.biz_extra_data:
        st.text("biz_extra_data:")
        st.code(view.biz_extra_data, language=None)
    if view.raw is None:
        st.info("No raw response is stored for this case.")
    else:
        st.json(view.raw, expanded=2)


# --------------------------------------------------------------------------- decision panel


def _decision_panel(service: ReviewService, actor: Actor, view: CaseView) -> None:
    st.subheader("Review")
    if st.session_state.get(DECIDED) == view.biz_id:
        _next_case_button(service, actor, primary=True)
    if view.claimed_by_me:
        st.success("You hold the claim on this case.")
    args = (service, actor, view.biz_id, view.version)
    if view.can_claim.allowed:
        st.button("Claim this case", key="case_claim", type="primary", width="stretch",
                  on_click=_claim, args=args)
    elif not view.claimed_by_me and view.can_claim.why_not:
        w.say("info", view.can_claim.why_not)
    if view.can_release.allowed:
        label = "Release my claim" if view.claimed_by_me else "Release this claim (senior)"
        st.button(label, key="case_release", width="stretch", on_click=_release, args=args)
    if not view.can_decide.allowed:
        return
    with st.form("case_decide", border=True):
        st.radio("Outcome", list(OUTCOMES), format_func=OUTCOMES.__getitem__,
                 key="decide_outcome")
        st.selectbox("Reason (required to reject or escalate)", ["", *REASONS],
                     format_func=lambda r: REASONS.get(r, "—"), key="decide_reason")
        st.text_area("Note (required to reject or escalate)", key="decide_note",
                     max_chars=NOTE_MAX, height=100)
        st.form_submit_button("Record decision", type="primary", width="stretch",
                              on_click=_decide, args=args)


def _notes_panel(service: ReviewService, actor: Actor, view: CaseView) -> None:
    st.subheader("Notes")
    if view.notes.empty:
        st.caption("No notes yet.")
    for when, who, text in view.notes.itertuples(index=False):
        # As text, whole: a grid in this narrow column would cut the note off, and st.text
        # never renders Markdown or HTML (notes are typed by people: hostile is possible).
        with st.container(border=True):
            st.text(f"{when} · {who}")
            st.text(text)
    if not actor.can(Permission.DECIDE):
        return  # read-only roles see the notes but add none (the service refuses too)
    with st.form("case_note", border=False):
        st.text_area("Add a note", key="note_text", max_chars=NOTE_MAX, height=80)
        st.form_submit_button("Add note", on_click=_add_note,
                              args=(service, actor, view.biz_id))


def _next_case_button(service: ReviewService, actor: Actor, *, primary: bool = False) -> None:
    if not actor.can(Permission.CLAIM):
        return
    if st.button("Next case", key="case_next", type="primary" if primary else "secondary",
                 width="stretch"):
        st.session_state.pop(DECIDED, None)
        nxt = service.next_case(actor)
        if nxt is None:
            st.info("No unclaimed case is waiting for you.")
        else:
            st.session_state.pop(pages.VIEWED_KEY, None)
            pages.open_case(nxt)


# --------------------------------------------------------------------------- callbacks
# They run before the next render; failures become a flash message (our own plain text).


def _run(action: Any, ok_kind: str = "success") -> Any:
    try:
        result = action()
    except FaceIDError as exc:
        w.flash(FLASH, "error", str(exc))
        return None
    if result is not None and getattr(result, "message", None):
        w.flash(FLASH, ok_kind, result.message)
    return result


def _claim(service: ReviewService, actor: Actor, biz_id: str, version: int) -> None:
    # Success needs no message: the panel itself then says "You hold the claim".
    try:
        service.claim(biz_id, actor, version)
    except FaceIDError as exc:
        w.flash(FLASH, "error", str(exc))


def _release(service: ReviewService, actor: Actor, biz_id: str, version: int) -> None:
    _run(lambda: service.release(biz_id, actor, version))


def _decide(service: ReviewService, actor: Actor, biz_id: str, version: int) -> None:
    ss = st.session_state
    result = _run(lambda: service.decide(biz_id, actor, ss.get("decide_outcome", "approve"),
                                         ss.get("decide_reason") or None,
                                         ss.get("decide_note") or None, version))
    if result is not None:
        ss[DECIDED] = biz_id
        ss["decide_note"] = ""
        ss["decide_reason"] = ""


def _add_note(service: ReviewService, actor: Actor, biz_id: str) -> None:
    text = st.session_state.get("note_text", "")
    try:
        service.add_note(biz_id, actor, text)
    except FaceIDError as exc:
        w.flash(FLASH, "error", str(exc))
        return
    st.session_state["note_text"] = ""
    w.flash(FLASH, "success", "Note added.")


def _reveal(service: ReviewService, actor: Actor, biz_id: str) -> None:
    try:
        service.reveal_pii(biz_id, actor)
    except FaceIDError as exc:
        w.flash(FLASH, "error", str(exc))
        return
    st.session_state[REVEAL_PREFIX + biz_id] = True


def _mask(biz_id: str) -> None:
    st.session_state.pop(REVEAL_PREFIX + biz_id, None)
