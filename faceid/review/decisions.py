"""What a reviewer may decide: the outcomes, the case states they leave, the reason
catalogue, and the check every decision passes before any database work.

``faceid.review.service`` records decisions; the case page offers these choices; the export and the
metrics read the same names.
"""

from __future__ import annotations

from faceid.core.errors import InvalidDecision

#: Outcome -> label shown on the button / selector.
OUTCOMES: dict[str, str] = {
    "approve": "Approve",
    "reject": "Reject",
    "escalate": "Escalate to a senior reviewer",
    "reverify": "Ask the user to verify again",
}
#: Outcome -> the case state it leaves behind.
OUTCOME_STATE: dict[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "escalate": "escalated",
    "reverify": "reverify",
}
STATES: dict[str, str] = {
    "pending": "Waiting for a first review",
    "escalated": "Escalated: waiting for a senior reviewer",
    "approved": "Approved",
    "rejected": "Rejected",
    "reverify": "Sent back: the user must verify again",
}
#: States that end the review (a reject may first wait for a second review: see
#: ``Settings.second_review_rejects``).
FINAL_STATES = frozenset({"approved", "rejected", "reverify"})
#: Reason catalogue (required, with a note, for reject and escalate).
REASONS: dict[str, str] = {
    "face_mismatch": "Face does not match the ID photo / reference",
    "spoof_suspected": "Spoof or presentation attack suspected",
    "document_tampered": "ID document looks tampered with or fake",
    "id_data_mismatch": "ID data (name, number, dates) does not match",
    "poor_quality": "Images or data too poor to decide",
    "duplicate_identity": "Identity already used in another case",
    "other": "Other (explain in the note)",
}
NEEDS_REASON = frozenset({"reject", "escalate"})
NOTE_MAX = 4000


def validate_decision(outcome: str, reason: str | None,
                      note: str | None) -> tuple[str, str | None, str | None]:
    """Check a decision before any database work; returns it normalised."""
    if outcome not in OUTCOMES:
        raise InvalidDecision(f"Unknown outcome {outcome!r}.")
    reason = (reason or "").strip() or None
    note = (note or "").strip() or None
    if reason is not None and reason not in REASONS:
        raise InvalidDecision(f"Unknown reason {reason!r}: pick one from the list.")
    if outcome in NEEDS_REASON:
        if reason is None:
            raise InvalidDecision(f"{OUTCOMES[outcome]} needs a reason from the list.")
        if note is None:
            raise InvalidDecision(f"{OUTCOMES[outcome]} needs a note explaining it.")
    if note is not None and len(note) > NOTE_MAX:
        raise InvalidDecision(f"The note is too long (max {NOTE_MAX} characters).")
    return outcome, reason, note
