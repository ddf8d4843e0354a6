"""The parser: the page's own examples, every status and procedure, quirks, refusals, and
property tests that it never crashes and never drops a field."""

from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceid.api import vocab
from faceid.api.images import decode_data_uri
from faceid.api.model import Comparison, GetResult
from faceid.api.parse import loads_document, parse_bytes, parse_document
from faceid.api.rawdoc import elide_images, restore_images
from faceid.api.simulator import generate_batch, generate_result
from faceid.core.errors import DocumentError

PAGE_BIZ_ID = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1"


def jpeg_uri(space: bool = False, colour: str = "red") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buf, "JPEG")
    prefix = "data: image/jpeg;base64," if space else "data:image/jpeg;base64,"
    return prefix + base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------ the page's examples


def test_page_success_example_parses_completely(page_success: bytes) -> None:
    r = parse_bytes(page_success)
    assert r.biz_id == PAGE_BIZ_ID  # contains a comma
    assert r.request_id == "1462259763,e2d2f8d6-204b-4c43-92ea-1d62b071f83c"
    assert r.status == "OK" and r.time_used == 93
    assert r.biz_info.biz_no == "cc47190f-5502-44a2-ab74-ea4f0f649f61"
    info = r.idcard_info
    assert info is not None
    # The example spells it "idcard_uneditable_feild": accepted.
    assert info.uneditable_fields == ("idcard_number", "idcard_valid_date")
    assert info.idcard_name == "陈AB" and info.idcard_issued_by == "北京市公安局"
    front = info.front_side.ocr_result
    assert front.birthday.iso() == "1991-06-02"
    assert front.race == "汉" and front.gender == "男"
    # The trailing-space key is kept as received and readable normalised.
    assert "Temporary ID Photo " in front.legality
    assert front.legality_normalised()["Temporary ID Photo"] == 0
    assert info.back_side.upload_times == 2
    assert info.back_side.ocr_result.valid_date == "2010.11.13-2020.11.13"
    live = r.liveness
    assert live.procedure_type == "video" and live.details["SR_ERROR"] == 2
    assert [s.name for s in live.genuineness.exceeded()] == ["synthetic_face"]
    names = [c.name for c in r.verify.comparisons]
    assert names == ["result_faceid", "result_ref1", "result_idcard_photo",
                     "result_idcard_datasource"]
    assert r.verify.faceid.band().describe() == "passes 1e-3, fails 1e-4"
    assert r.verify.id_attacked == 0
    # The example's "PASS/FAIL/TIMEOUT" placeholder and "..." images are flagged, not fatal.
    flagged = {f.path for f in r.flags}
    assert "liveness_result.result" in flagged
    assert {"images.image_best", "images.image_idcard_front"} <= flagged
    assert all(not img.ok for img in r.images.values())


