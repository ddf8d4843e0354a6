"""Derive the queryable columns of a verification (status, bands, risk flags) from a parsed
result. The raw response stays the source of truth; these columns make the queue fast."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from faceid.api.model import GetResult

#: Risk flags, in the order they are shown, with what each means.
RISK_FLAGS: dict[str, str] = {
    "status_not_ok": "The flow did not finish with status OK",
    "liveness_fail": "Liveness FAIL",
    "verify_error": "Face compare returned an error",
    "compare_below_1e-3": "Face compare below the loosest (1e-3) threshold",
    "genuineness": "A fake-face signal is over its threshold",
    "face_replaced": "Face replacement detected",
    "id_attacked": "This ID number has been used in attacks before",
    "multifaces": "Several faces in the frame",
    "selfie_inconsistent": "The two selfies are inconsistent",
    "parse_flags": "The response had values that do not fit the FaceID page",
}


def id_number_hash(number: str | None, key: bytes) -> str | None:
    """Keyed hash of an ID number: equal numbers link, but the hash does not reveal the number
    (a plain sha256 of an 18-digit ID could be brute-forced from birth date and area code)."""
    if not number:
        return None
    norm = number.strip().upper().replace(" ", "")
    if not norm or "X" * 4 in norm:  # masked numbers ("xxxx...") must not link strangers
        return None
    return hmac.new(key, norm.encode(), hashlib.sha256).hexdigest()


def confirmed_name_number(r: GetResult) -> tuple[str | None, str | None]:
    """The name/number the user confirmed, else what OCR read on the front side."""
    info = r.idcard_info
    if info is None:
        return None, None
    ocr = info.front_side.ocr_result if info.front_side else None
    name = info.idcard_name or (ocr.name if ocr else None)
    number = info.idcard_number or (ocr.id_card_number if ocr else None)
    return name, number


def risk_flags(r: GetResult) -> list[str]:
    flags: list[str] = []
    if r.status != "OK":
        flags.append("status_not_ok")
    live = r.liveness
    if live is not None and live.result == "FAIL":
        flags.append("liveness_fail")
    verify = r.verify
    if verify is not None:
        if verify.error_message:
            flags.append("verify_error")
        fid = verify.faceid
        if fid is not None and fid.band().failed[:1] == ("1e-3",):
            flags.append("compare_below_1e-3")
    gen = live.genuineness if live else None
    if gen is not None:
        if gen.exceeded():
            flags.append("genuineness")
        if gen.face_replaced == 1:
            flags.append("face_replaced")
        if gen.selfie_inconsistent == "1" or gen.selfie_metadata_inconsistent in ("1", "2"):
            flags.append("selfie_inconsistent")
    if verify is not None and verify.id_attacked == 1:
        flags.append("id_attacked")
    if r.multifaces_tag == "1":
        flags.append("multifaces")
    if r.flags:
        flags.append("parse_flags")
    return flags


def _db_text(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; OCR text is attacker-controlled and may. The raw
    response keeps the exact value (JSON-escaped), the queryable copy gets U+FFFD."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_db_text(v) for v in value]
    return value


def columns(r: GetResult, hash_key: bytes) -> dict[str, Any]:
    """Keyword arguments for ``tables.Verification`` (minus times, source and review state)."""
    return {k: _db_text(v) for k, v in _columns(r, hash_key).items()}


def _columns(r: GetResult, hash_key: bytes) -> dict[str, Any]:
    live, verify = r.liveness, r.verify
    gen = live.genuineness if live else None
    fid = verify.faceid if verify else None
    photo = verify.comparison("result_idcard_photo") if verify else None
    source = verify.comparison("result_idcard_datasource") if verify else None
    band = fid.band() if fid else None
    name, number = confirmed_name_number(r)
    flags = risk_flags(r)
    return {
        "biz_id": r.biz_id,
        "biz_no": r.biz_info.biz_no,
        "request_id": r.request_id,
        "status": r.status,
        "fail_reason": r.fail_reason,
        "procedure_type": live.procedure_type if live else None,
        "still_type": live.still_type if live else None,
        "liveness_result": live.result if live else None,
        "faceid_confidence": fid.confidence if fid else None,
        "faceid_band": (band.strictest_passed or ("none" if band.failed else None))
        if band else None,
        "idcard_photo_confidence": photo.confidence if photo else None,
        "datasource_confidence": source.confidence if source else None,
        "verify_error": verify.error_message if verify else None,
        "genuineness_exceeded": ",".join(s.name for s in gen.exceeded()) or None if gen else None,
        "face_replaced": gen.face_replaced if gen else None,
        "id_attacked": verify.id_attacked if verify else None,
        "id_photo_monochrome": verify.id_photo_monochrome if verify else None,
        "multifaces": r.multifaces_tag == "1",
        "selfie_inconsistent": gen.selfie_inconsistent if gen else None,
        "selfie_metadata_inconsistent": gen.selfie_metadata_inconsistent if gen else None,
        "risk_flags": ",".join(flags),
        "risk_count": len(flags),
        "idcard_name": name,
        "idcard_number": number,
        "id_number_hash": id_number_hash(number, hash_key),
        "parse_flag_count": len(r.flags),
        "parse_flags": [str(f) for f in r.flags] or None,
        "comparisons": [
            {"name": c.name, "confidence": c.confidence, "thresholds": c.thresholds,
             "band": c.band().describe()}
            for c in verify.comparisons
        ] if verify else None,
    }
