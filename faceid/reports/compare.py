"""Cases side by side (the compare page): ``CaseComparison``, the part of ``InsightsService``
that compares 2-4 cases attribute by attribute with their best frames, lists a case's linked
cases and pages the picker's options; and the rows of the comparison table. Names and ID
numbers are always masked here."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from faceid.access import pii
from faceid.access.permissions import Permission
from faceid.api import vocab
from faceid.api.model import GetResult
from faceid.api.parse import parse_document
from faceid.core.errors import DocumentError, InsightsError
from faceid.core.timeutil import fmt
from faceid.reports.queries import COMPARE_MIN, PAGE_SIZE_MAX, V
from faceid.review import linking
from faceid.review import search as search_rule  # `search` is case_options' parameter
from faceid.review.case_sections import frame
from faceid.review.linking import COMPARE_MAX, LinkedCases
from faceid.review.paging import page_count
from faceid.store.tables import Decision, RawResponse, StoredImage, Verification, case_time


@dataclass(frozen=True, slots=True)
class CompareView:
    #: section, field, one column per case label, differs.
    table: pd.DataFrame
    labels: list[str]  # "Case 1".."Case n", the table's case columns
    biz_ids: list[str]  # same order as labels
    #: biz_id -> JPEG bytes of the best frame (front selfie for selfie flows), or None.
    frames: dict[str, bytes | None]

    def only_differences(self) -> pd.DataFrame:
        return self.table[self.table["differs"]].reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class CaseOptions:
    """One page of cases for the compare page's picker, plus the cases it must keep."""

    #: The kept biz_ids first (what is already picked), then this page's matches; no repeats.
    biz_ids: list[str]
    #: biz_id -> "biz_id · case time · status" (a stable label: no review state, no name).
    labels: dict[str, str]
    #: Cases matching the search (all pages).
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return page_count(self.total, self.page_size)


def _parse(body: str | None) -> GetResult | None:
    if not body:
        return None
    try:
        raw = json.loads(body)
        # Images are elided ("sha256:..") in the stored body; the parser would only flag them.
        return parse_document({k: v for k, v in raw.items()
                               if k not in ("images", "multifaces_image")})
    except (DocumentError, ValueError):
        return None


def _fmt_num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