def test_page_failure_example_is_refused_with_reason(page_failure: bytes) -> None:
    with pytest.raises(DocumentError, match="error response.*RESULT_NOT_FOUND"):
        parse_bytes(page_failure)


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"status": "OK", "biz_info": {"biz_id": "1,a"', "truncated"),
    (b"[1, 2]", "got a JSON array"),
    (b'"hello"', "got a JSON string"),
    (b"", "empty"),
    (b"\xff\xfe{", "UTF-8"),
    (b'{"status": "OK"}', "No biz_info"),
    (b'{"biz_info": {"biz_no": "x"}}', "biz_id is missing"),
    (b'{"biz_info": {"biz_id": ""}}', "biz_id is missing"),
    (b'{"error_message": "DATA_DESTROYED", "request_id": "1,a"}', "DATA_DESTROYED"),
])
def test_non_results_are_refused_saying_why(body: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_bytes(body)


# ------------------------------------------------------------------ coverage of the vocabulary


BATCH = generate_batch(300, seed=7)


def test_every_status_parses() -> None:
    seen = set()
    for doc in BATCH:
        r = parse_document(doc)
        seen.add(r.status)
        if r.status in vocab.STATUSES_WITHOUT_RESULTS:
            assert r.idcard_info is None and r.liveness is None and r.verify is None
    assert seen == set(vocab.Status.__members__)


@pytest.mark.parametrize("status", list(vocab.Status.__members__))
def test_each_status_has_meaning_and_parses_without_flags(status: str) -> None:
    r = parse_document(generate_result(11, status=status))
    assert r.status == status
    assert not r.flags, r.flags
    assert vocab.meaning(vocab.STATUS_MEANING, status).startswith(
        vocab.STATUS_MEANING[status][:10])


@pytest.mark.parametrize("procedure", list(vocab.PROCEDURE_MEANING))
def test_every_procedure_type_parses_with_its_documented_counters(procedure: str) -> None:
    for seed in range(6):
        r = parse_document(generate_result(seed, status="OK", procedure_type=procedure))
        live = r.liveness
        assert live is not None and live.procedure_type == procedure
        assert not r.flags, r.flags
        if procedure == "selfie":
            assert live.face_front and live.face_side and not live.details
            assert set(live.face_front) <= set(vocab.DETAIL_COUNTERS["selfie:face_front"])
            assert live.genuineness.selfie_inconsistent in ("0", "1")
        else:
            expected = vocab.DETAIL_COUNTERS[live.counter_set()]
            assert live.details and set(live.details) <= set(expected)
        if procedure == "still":
            assert live.still_type in vocab.StillType.__members__
        if procedure == "meglive_flash":
            assert "ACTION_FAIL" in live.details
        for key in live.details:
            assert key in vocab.DETAIL_MEANING


def test_simulated_images_decode_to_jpeg_with_size() -> None:
    r = parse_document(generate_result(3, status="OK", procedure_type="video"))
    assert r.images, "an OK video case carries images"
    for img in r.all_images():
        assert img.ok and img.data.startswith(b"\xff\xd8\xff") and img.width and img.height


# ------------------------------------------------------------------ tolerance


def base_doc(**extra: object) -> dict:
    return {"status": "OK", "biz_info": {"biz_id": "1700000000,abc"}, **extra}


def test_unknown_enum_values_are_kept_and_flagged() -> None:
    r = parse_document(base_doc(status="BRAND_NEW", fail_reason="ALIENS",
                                liveness_result={"result": "MAYBE", "procedure_type": "hologram"}))
    assert r.status == "BRAND_NEW" and r.fail_reason == "ALIENS"
    assert r.liveness.result == "MAYBE" and r.liveness.procedure_type == "hologram"
    assert {f.path for f in r.flags} >= {"status", "fail_reason", "liveness_result.result",
                                         "liveness_result.procedure_type"}
    assert "Unknown value" in vocab.meaning(vocab.STATUS_MEANING, "BRAND_NEW")


def test_images_with_and_without_space_and_bad_ones() -> None:
    r = parse_document(base_doc(images={
        "image_best": jpeg_uri(space=True),
        "image_idcard_front": jpeg_uri(),
        "image_idcard_back": "data:image/jpeg;base64,@@@not base64@@@",
        "image_face_front": "data:image/png;base64," + base64.b64encode(b"\x89PNG....").decode(),
        "image_face_side": None,
        "image_new_kind": jpeg_uri(),
    }, multifaces_tag="1", multifaces_image=jpeg_uri()))
    assert r.images["best"].ok and r.images["idcard_front"].ok
    assert r.images["idcard_back"].error == "the base64 text is malformed"
    assert r.images["face_front"].error == "the image is not a JPEG"
    assert "face_side" not in r.images  # null = not returned
    assert r.images["new_kind"].ok  # unknown kinds are kept, and flagged
    assert r.multifaces_image.ok
    problems = {f.path: f.problem for f in r.flags}
    assert "images.image_idcard_back" in problems and "images.image_new_kind" in problems


def test_truncated_jpeg_is_flagged() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buf, "JPEG")
    img = decode_data_uri("best", base64.b64encode(buf.getvalue()[:40]).decode())
    assert img is not None and not img.ok and "damaged" in img.error


def test_wrong_types_are_flagged_not_fatal() -> None:
    r = parse_document(base_doc(time_used="fast", liveness_result=[1, 2],
                                verify_result={"result_faceid": {"confidence": "high"},
                                               "verify_time": "1700000000"}))
    assert r.time_used is None and r.liveness is None
    assert r.verify.faceid.confidence is None
    assert r.verify.verify_time == 1700000000  # numeric strings are accepted
    assert {"time_used", "liveness_result", "verify_result.result_faceid.confidence"} <= {
        f.path for f in r.flags}


