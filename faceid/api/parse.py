"""Tolerant parser of a ``GET /faceid/lite/get_result`` response into the typed model
(``faceid.api.model``).

Rules (see docs/decisions.md):
- Only a document that is not a get_result response at all is refused (``DocumentError``):
  not JSON, not an object, FaceID's error envelope, or no ``biz_info.biz_id``.
- Anything else parses. A value that does not fit (unknown enum value, wrong type, out-of-range
  score, undecodable image) is kept as received where it can be and flagged in ``flags``.
- Unknown fields are never dropped: every object keeps what it did not recognise in ``extra``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from faceid.api import vocab
from faceid.api.fields import Fields, short
from faceid.api.images import DecodedImage, decode_data_uri
from faceid.api.model import (
    Birthday,
    BizInfo,
    CardSide,
    Comparison,
    Flag,
    Genuineness,
    GetResult,
    IdCardInfo,
    Liveness,
    OcrFieldQuality,
    OcrResult,
    Signal,
    VerifyResult,
)
from faceid.core.errors import DocumentError

# --------------------------------------------------------------------------- parsing


def loads_document(body: bytes | str) -> dict[str, Any]:
    """Decode a response body to a JSON object, or refuse with a reason a person understands."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"Not UTF-8 text (bad byte at offset {exc.start}).") from None
    if not body.strip():
        raise DocumentError("The document is empty.")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(body.rstrip()) or exc.msg.startswith("Unterminated string")
        if truncated:
            raise DocumentError("Not valid JSON: it ends early (truncated?).") from None
        raise DocumentError(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    except RecursionError:
        raise DocumentError("Not valid JSON: nested too deeply.") from None
    if not isinstance(doc, dict):
        raise DocumentError(f"Expected a JSON object, got a JSON {_json_type(doc)}.")
    return doc


def _json_type(v: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


def parse_bytes(body: bytes | str) -> GetResult:
    return parse_document(loads_document(body))


def parse_document(doc: Mapping[str, Any]) -> GetResult:
    """Parse a decoded get_result document. Raises DocumentError only for non-results."""
    if not isinstance(doc, Mapping):
        raise DocumentError(f"Expected a JSON object, got a JSON {_json_type(doc)}.")
    biz = doc.get("biz_info")
    if "error_message" in doc and not isinstance(biz, Mapping):
        raise DocumentError(
            f"This is a FaceID error response ({short(doc.get('error_message'))}), not a result.")
    if not isinstance(biz, Mapping):
        raise DocumentError("No biz_info object: this is not a get_result response.")
    biz_id = biz.get("biz_id")
    if not isinstance(biz_id, str) or not biz_id.strip():
        raise DocumentError("biz_info.biz_id is missing or empty.")

    flags: list[Flag] = []
    top = Fields(doc, "", flags)
    b = top.obj("biz_info")
    assert b is not None
    biz_info = BizInfo(
        biz_id=biz_id,
        biz_no=b.text("biz_no"),
        biz_extra_data=_extra_data(b),
        extra=_consume(b, "biz_id"),
    )
    status = top.text("status", vocab.Status.__members__)
    result = GetResult(
        biz_info=biz_info,
        request_id=top.text("request_id"),
        status=status,
        fail_reason=top.text("fail_reason", vocab.FailReason.__members__),
        time_used=top.integer("time_used"),
        idcard_info=_idcard(top.obj("idcard_info")),
        liveness=_liveness(top.obj("liveness_result")),
        verify=_verify(top.obj("verify_result")),
        images=_images(top, flags),
        multifaces_tag=top.text("multifaces_tag", vocab.MULTIFACES_MEANING),
        multifaces_image=_image(top, "multifaces_image", vocab.MULTIFACES_KIND),
        extra={},
        flags=(),
    )
    if status is None:
        flags.append(Flag("status", "missing"))
    extra = top.extra()
    # Rebuild with the final flag list: flags were appended while the sub-objects parsed.
    return replace(result, extra=extra, flags=tuple(flags))


def _consume(o: Fields, *keys: str) -> dict[str, Any]:
    for k in keys:
        o.raw(k)
    return o.extra()


def _extra_data(b: Fields) -> str | None:
    # biz_extra_data is the integrator's own free text; an object is kept as JSON text.
    v = b.raw("biz_extra_data")
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _idcard(o: Fields | None) -> IdCardInfo | None:
    if o is None:
        return None
    # The page documents "idcard_uneditable_field" but its own example spells it "feild".
    raw_fields = o.text("idcard_uneditable_field")
    misspelt = o.text("idcard_uneditable_feild")
    fields_text = raw_fields if raw_fields is not None else misspelt
    uneditable = tuple(f.strip() for f in (fields_text or "").split(",") if f.strip())
    return IdCardInfo(
        idcard_mode=o.text("idcard_mode", ("0", "1", "2", "3", "4")),
        idcard_mode_user=o.text("idcard_mode_user", vocab.IDCARD_MODE_USER_MEANING),
        uneditable_fields=uneditable,
        idcard_number=o.text("idcard_number"),
        idcard_name=o.text("idcard_name"),
        idcard_valid_date=o.text("idcard_valid_date"),
        idcard_issued_by=o.text("idcard_issued_by"),
        front_side=_side(o.obj("front_side")),
        back_side=_side(o.obj("back_side")),
        ocr_front_quality=_quality(o.obj("ocr_front_quality")),
        ocr_back_quality=_quality(o.obj("ocr_back_quality")),
        extra=o.extra(),
    )


def _side(o: Fields | None) -> CardSide | None:
    if o is None:
        return None
    return CardSide(ocr_result=_ocr(o.obj("ocr_result")), upload_times=o.integer("upload_times"),
                    extra=o.extra())


def _ocr(o: Fields | None) -> OcrResult | None:
    if o is None:
        return None
    bd = o.obj("birthday")
    birthday = None
    if bd is not None:
        birthday = Birthday(bd.text("year"), bd.text("month"), bd.text("day"), bd.extra())
    legality: dict[str, float | None] = {}
    lg = o.obj("legality")
    if lg is not None:
        for key in list(lg.data):
            legality[key] = lg.number(key, 0.0, 1.0)
    return OcrResult(
        name=o.text("name"),
        gender=o.text("gender"),
        race=o.text("race"),
        birthday=birthday,
        address=o.text("address"),
        id_card_number=o.text("id_card_number"),
        issued_by=o.text("issued_by"),
        valid_date=o.text("valid_date"),
        legality=legality,
        extra=o.extra(),
    )


def _quality(o: Fields | None) -> dict[str, OcrFieldQuality]:
    if o is None:
        return {}
    out: dict[str, OcrFieldQuality] = {}
    for key in list(o.data):
        q = o.obj(key)
        if q is None:
            continue
        out[key] = OcrFieldQuality(q.number("quality", 0.0, 1.0), q.integer("logic"),
                                   q.text("result"), q.extra())
    return out


def _counters(o: Fields | None) -> dict[str, int | None]:
    if o is None:
        return {}
    return {key: o.integer(key) for key in list(o.data) if not isinstance(o.data[key], Mapping)}


def _liveness(o: Fields | None) -> Liveness | None:
    if o is None:
        return None
    procedure = o.text("procedure_type", vocab.PROCEDURE_MEANING)
    still_type = o.text("still_type", vocab.StillType.__members__)
    details = o.obj("details")
    face_front = face_side = None
    if details is not None:
        # Selfie nests its counters per photo; everything else is flat.
        face_front = details.obj("face_front")
        face_side = details.obj("face_side")
    flat = _counters(details)
    extra = o.extra()
    if details is not None:
        # Nested objects other than face_front/face_side would vanish: keep them in extra.
        nested = {k: v for k, v in details.data.items()
                  if isinstance(v, Mapping) and k not in ("face_front", "face_side")}
        if nested:
            extra["details"] = nested
    live = Liveness(
        result=o.text("result", vocab.LivenessVerdict.__members__),
        procedure_type=procedure,
        still_type=still_type,
        details=flat,
        face_front=_counters(face_front),
        face_side=_counters(face_side),
        genuineness=_genuineness(o.obj("face_genuineness")),
        extra=extra,
    )
    _check_counters(live, o)
    return live


def _check_counters(live: Liveness, o: Fields) -> None:
    """Flag counters the page does not document for this procedure (kept all the same)."""
    expected = vocab.DETAIL_COUNTERS.get(live.counter_set() or "")
    if expected is not None:
        for key in live.details:
            if key not in expected:
                o.flags.append(Flag(f"{o.path}.details.{key}",
                                    f"counter not documented for {live.counter_set()}"))
    for side in ("face_front", "face_side"):
        allowed = vocab.DETAIL_COUNTERS[f"selfie:{side}"]
        for key in getattr(live, side):
            if key not in allowed:
                o.flags.append(Flag(f"{o.path}.details.{side}.{key}",
                                    "counter not documented for selfie"))


def _genuineness(o: Fields | None) -> Genuineness | None:
    if o is None:
        return None
    signals = tuple(
        Signal(conf.removesuffix("_confidence"), label, o.number(conf, 0.0, 1.0),
               o.number(thr, 0.0, 1.0))
        for conf, thr, label in vocab.GENUINENESS_SIGNALS
        if conf in o.data or thr in o.data
    )
    face_replaced = o.integer("face_replaced")
    if face_replaced not in (None, 0, 1):
        o.flag("face_replaced", "expected 0 or 1", face_replaced)
    return Genuineness(
        signals=signals,
        face_replaced=face_replaced,
        selfie_inconsistent=o.text("selfie_inconsistent", vocab.SELFIE_INCONSISTENT_MEANING),
        selfie_metadata_inconsistent=o.text("selfie_metadata_inconsistent",
                                            vocab.SELFIE_METADATA_MEANING),
        extra=o.extra(),
    )


def _comparison_names(data: Mapping[str, Any]) -> list[str]:
    """result_faceid, result_ref1..N (numeric order), result_idcard_photo, ..._datasource."""
    refs = sorted(
        (k for k in data if k.startswith("result_ref") and k[len("result_ref"):].isdigit()),
        key=lambda k: int(k[len("result_ref"):]),
    )
    named = ["result_faceid", *refs, "result_idcard_photo", "result_idcard_datasource"]
    # Any other result_* object FaceID may add is treated as a comparison too, not dropped.
    others = sorted(k for k in data if k.startswith("result_") and k not in named
                    and isinstance(data[k], Mapping))
    return [k for k in named if k in data] + others


def _comparison(o: Fields, name: str) -> Comparison | None:
    c = o.obj(name)
    if c is None:
        return None
    thresholds: dict[str, float | None] = {}
    t = c.obj("thresholds")
    if t is not None:
        for key in list(t.data):
            thresholds[key] = t.number(key, 0.0, 100.0)
    return Comparison(name, c.number("confidence", 0.0, 100.0), thresholds, c.extra())


def _verify(o: Fields | None) -> VerifyResult | None:
    if o is None:
        return None
    comparisons = tuple(
        c for c in (_comparison(o, n) for n in _comparison_names(o.data)) if c is not None
    )
    exc = o.obj("id_exceptions")
    id_attacked = exc.integer("id_attacked") if exc else None
    monochrome = exc.integer("id_photo_monochrome") if exc else None
    error = o.raw("error_message")
    if error is not None and not isinstance(error, str):
        o.flag("error_message", "expected text or null", error)
        error = None
    if error in ("", "null"):
        error = None
    if error is not None and error not in vocab.VERIFY_ERROR_MEANING:
        o.flag("error_message", "value not on the FaceID page", error)
    extra = o.extra()
    if exc is not None and exc.extra():
        extra["id_exceptions"] = exc.extra()
    return VerifyResult(
        error_message=error,
        comparisons=comparisons,
        id_attacked=id_attacked,
        id_photo_monochrome=monochrome,
        verify_time=o.integer("verify_time"),
        extra=extra,
    )


def _image(o: Fields, key: str, kind: str) -> DecodedImage | None:
    img = decode_data_uri(kind, o.raw(key))
    if img is not None and img.error:
        o.flag(key, img.error)
    return img


def _images(top: Fields, flags: list[Flag]) -> dict[str, DecodedImage]:
    imgs = top.obj("images")
    if imgs is None:
        return {}
    out: dict[str, DecodedImage] = {}
    for kind, key in vocab.IMAGE_KEYS.items():
        img = _image(imgs, key, kind)
        if img is not None:
            out[kind] = img
    for key in imgs.extra():
        # An image key the page does not list: decode it anyway so it is stored and visible.
        img = _image(imgs, key, key.removeprefix("image_"))
        if img is not None:
            out[img.kind] = img
            flags.append(Flag(f"images.{key}", "image kind not on the FaceID page"))
    return out
