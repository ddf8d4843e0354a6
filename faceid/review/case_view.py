"""The case page's content, assembled from what the store holds for one verification.

``assemble`` is a pure function of the stored row, the raw response (images elided), the image
rows and the case's history; the sections it holds (images, OCR fields with quality and
legality, confirmed fields, liveness, face compare, ID exceptions) are built by
``faceid.review.case_sections``. Personal data is masked unless the actor revealed it
(``revealed``). ``faceid.review.service`` loads the rows, checks permissions and calls
``assemble``; the results are plain dataclasses and pandas DataFrames (pandas stays in the
service layer: pages only render them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from faceid.access import pii
from faceid.access.actors import Actor
from faceid.api import vocab
from faceid.api.model import GetResult
from faceid.api.parse import parse_document
from faceid.core.errors import DocumentError
from faceid.core.timeutil import fmt
from faceid.review import linking
from faceid.review.case_sections import (
    ImageView,
    LivenessView,
    _comparison_table,
    _confirmed_table,
    _id_exceptions,
    _image_views,
    _legality_tables,
    _liveness_view,
    _ocr_tables,
    frame,
)
from faceid.review.decisions import REASONS, STATES
from faceid.store.summary import RISK_FLAGS
from faceid.store.tables import AuditEvent, Decision, Note, RawResponse, StoredImage, Verification


@dataclass(frozen=True, slots=True)
class Allowance:
    """Whether one action is open to this actor on this case now, and if not, why (shown)."""

    allowed: bool
    why_not: str | None = None


@dataclass(frozen=True)
class CaseView:
    """Everything the case page shows, assembled from the store."""

    biz_id: str
    biz_no: str | None
    request_id: str | None
    status: str | None
    status_meaning: str
    fail_reason: str | None
    fail_reason_meaning: str | None
    verified_at: str
    stored_at: str
    source: str
    time_used: int | None
    biz_extra_data: str | None
    #: False for NOT_STARTED/PROCESSING: the page says no result sections exist.
    has_results: bool
    decision_state: str
    state_meaning: str
    assignee: str | None
    claimed_at: str | None
    version: int
    decided_by: str | None
    decided_at: str | None
    risk_flags: list[tuple[str, str]]
    parse_flags: list[str]
    images: list[ImageView]
    idcard_mode: str | None
    idcard_mode_user: str | None
    #: "front"/"back" -> OCR table (field, value, quality, logic, check).
    ocr: dict[str, pd.DataFrame]
    #: "front"/"back" -> legality table (check, meaning, score).
    legality: dict[str, pd.DataFrame]
    confirmed: pd.DataFrame
    uploads: dict[str, int | None]
    uneditable_fields: tuple[str, ...]
    liveness: LivenessView | None
    comparisons: pd.DataFrame
    verify_error: str | None
    verify_error_meaning: str | None
    id_exceptions: list[dict[str, Any]]
    multifaces_tag: str | None
    raw: dict[str, Any] | None
    decisions: pd.DataFrame
    notes: pd.DataFrame
    timeline: pd.DataFrame
    pii_revealed: bool
    reveal_until: str | None
    can_reveal: bool
    claimed_by_me: bool
    can_claim: Allowance
    can_release: Allowance
    can_decide: Allowance
    #: The case waits for a second review (escalated, or a first-review reject when
    #: FACEID_SECOND_REVIEW_REJECTS=1); ``decided_by`` made the decision under review.
    awaiting_second_review: bool = False
    #: When the retention purge removed the images / the personal data ("" if never).
    images_purged_at: str | None = None
    pii_purged_at: str | None = None
    #: Other cases with this case's ID number (keyed hash) or biz_no; names in clear only
    #: while this case's personal data is revealed to the actor.
    linked: linking.LinkedCases | None = None


def assemble(v: Verification, raw_row: RawResponse | None, images: list[StoredImage],
         decisions: list[Decision], notes: list[Note], events: list[AuditEvent],
         actor: Actor, reveal_until: datetime | None, second: bool,
         allowances: tuple[Allowance, Allowance, Allowance],
         linked: linking.LinkedCases | None = None) -> CaseView:
    """The CaseView of one case for ``actor``; ``allowances`` are (claim, release, decide)."""
    revealed = reveal_until is not None
    raw: dict[str, Any] | None = json.loads(raw_row.body) if raw_row else None
    parsed = parse_without_images(raw) if raw else None
    info = parsed.idcard_info if parsed else None
    live = parsed.liveness if parsed else None
    verify = parsed.verify if parsed else None

    def m(field: str, value: str | None) -> str | None:
        return value if revealed else pii.mask_field(field, value)

    claim_p, release_p, decide_p = allowances
    return CaseView(
        biz_id=v.biz_id,
        biz_no=v.biz_no,
        request_id=v.request_id,
        status=v.status,
        status_meaning=vocab.meaning(vocab.STATUS_MEANING, v.status),
        fail_reason=v.fail_reason,
        fail_reason_meaning=vocab.meaning(vocab.FAIL_REASON_MEANING, v.fail_reason)
        if v.fail_reason else None,
        verified_at=fmt(v.verified_at),
        stored_at=fmt(v.stored_at),
        source=v.source,
        time_used=parsed.time_used if parsed else None,
        biz_extra_data=parsed.biz_info.biz_extra_data if parsed else None,
        has_results=v.status not in vocab.STATUSES_WITHOUT_RESULTS,
        decision_state=v.decision_state,
        state_meaning=STATES.get(v.decision_state, v.decision_state),
        assignee=v.assignee,
        claimed_at=fmt(v.claimed_at) if v.claimed_at else None,
        version=v.version,
        decided_by=v.decided_by,
        decided_at=fmt(v.decided_at) if v.decided_at else None,
        risk_flags=[(f, RISK_FLAGS.get(f, f)) for f in (v.risk_flags or "").split(",") if f],
        parse_flags=list(v.parse_flags or []),
        images=_image_views(parsed, images, v),
        idcard_mode=info.idcard_mode if info else None,
        idcard_mode_user=vocab.meaning(vocab.IDCARD_MODE_USER_MEANING,
                                       info.idcard_mode_user)
        if info and info.idcard_mode_user else None,
        ocr=_ocr_tables(parsed, revealed),
        legality=_legality_tables(parsed),
        confirmed=_confirmed_table(parsed, m),
        uploads={side: (getattr(info, f"{side}_side").upload_times
                        if info and getattr(info, f"{side}_side") else None)
                 for side in ("front", "back")},
        uneditable_fields=info.uneditable_fields if info else (),
        liveness=_liveness_view(live) if live else None,
        comparisons=_comparison_table(verify.comparisons if verify else ()),
        verify_error=verify.error_message if verify else None,
        verify_error_meaning=vocab.meaning(vocab.VERIFY_ERROR_MEANING, verify.error_message)
        if verify and verify.error_message else None,
        id_exceptions=_id_exceptions(parsed),
        multifaces_tag=parsed.multifaces_tag if parsed else None,
        raw=(raw if revealed else pii.mask_document(raw)) if raw else None,
        decisions=frame([{
            "time (UTC)": fmt(d.decided_at), "actor": d.actor,
            "outcome": d.outcome, "reason": REASONS.get(d.reason or "", d.reason),
            "note": d.note, "on version": d.based_on_version,
        } for d in decisions], ["time (UTC)", "actor", "outcome", "reason", "note",
                                "on version"]),
        notes=frame([{"time (UTC)": fmt(n.created_at), "actor": n.actor, "note": n.text}
                      for n in notes], ["time (UTC)", "actor", "note"]),
        timeline=frame([{"time (UTC)": fmt(e.at), "actor": e.actor, "action": e.action,
                          "detail": e.detail} for e in events],
                        ["time (UTC)", "actor", "action", "detail"]),
        pii_revealed=revealed,
        reveal_until=fmt(reveal_until) if reveal_until else None,
        can_reveal=pii.can_reveal(actor.role),
        claimed_by_me=v.assignee == actor.username,
        can_claim=claim_p,
        can_release=release_p,
        can_decide=decide_p,
        awaiting_second_review=second,
        images_purged_at=fmt(v.images_purged_at) if v.images_purged_at else None,
        pii_purged_at=fmt(v.pii_purged_at) if v.pii_purged_at else None,
        linked=linked,
    )


def parse_without_images(raw: dict[str, Any]) -> GetResult | None:
    # Images come from the images table (bytes, errors); the stored body has them elided as
    # "sha256:..", which the parser would only flag as malformed base64.
    doc = {k: v for k, v in raw.items() if k not in ("images", "multifaces_image")}
    try:
        return parse_document(doc)
    except DocumentError:
        return None