class CaseComparison:
    """The compare page's part of ``InsightsService`` (mixed into it; the service provides
    ``engine``, ``_dialect`` and ``_allow``)."""

    engine: Engine
    _dialect: str
    _allow: Callable[[Permission], None]

    # ------------------------------------------------------------------ compare

    def compare(self, biz_ids: Sequence[str]) -> CompareView:
        """2-4 cases side by side, one row per attribute, with a 'differs' marker."""
        self._allow(Permission.VIEW_CASE)
        ids = list(dict.fromkeys(b.strip() for b in biz_ids if b and b.strip()))
        if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
            raise InsightsError(f"Pick {COMPARE_MIN} to {COMPARE_MAX} different cases to "
                                "compare.")
        with Session(self.engine) as s:
            found = {v.biz_id: v for v in s.execute(
                select(Verification).where(col(Verification.biz_id).in_(ids))).scalars()}
            missing = [b for b in ids if b not in found]
            if missing:
                raise InsightsError(f"{len(missing)} of the cases are not stored.")
            vids = [found[b].id for b in ids]
            bodies = dict(s.execute(select(RawResponse.verification_id, RawResponse.body)
                                    .where(col(RawResponse.verification_id).in_(vids))).all())
            decisions: dict[int, list[Decision]] = {}
            for d in s.execute(select(Decision).where(col(Decision.verification_id).in_(vids))
                               .order_by(col(Decision.id))).scalars():
                decisions.setdefault(d.verification_id, []).append(d)
        cases = [found[b] for b in ids]
        parsed = [_parse(bodies.get(v.id)) for v in cases]
        labels = [f"Case {i}" for i in range(1, len(ids) + 1)]
        rows = _compare_rows(cases, parsed, [decisions.get(v.id or 0, []) for v in cases])
        table = frame(
            [{"section": sec, "field": name, **dict(zip(labels, vals, strict=True)),
              # biz_id always differs: it names the columns, it is not a finding.
              "differs": name != "biz_id" and len(set(vals)) > 1}
             for sec, name, vals in rows],
            ["section", "field", *labels, "differs"])
        return CompareView(table, labels, ids, self.best_frames(ids))

    def best_frames(self, biz_ids: Sequence[str]) -> dict[str, bytes | None]:
        """The face a reviewer compares: the best liveness frame, else the front selfie."""
        self._allow(Permission.VIEW_CASE)
        out: dict[str, bytes | None] = dict.fromkeys(biz_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(V.biz_id, StoredImage.kind, StoredImage.data)
                .join(StoredImage, col(StoredImage.verification_id) == V.id)
                .where(col(V.biz_id).in_(list(biz_ids)),
                       col(StoredImage.kind).in_(["best", "face_front"]),
                       col(StoredImage.data).is_not(None))
                .order_by(V.biz_id, StoredImage.kind)).all()
        for biz_id, _kind, data in rows:  # "best" sorts before "face_front"
            if out.get(biz_id) is None:
                out[biz_id] = data
        return out

    # ------------------------------------------------------------------ linked cases

    def linked_cases(self, biz_id: str) -> LinkedCases:
        """Other cases with the same ID number (by keyed hash) or the same biz_no, newest
        first; names always masked here (the case page has the audited reveal)."""
        self._allow(Permission.VIEW_CASE)
        biz_id = (biz_id or "").strip()
        with self.engine.connect() as conn:
            me = conn.execute(select(V.id, V.idcard_name, V.id_number_hash, V.biz_no)
                              .where(V.biz_id == biz_id)).first()
            if me is None:
                raise InsightsError("No stored case has this biz_id.")
            return linking.find_linked(conn, me_id=me.id, biz_id=biz_id, name=me.idcard_name,
                                       id_hash=me.id_number_hash, biz_no=me.biz_no)

    def case_options(self, search: str = "", page: int = 1, page_size: int = 50, *,
                     keep: Sequence[str] = ()) -> CaseOptions:
        """The compare picker's options: one page of the cases whose biz_id or biz_no
        contains ``search`` in any letter case (``faceid.review.search``, as the queue; every
        case if empty), most recently stored first, after the ``keep`` cases (already picked: a
        picker must never lose them when the search changes). Paged in SQL.
        """
        self._allow(Permission.VIEW_CASE)
        page_size = max(1, min(int(page_size), PAGE_SIZE_MAX))
        term = search_rule.clean(search)
        conds: list[ColumnElement[bool]] = []
        if term:
            conds.append(search_rule.matches(term, V.biz_id, V.biz_no, dialect=self._dialect))
        keep = list(dict.fromkeys(k for k in keep if k))[:PAGE_SIZE_MAX]
        cols = (V.biz_id, case_time().label("at"), V.status)
        newest = (V.stored_at.desc(), V.id.desc())
        with self.engine.connect() as conn:
            if term:
                # A search scans the table whatever we do: count the matches in the same scan
                # (a window count) instead of a second one (measured: 156 -> ~25 ms for a rare
                # term at 100k cases). Beyond the last page, clamp and ask again.
                total, found = self._search_page(conn, cols, conds, newest, page, page_size)
                page = max(1, min(int(page), page_count(total, page_size)))
            else:
                # No search: the newest page walks the stored_at index; the count is cheap.
                total = int(conn.execute(select(func.count())
                                         .select_from(Verification.__table__)).scalar_one())
                page = max(1, min(int(page), page_count(total, page_size)))
                found = conn.execute(select(*cols).order_by(*newest).limit(page_size)
                                     .offset((page - 1) * page_size)).all()
            kept = conn.execute(select(*cols).where(V.biz_id.in_(keep))).all() if keep else []
        labels = {r.biz_id: f"{r.biz_id} · {fmt(r.at)} · {r.status or '—'}"
                  for r in (*kept, *found)}
        for k in keep:  # a deep-linked biz_id that is not stored stays pickable, and says so
            labels.setdefault(k, f"{k} · not stored")
        ids = list(dict.fromkeys([*keep, *(r.biz_id for r in found)]))
        return CaseOptions(ids, labels, total, page, page_size)

    @staticmethod
    def _search_page(conn: Any, cols: Sequence[Any], conds: list[ColumnElement[bool]],
                     order: Sequence[Any], page: int, page_size: int) -> tuple[int, list[Any]]:
        """(total matches, the rows of ``page``, clamped to the last page)."""
        total_col = func.count().over().label("total")

        def rows(p: int) -> list[Any]:
            return list(conn.execute(select(*cols, total_col).where(*conds).order_by(*order)
                                     .limit(page_size).offset((p - 1) * page_size)).all())

        page = max(1, int(page))
        found = rows(page)
        if found:
            return int(found[0].total), found
        total = int(conn.execute(select(func.count()).select_from(Verification.__table__)
                                 .where(*conds)).scalar_one())
        last = page_count(total, page_size)
        return total, (rows(last) if total and page > last else [])


