"""Reports: pass rate over time, failure reasons, decisions, time to decision, backlog, and
the governed CSV export.

Every chart has a download of the numbers behind it (formula-safe CSV). The export button runs
``faceid.reports.export`` only when clicked (a deferred download), so each click is one audited
export and merely opening the page records nothing.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from faceid.access.actors import Actor
from faceid.access.permissions import Permission
from faceid.core.timeutil import utcnow
from faceid.reports.export import DECISION_STATES, LIVENESS_VALUES, ExportFilter
from faceid.reports.insights import InsightsService
from faceid.store.export_lines import EXPORT_COLUMNS
from pages import _widgets as w
from pages.audit import ANY, download, filters


def _hours(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:.1f} h"


def render(service: InsightsService, actor: Actor) -> None:
    st.title("Reports")
    if not actor.can(Permission.EXPORT):
        # The menu leaves this page out for such roles; the service would refuse anyway.
        st.info("Reports and exports are for roles allowed to export (senior, auditor, admin).")
        return
    f = filters("reports", with_reason=False)

    st.subheader("Pass rate by procedure")
    st.caption("Share of cases that ended well (no failure reason), per UTC day.")
    rate = service.pass_rate(f)
    if rate.empty:
        st.info("No verification matches these filters.")
    else:
        st.line_chart(rate, x="day", y="pass_rate", color="procedure_type")
        download("Numbers (CSV)", rate, "pass-rate.csv", "reports_dl_rate")

    left, right = st.columns(2)
    with left:
        st.subheader("Failure reasons")
        summary = service.failure_summary(f)
        st.bar_chart(summary.by_reason, x="reason", y="cases", horizontal=True, sort="-cases")
        download("Numbers (CSV)", summary.by_reason, "failure-reasons.csv", "reports_dl_reasons")
    with right:
        st.subheader("Decisions by reviewer")
        st.caption("Every decision made in the date range (decision time), by outcome.")
        decisions = service.decisions_by_reviewer(f.date_from, f.date_to)
        if decisions.empty:
            st.info("No decision in this range.")
        else:
            st.bar_chart(decisions, x="reviewer", y="decisions", color="outcome")
            download("Numbers (CSV)", decisions, "decisions.csv", "reports_dl_decisions")

    left, right = st.columns(2)
    with left:
        st.subheader("Time to first decision")
        latency = service.decision_latency(f)
        c = st.columns(3)
        c[0].metric("Decided cases", latency.decided)
        c[1].metric("Median", _hours(latency.p50_s))
        c[2].metric("95th percentile", _hours(latency.p95_s))
        download("Numbers (CSV)", latency.frame(), "time-to-decision.csv", "reports_dl_latency")
    with right:
        st.subheader("Backlog by age")
        st.caption("Cases waiting for a person (pending, escalated), by time since stored.")
        backlog = service.backlog()
        st.bar_chart(backlog, x="age", y="cases", color="state", sort=False)
        download("Numbers (CSV)", backlog, "backlog.csv", "reports_dl_backlog")

    _export(service, actor)


def _export(service: InsightsService, actor: Actor) -> None:
    st.divider()
    st.subheader("Export verifications (CSV)")
    st.caption("One row per verification, UTF-8 for Excel, formula-safe. Names and ID numbers "
               "are masked. Every export is recorded in the audit trail (filters and row "
               "count).")
    start, end = w.date_range("Cases of (UTC days)", "export_dates",
                              help="By verify_time, or when the desk stored the result if "
                              "FaceID gave none (as on Failed verifications).")
    c = st.columns(3)
    status = c[0].text_input("FaceID status", key="export_status", max_chars=64,
                             placeholder="any, e.g. OK")
    liveness = c[1].selectbox("Liveness", [ANY, *LIVENESS_VALUES], key="export_liveness",
                              format_func=lambda v: "any" if v == ANY else v)
    state = c[2].selectbox("Review state", [ANY, *DECISION_STATES], key="export_state",
                           format_func=lambda v: "any" if v == ANY else v)
    reviewer = st.text_input("Latest decision by (username)", key="export_reviewer",
                             max_chars=128, placeholder="anyone")
    unmasked = False
    if service.may_export_unmasked(actor):
        unmasked = st.checkbox("Unmasked: names and ID numbers in clear (recorded as such)",
                               key="export_unmasked")
    export_filter = ExportFilter(date_from=start, date_to=end, status=status.strip() or None,
                                 liveness=liveness or None, decision_state=state or None,
                                 reviewer=reviewer.strip() or None)
    rows = service.export_count(export_filter, actor)
    st.caption(f"{rows:,} verification(s) match these filters"
               + (" — nothing to export." if rows == 0 else "."))
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    # Deferred: the callable runs (and is audited) only when the button is clicked.
    st.download_button(
        "Export CSV" + (" (UNMASKED)" if unmasked else ""),
        data=partial(service.export_bytes, export_filter, actor, unmasked=unmasked),
        file_name=f"verifications-{stamp}{'-UNMASKED' if unmasked else ''}.csv",
        mime="text/csv", key="export_csv", on_click="ignore", type="primary",
        icon=":material/download:", disabled=rows == 0)
    with st.expander("Columns in the file"):
        w.table([{"column": name, "meaning": meaning} for name, meaning in EXPORT_COLUMNS])
