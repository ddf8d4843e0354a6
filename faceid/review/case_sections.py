"""The sections of a case page, built from the parsed result and the stored rows: images with
their state, OCR fields with per-field quality and legality scores, the confirmed fields,
liveness with its counters and fake-face signals against their thresholds, face-compare
confidences against the 1e-3..1e-6 thresholds, ID exceptions. ``faceid.review.case_view``
puts them into a ``CaseView``; ``frame`` and ``round3`` shape the tables the services return.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from faceid.access import pii
from faceid.api import vocab
from faceid.api.model import Comparison, GetResult, Liveness, OcrFieldQuality, OcrResult
from faceid.core.timeutil import fmt
from faceid.store.tables import StoredImage, Verification

COMPARISON_MEANING: dict[str, str] = {
    "result_faceid": "Liveness face vs reference photo (the overall score)",
    "result_idcard_photo": "Liveness face vs the face on the ID card photo",
    "result_idcard_datasource": "Face on the ID card photo vs the reference data photo",
}
ID_EXCEPTION_MEANING: dict[str, dict[int, str]] = {
    "id_attacked": {
        1: "This ID number has been used in attacks on FaceID before (the holder may not "
           "be involved: the ID may have been stolen).",
        0: "No known attacks using this ID number.",
    },
    "id_photo_monochrome": {
        1: "The reference photo is black-and-white, which lowers compare scores.",
        0: "The reference photo is in colour.",
    },
}
FIELD_LABELS: dict[str, str] = {
    "name": "Name",
    "gender": "Gender",
    "race": "Ethnicity",
    "birthday": "Birthday",
    "address": "Address",
    "id_card_number": "ID number",
    "issued_by": "Issued by",
    "valid_date": "Valid dates",
}
#: OCR field -> the ocr_*_quality keys that check it (lite 2.0 names them differently).
_QUALITY_KEYS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "gender": ("gender",),
    "race": ("nationality", "race"),
    "birthday": ("birth_year", "birth_month", "birth_day", "birthday"),
    "address": ("address",),
    "id_card_number": ("idcard_number", "id_card_number"),
    "issued_by": ("issued_by",),
    "valid_date": ("valid_date_start", "valid_date_end", "valid_date"),
}
_SIDE_FIELDS = {
    "front": ("name", "gender", "race", "birthday", "address", "id_card_number"),
    "back": ("issued_by", "valid_date"),
}
#: Confirmed field (idcard_info) -> (OCR side, OCR field).
_CONFIRMED = {
    "idcard_name": ("front", "name", "Name"),
    "idcard_number": ("front", "id_card_number", "ID number"),
    "idcard_valid_date": ("back", "valid_date", "Valid dates"),
    "idcard_issued_by": ("back", "issued_by", "Issued by"),
}
LOW_QUALITY = 0.8


@dataclass(frozen=True, slots=True)
class ImageView:
    kind: str
    label: str
    #: JPEG bytes, or None when the image is missing, undecodable or purged.
    data: bytes | None
    #: "ok", "error" (sent but unusable), "missing" (expected, not returned), "purged".
    state: str
    problem: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True)
class LivenessView:
    result: str | None
    result_meaning: str
    procedure_type: str | None
    procedure_meaning: str
    still_type: str | None
    still_meaning: str | None
    counters: pd.DataFrame
    signals: pd.DataFrame
    signals_exceeded: list[str]
    face_replaced: int | None
    selfie_inconsistent: str | None
    selfie_inconsistent_meaning: str | None
    selfie_metadata: str | None
    selfie_metadata_meaning: str | None


def round3(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def frame(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    # An explicit column list keeps an empty table's header (and its column order) stable.
    return pd.DataFrame(list(rows), columns=list(columns))


def _expected_images(parsed: GetResult | None) -> list[str]:
    """Image kinds a reviewer should expect for this case (to mark absent ones as missing)."""
    if parsed is None or parsed.status in vocab.STATUSES_WITHOUT_RESULTS:
        return []
    kinds: list[str] = []
    live = parsed.liveness
    if live is not None:
        kinds += ["face_front", "face_side"] if live.procedure_type == "selfie" else ["best"]
    info = parsed.idcard_info
    if info is not None:
        if info.front_side is not None:
            kinds.append("idcard_front")
        if info.back_side is not None:
            kinds.append("idcard_back")
    if parsed.multifaces_tag == "1":
        kinds.append(vocab.MULTIFACES_KIND)
    return kinds


def _image_views(parsed: GetResult | None, rows: list[StoredImage],
                 v: Verification) -> list[ImageView]:
    by_kind = {r.kind: r for r in rows}
    order = [*vocab.IMAGE_KEYS, vocab.MULTIFACES_KIND]
    kinds = [k for k in order if k in by_kind or k in _expected_images(parsed)]
    kinds += sorted(k for k in by_kind if k not in order)
    out = []
    for kind in kinds:
        label = vocab.IMAGE_LABELS.get(kind, kind)
        r = by_kind.get(kind)
        if r is None:
            out.append(ImageView(kind, label, None, "missing", "Not returned by FaceID."))
        elif r.purged_at is not None or (v.images_purged_at and r.data is None):
            out.append(ImageView(kind, label, None, "purged",
                                 f"Removed by the retention policy on {fmt(r.purged_at)}."))
        elif r.data is None or r.error:
            out.append(ImageView(kind, label, None, "error",
                                 f"Sent but unusable: {r.error or 'no data'}."))
        else:
            out.append(ImageView(kind, label, r.data, "ok", None, r.width, r.height))
    return out


def _quality_for(field: str, quality: dict[str, OcrFieldQuality]) -> list[OcrFieldQuality]:
    return [quality[k] for k in _QUALITY_KEYS.get(field, (field,)) if k in quality]


def _ocr_value(ocr: OcrResult, field: str) -> str | None:
    if field == "birthday":
        bd = ocr.birthday
        if bd is None:
            return None
        return bd.iso() or "-".join(p or "?" for p in (bd.year, bd.month, bd.day))
    return getattr(ocr, field)


def _ocr_tables(parsed: GetResult | None, revealed: bool) -> dict[str, pd.DataFrame]:
    def m(field: str, value: str | None) -> str | None:
        return value if revealed else pii.mask_field(field, value)

    cols = ["field", "value", "quality", "logic", "check"]
    info = parsed.idcard_info if parsed else None
    out: dict[str, pd.DataFrame] = {}
    if info is None:
        return out
    for side in ("front", "back"):
        card = getattr(info, f"{side}_side")
        quality = getattr(info, f"ocr_{side}_quality")
        ocr = card.ocr_result if card else None
        if ocr is None and not quality:
            continue
        rows: list[dict[str, Any]] = []
        used: set[str] = set()
        for field in _SIDE_FIELDS[side]:
            value = _ocr_value(ocr, field) if ocr else None
            qs = _quality_for(field, quality)
            used.update(k for k in _QUALITY_KEYS.get(field, (field,)) if k in quality)
            if value is None and not qs:
                continue
            rows.append(_ocr_row(FIELD_LABELS[field], m(field, value), qs))
        for key, q in quality.items():
            # Quality checks on fields the OCR block does not carry (FaceID may add some).
            if key not in used:
                shown = q.result if revealed else pii.mask_quality_result(key, q.result)
                rows.append(_ocr_row(key, shown, [q]))
        out[side] = frame(rows, cols)
    return out


def _ocr_row(label: str, value: str | None, qs: list[OcrFieldQuality]) -> dict[str, Any]:
    quals = [q.quality for q in qs if q.quality is not None]
    logic = [q.logic for q in qs if q.logic is not None]
    low = any(q.is_low(LOW_QUALITY) for q in qs)
    check = "no check" if not qs else ("LOW QUALITY" if any(
        q.quality is not None and q.quality < LOW_QUALITY for q in qs) else "")
    if any(logic):
        check = (check + " / " if check and check != "no check" else "") + "LOGIC ERROR"
    return {"field": label, "value": value, "quality": min(quals) if quals else None,
            "logic": max(logic) if logic else None,
            "check": check if (low or not qs) else "ok"}


def _legality_tables(parsed: GetResult | None) -> dict[str, pd.DataFrame]:
    info = parsed.idcard_info if parsed else None
    out: dict[str, pd.DataFrame] = {}
    if info is None:
        return out
    for side in ("front", "back"):
        card = getattr(info, f"{side}_side")
        ocr = card.ocr_result if card else None
        if ocr is None or not ocr.legality:
            continue
        rows = [{"check": key, "meaning": vocab.LEGALITY_MEANING.get(key.strip(),
                                                                      "not on the FaceID page"),
                 "score": score} for key, score in ocr.legality.items()]
        out[side] = frame(rows, ["check", "meaning", "score"])
    return out


def _norm(value: str | None) -> str:
    return "".join((value or "").split()).upper()


def _confirmed_table(parsed: GetResult | None,
                     m: Callable[[str, str | None], str | None]) -> pd.DataFrame:
    cols = ["field", "confirmed", "OCR", "differs", "uneditable"]
    info = parsed.idcard_info if parsed else None
    if info is None:
        return frame([], cols)
    rows = []
    for key, (side, field, label) in _CONFIRMED.items():
        confirmed = getattr(info, key)
        card = getattr(info, f"{side}_side")
        ocr_value = getattr(card.ocr_result, field) if card and card.ocr_result else None
        if confirmed is None and ocr_value is None:
            continue
        # Compared on the clear values; only the display is masked.
        differs = (confirmed is not None and ocr_value is not None
                   and _norm(confirmed) != _norm(ocr_value))
        rows.append({"field": label, "confirmed": m(key, confirmed),
                     "OCR": m(field, ocr_value), "differs": differs,
                     "uneditable": key in info.uneditable_fields})
    return frame(rows, cols)


def _liveness_view(live: Liveness) -> LivenessView:
    documented = set(vocab.DETAIL_COUNTERS.get(live.counter_set() or "", ()))
    rows: list[dict[str, Any]] = []
    for key, count in live.details.items():
        rows.append({"photo": "—", "counter": key, "count": count,
                     "meaning": vocab.DETAIL_MEANING.get(key, "not on the FaceID page"),
                     "documented": key in documented if documented else None})
    for photo in ("face_front", "face_side"):
        allowed = set(vocab.DETAIL_COUNTERS[f"selfie:{photo}"])
        for key, count in getattr(live, photo).items():
            rows.append({"photo": photo.replace("face_", "selfie "), "counter": key,
                         "count": count,
                         "meaning": vocab.DETAIL_MEANING.get(key, "not on the FaceID page"),
                         "documented": key in allowed})
    gen = live.genuineness
    sig_rows = [{"signal": sgl.label, "confidence": sgl.confidence, "threshold": sgl.threshold,
                 "over threshold": sgl.exceeded} for sgl in (gen.signals if gen else ())]
    return LivenessView(
        result=live.result,
        result_meaning={"PASS": "Liveness passed.", "FAIL": "Liveness FAILED."}.get(
            live.result or "", vocab.meaning({}, live.result)),
        procedure_type=live.procedure_type,
        procedure_meaning=vocab.meaning(vocab.PROCEDURE_MEANING, live.procedure_type),
        still_type=live.still_type,
        still_meaning=vocab.meaning(vocab.STILL_TYPE_MEANING, live.still_type)
        if live.still_type else None,
        counters=frame(rows, ["photo", "counter", "count", "meaning", "documented"]),
        signals=frame(sig_rows, ["signal", "confidence", "threshold", "over threshold"]),
        signals_exceeded=[sgl.label for sgl in gen.exceeded()] if gen else [],
        face_replaced=gen.face_replaced if gen else None,
        selfie_inconsistent=gen.selfie_inconsistent if gen else None,
        selfie_inconsistent_meaning=vocab.meaning(vocab.SELFIE_INCONSISTENT_MEANING,
                                                  gen.selfie_inconsistent)
        if gen and gen.selfie_inconsistent else None,
        selfie_metadata=gen.selfie_metadata_inconsistent if gen else None,
        selfie_metadata_meaning=vocab.meaning(vocab.SELFIE_METADATA_MEANING,
                                              gen.selfie_metadata_inconsistent)
        if gen and gen.selfie_metadata_inconsistent else None,
    )


def _comparison_meaning(name: str) -> str:
    if name.startswith("result_ref") and name[len("result_ref"):].isdigit():
        return f"Liveness face vs uploaded reference image_ref{name[len('result_ref'):]}"
    return COMPARISON_MEANING.get(name, "not on the FaceID page")


def _risk_level(c: Comparison) -> str:
    band = c.band()
    if c.confidence is None:
        return "no score"
    if band.strictest_passed:
        return f"reaches {band.strictest_passed}: " + vocab.THRESHOLD_MEANING.get(
            band.strictest_passed, "")
    if band.failed:
        return "below every threshold: HIGH RISK (false-accept risk above 1 in 1,000)"
    return "no thresholds"


def _comparison_table(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    rows = []
    for c in comparisons:
        row: dict[str, Any] = {"comparison": c.name, "compares": _comparison_meaning(c.name),
                               "confidence": c.confidence}
        for key in vocab.THRESHOLD_KEYS:
            row[key] = c.thresholds.get(key)
        row["band"] = c.band().describe()
        row["risk level"] = _risk_level(c)
        rows.append(row)
    return frame(rows, ["comparison", "compares", "confidence", *vocab.THRESHOLD_KEYS, "band",
                         "risk level"])


def _id_exceptions(parsed: GetResult | None) -> list[dict[str, Any]]:
    verify = parsed.verify if parsed else None
    if verify is None:
        return []
    out = []
    for key in ("id_attacked", "id_photo_monochrome"):
        value = getattr(verify, key)
        if value is None:
            continue
        out.append({"exception": key, "value": value,
                    "meaning": ID_EXCEPTION_MEANING[key].get(value, "not on the FaceID page")})
    return out