# --------------------------------------------------------------------------- compare rows


def _decision_cells(ds: list[Decision]) -> dict[str, str]:
    last = ds[-1] if ds else None
    return {
        "decisions made": str(len(ds)),
        "latest outcome": last.outcome if last else "—",
        "latest reason": (last.reason or "—") if last else "—",
        "latest reviewer": last.actor if last else "—",
        "decided at (UTC)": fmt(last.decided_at) if last else "—",
    }


def _liveness_cells(p: GetResult | None) -> dict[str, str]:
    live = p.liveness if p else None
    if live is None:
        return {}
    cells: dict[str, str] = {}
    for prefix, counters in (("", live.details), ("front selfie: ", live.face_front),
                             ("side selfie: ", live.face_side)):
        for name, value in counters.items():
            label = vocab.DETAIL_MEANING.get(name, name)
            cells[f"{prefix}{label} ({name})"] = "—" if value is None else str(value)
    return cells


def _genuineness_cells(p: GetResult | None) -> dict[str, str]:
    gen = p.liveness.genuineness if p and p.liveness else None
    if gen is None:
        return {}
    cells = {
        f"{s.label}": f"{_fmt_num(s.confidence)} vs threshold {_fmt_num(s.threshold)}"
        + (" — OVER" if s.exceeded else "")
        for s in gen.signals
    }
    if gen.face_replaced is not None:
        cells["face replaced"] = "yes" if gen.face_replaced == 1 else "no"
    if gen.selfie_inconsistent is not None:
        cells["selfies inconsistent"] = vocab.meaning(vocab.SELFIE_INCONSISTENT_MEANING,
                                                      gen.selfie_inconsistent)
    if gen.selfie_metadata_inconsistent is not None:
        cells["selfie metadata"] = vocab.meaning(vocab.SELFIE_METADATA_MEANING,
                                                 gen.selfie_metadata_inconsistent)
    return cells


def _compare_cells(p: GetResult | None) -> dict[str, str]:
    verify = p.verify if p else None
    if verify is None:
        return {}
    cells = {c.name: f"{_fmt_num(c.confidence)} ({c.band().describe()})"
             for c in verify.comparisons}
    cells["verify error"] = verify.error_message or "—"
    if verify.id_attacked is not None:
        cells["ID number used in attacks"] = "yes" if verify.id_attacked == 1 else "no"
    return cells


def _compare_rows(cases: list[Verification], parsed: list[GetResult | None],
                  decisions: list[list[Decision]]) -> list[tuple[str, str, list[str]]]:
    # Same ID number: letters per distinct keyed hash, so equality shows without the number.
    letters: dict[str, str] = {}
    for v in cases:
        if v.id_number_hash and v.id_number_hash not in letters:
            letters[v.id_number_hash] = "ABCD"[len(letters)]

    def case_cells(v: Verification, p: GetResult | None) -> dict[str, str]:
        live = p.liveness if p else None
        return {
            "biz_id": v.biz_id,
            "status": v.status or "—",
            "fail reason": v.fail_reason or "—",
            "procedure": (v.procedure_type or "—")
            + (f" / {v.still_type}" if v.still_type else ""),
            "liveness result": v.liveness_result or "—",
            "liveness counters": (live.counter_set() or "—") if live else "—",
            "case time (UTC)": fmt(v.verified_at or v.stored_at),
            "risk flags": ", ".join(x for x in v.risk_flags.split(",") if x) or "—",
            "name (masked)": pii.mask_name(v.idcard_name) or "—",
            "ID number (masked)": pii.mask_id_number(v.idcard_number) or "—",
            "same ID number group": letters.get(v.id_number_hash or "", "—"),
        }

    sections: list[tuple[str, list[dict[str, str]]]] = [
        ("case", [case_cells(v, p) for v, p in zip(cases, parsed, strict=True)]),
        ("liveness details", [_liveness_cells(p) for p in parsed]),
        ("genuineness", [_genuineness_cells(p) for p in parsed]),
        ("face compare", [_compare_cells(p) for p in parsed]),
        ("decision", [_decision_cells(ds) for ds in decisions]),
    ]
    out: list[tuple[str, str, list[str]]] = []
    for section, per_case in sections:
        # Union of fields across the cases, first-seen order: a counter one flow lacks shows "—".
        fields = list(dict.fromkeys(k for cells in per_case for k in cells))
        for name in fields:
            out.append((section, name, [cells.get(name, "—") for cells in per_case]))
    return out