def test_any_number_of_refs_in_numeric_order() -> None:
    comp = {"confidence": 70.0, "thresholds": {"1e-3": 62, "1e-4": 69, "1e-5": 74, "1e-6": 78}}
    r = parse_document(base_doc(verify_result={f"result_ref{i}": comp for i in (10, 2, 1)}))
    assert [c.name for c in r.verify.comparisons] == ["result_ref1", "result_ref2",
                                                      "result_ref10"]


@pytest.mark.parametrize(("confidence", "text", "strictest"), [
    (50.0, "fails 1e-3", None),
    (62.0, "passes 1e-3, fails 1e-4", "1e-3"),
    (74.5, "passes 1e-5, fails 1e-6", "1e-5"),
    (90.0, "passes 1e-6", "1e-6"),
])
def test_threshold_bands(confidence: float, text: str, strictest: str | None) -> None:
    c = Comparison("result_faceid", confidence,
                   {"1e-3": 62, "1e-4": 69, "1e-5": 74, "1e-6": 78})
    assert c.band().describe() == text
    assert c.band().strictest_passed == strictest


def test_elide_and_restore_round_trip() -> None:
    doc = generate_result(5, status="OK", procedure_type="selfie")
    r = parse_document(doc)
    elided = elide_images(doc)
    assert "base64" not in json.dumps(elided)
    payloads = {img.sha256: img.data for img in r.all_images()}
    restored = parse_document(restore_images(elided, payloads))
    assert {k: v.sha256 for k, v in restored.images.items()} == {
        k: v.sha256 for k, v in r.images.items()}
    # Everything but the images is unchanged, in order.
    assert list(elided) == list(doc)
    assert {k: v for k, v in elided.items() if k not in ("images", "multifaces_image")} == {
        k: v for k, v in doc.items() if k not in ("images", "multifaces_image")}


# ------------------------------------------------------------------ properties

KNOWN_TOP = {"request_id", "status", "fail_reason", "biz_info", "time_used", "idcard_info",
             "liveness_result", "verify_result", "images", "multifaces_tag", "multifaces_image"}

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                               max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(sorted(KNOWN_TOP - {"biz_info"})) | st.text(max_size=15)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, json_value, max_size=8), json_value)
def test_parser_never_crashes_and_never_drops_a_top_level_field(extra: dict, biz: object) -> None:
    doc = {**extra, "biz_info": {"biz_id": "1,x", "extra_bit": biz}}
    r = parse_document(doc)
    assert isinstance(r, GetResult)
    for key in doc:
        assert key in KNOWN_TOP or key in r.extra, key
    assert r.biz_info.extra.get("extra_bit") == biz


@settings(max_examples=200, deadline=None)
@given(json_value)
def test_arbitrary_json_either_parses_or_is_refused_cleanly(value: object) -> None:
    try:
        parse_bytes(json.dumps(value))
    except DocumentError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=12), json_value, max_size=6))
def test_nested_unknown_fields_are_kept(junk: dict) -> None:
    doc = base_doc(liveness_result={"result": "PASS", **junk},
                   verify_result={"error_message": None, **junk},
                   idcard_info={"idcard_mode": "1", **junk})
    r = parse_document(doc)
    for obj in (r.liveness, r.verify, r.idcard_info):
        if obj is None:
            continue  # a junk key shadowed a known one with a non-object: flagged instead
        kept_as = {c.name for c in getattr(obj, "comparisons", ())}
        for k in junk:
            assert k in obj.extra or hasattr(obj, k) or k in _aliases() or k in kept_as, k


def _aliases() -> set[str]:
    # Keys consumed under another attribute name.
    return {"liveness_result", "details", "face_genuineness", "id_exceptions", "front_side",
            "back_side", "idcard_uneditable_field", "idcard_uneditable_feild", "result",
            "thresholds", "confidence"} | {k for k in vocab.DETAIL_MEANING} | {
            f"result_{s}" for s in ("faceid", "idcard_photo", "idcard_datasource")}


def test_loads_document_reports_position() -> None:
    with pytest.raises(DocumentError, match="line 2"):
        loads_document(b'{"a": 1,\n oops}')


def test_truncated_inside_a_string_is_called_truncated() -> None:
    with pytest.raises(DocumentError, match=r"ends early \(truncated\?\)\.$"):
        loads_document(b'{"status": "OK", "biz_info": {"biz_id": "1,abc')
