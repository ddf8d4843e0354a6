"""Failed-verification audit: every verification that did not end well, why, and when.

Renders what ``InsightsService`` returns (all aggregation is SQL). Values that came from FaceID
(statuses, error codes, biz_ids) appear only in table cells and charts, never in Markdown.
Select a row of the drill-down list to open that case.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import pages
from faceid.access.actors import Actor
from faceid.api.vocab import PROCEDURE_MEANING
from faceid.core.csvsafe import frame_csv
from faceid.reports.insights import InsightsService
from faceid.reports.queries import FAILURE_REASONS, NO_PROCEDURE, InsightFilter
from faceid.review.decisions import STATES
from pages import _widgets as w

PAGE_KEY = "audit_page"
TABLE_KEY = "audit_cases"
PAGE_SIZE = 25
ANY = ""


def filters(prefix: str, *, with_reason: bool = True) -> InsightFilter:
    """The shared filter bar (the reports page reuses it without the reason)."""
    start, end = w.date_range("Cases of (UTC days)", f"{prefix}_dates",
                              help="By verify_time, or when the desk stored the result if "
                              "FaceID gave none.")
    cols = st.columns(3 if with_reason else 2)
    procedures = [ANY, *PROCEDURE_MEANING, NO_PROCEDURE]
    procedure = cols[0].selectbox(
        "Procedure", procedures, key=f"{prefix}_procedure",
        format_func=lambda p: "any" if p == ANY else
        ("no liveness" if p == NO_PROCEDURE else p))
    states = [ANY, *STATES]
    state = cols[1].selectbox("Review state", states, key=f"{prefix}_state",
                              format_func=lambda s: "any" if s == ANY else s)
    reason = ANY
    if with_reason:
        reason = cols[2].selectbox("Failure reason", [ANY, *FAILURE_REASONS],
                                   key=f"{prefix}_reason",
                                   format_func=lambda r: "any" if r == ANY
                                   else FAILURE_REASONS[r])
    return InsightFilter(date_from=start, date_to=end, procedure_type=procedure or None,
                         decision_state=state or None, reason=reason or None)


def download(label: str, frame: Any, file_name: str, key: str) -> None:
    """The numbers behind a chart, as formula-safe CSV (faceid.core.csvsafe.frame_csv)."""
    st.download_button(label, data=frame_csv(frame), file_name=file_name, mime="text/csv",
                       key=key, on_click="ignore", icon=":material/download:")


def render(service: InsightsService, actor: Actor) -> None:
    st.title("Failed verifications")
    st.caption("Every verification that did not end well: status not OK, liveness FAIL, a "
               "face-compare error or a score below the loosest threshold, a fake-face signal, "
               "face replacement, an ID number used in attacks, several faces. One case can "
               "have several reasons.")
    f = filters("audit")
    summary = service.failure_summary(f)

    m = st.columns(3)
    m[0].metric("Cases in range", summary.total)
    m[1].metric("Did not end well", summary.failed)
    m[2].metric("Share", f"{summary.failed_share:.1%}")
    if summary.total == 0:
        st.info("No verification matches these filters.")
        return

    left, right = st.columns(2)
    with left:
        st.subheader("By reason")
        st.bar_chart(summary.by_reason, x="reason", y="cases", horizontal=True,
                     sort="-cases")
        download("Numbers (CSV)", summary.by_reason, "failures-by-reason.csv", "audit_dl_reason")
    with right:
        st.subheader("By day")
        by_day = service.failures_by_day(f)
        st.line_chart(by_day, x="day", y=["cases", "failed"])
        download("Numbers (CSV)", by_day, "failures-by-day.csv", "audit_dl_day")

    st.subheader("What exactly")
    st.caption("The status / fail_reason, verify error and fake-face signals behind the "
               "counts, as FaceID sent them.")
    details = service.failure_details(f)
    w.table(details)
    download("Numbers (CSV)", details, "failure-details.csv", "audit_dl_details")

    _drill_down(service, f)


def _drill_down(service: InsightsService, f: InsightFilter) -> None:
    st.subheader("Cases")
    page = int(st.session_state.get(PAGE_KEY, 1) or 1)
    result = service.failed_cases(f, page=page, page_size=PAGE_SIZE)
    if result.page != page:
        # Filters shrank the list: the service clamped the page; keep the widget in step.
        st.session_state[PAGE_KEY] = result.page
    st.caption(f"{result.total} case(s) · page {result.page} of {result.pages} · newest first "
               "· select a row to open the case")
    if result.total == 0:
        st.info("No failed case matches these filters.")
        return
    event = w.table(result.rows, key=TABLE_KEY, on_select="rerun",
                    selection_mode="single-row",
                    column_config={"biz_id": st.column_config.TextColumn("biz_id",
                                                                         width="medium")})
    rows = list(event.selection.rows) if event is not None else []
    if rows and 0 <= rows[0] < len(result.biz_ids):
        pages.open_case(result.biz_ids[rows[0]])
    if result.pages > 1:
        st.pagination(result.pages, key=PAGE_KEY)
