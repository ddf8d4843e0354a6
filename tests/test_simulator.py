"""The built-in FaceID simulator: generated data and the HTTP API, checked against the page.

Names below are copied from the get_result page on purpose (not imported from the simulator), so
that a typo in the simulator cannot hide behind the same typo in the test.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from faceid.api.simulator import (
    FakeClock,
    SimServer,
    SimulatorState,
    generate_batch,
    generate_result,
    is_valid_id_number,
    shape_response,
    start_in_thread,
)

API = "/faceid/lite/get_result"
KEY, SECRET = "test-key", "s3cr3t-XYZZY-0042"

STATUSES = {"NOT_STARTED", "PROCESSING", "WEBRTC_UNSUPPORTED", "OK", "FAILED", "CANCELLED",
            "TIMEOUT"}
PROCEDURES = {"video", "still", "selfie", "flash", "meglive_flash"}
VIDEO_KEYS = {"UPLOAD_TIMES", "FACE_NOT_FOUND", "LOW_FACE_QUALITY", "INVALID_VIDEO_DURATION",
              "SR_ERROR", "NOT_SYNCHRONIZED", "NO_AUDIO", "VIDEO_FORMAT_UNSUPPORTED",
              "VIDEO_FACE_INCONSISTENT"}
WEBRTC_KEYS = {"FACE_NOT_FOUND", "SIDE_FACE", "UPDOWN_FACE", "EYE_OCCLUSION", "MOUTH_OCCLUSION",
               "AWAY_FROM_CAMERA", "CLOSE_TO_CAMERA", "FACE_OUT_OF_CAMERA", "HIGH_BRIGHTNESS",
               "LOW_BRIGHTNESS", "LOW_FACE_QUALITY"}
SELFIE_FRONT_KEYS = {"FACE_UPLOAD_TIMES", "FACE_NOT_FOUND", "FACE_BLURRED", "FACE_MULTIPLE_FACES",
                     "FACE_POOR_LIGHT", "FACE_NOT_FRONT", "FACE_NOT_PROPER_POSITION",
                     "UNSUPPORTED_FORMAT"}
SELFIE_SIDE_KEYS = (SELFIE_FRONT_KEYS - {"FACE_NOT_FRONT"}) | {"FACE_NOT_SIDE"}
LEGALITY = {"ID Photo", "Temporary ID Photo ", "Photocopy", "Screen", "Edited"}
FRONT_QUALITY = {"gender", "address", "idcard_number", "name", "birth_month", "birth_day",
                 "nationality", "birth_year"}
BACK_QUALITY = {"issued_by", "valid_date_end", "valid_date_start"}
THRESHOLD_KEYS = {"1e-3", "1e-4", "1e-5", "1e-6"}
BILLED = {"NO_SUCH_ID_NUMBER", "ID_NUMBER_NAME_NOT_MATCH", "IMAGE_ERROR_UNSUPPORTED_FORMAT",
          "NO_FACE_FOUND"}
ALL_IMAGES = {"image_best", "image_idcard_front", "image_idcard_back", "image_face_front",
              "image_face_side"}
ENVELOPE = {"error_message", "request_id", "time_used"}
# (forced code, HTTP status) straight from the page's two error tables.
PAGE_ERRORS = [
    ("RESULT_NOT_FOUND", 400), ("VIDEO_FACE_OCCLUDE", 400), ("AUTHENTICATION_ERROR", 403),
    ("AUTHORIZATION_ERROR:Denied.", 403), ("MESSAGE_ENCRYPTION_ERROR", 400),
    ("CONCURRENCY_LIMIT_EXCEEDED", 403), ("MISSING_ARGUMENTS:biz_id", 400),
    ("DATA_DESTROYED", 403), ("BAD_ARGUMENTS:return_image", 400), ("API_NOT_FOUND", 404),
    ("INTERNAL_ERROR", 500),
]


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> list[dict[str, Any]]:
    return generate_batch(300)


def find_case(predicate: Callable[[dict[str, Any]], bool], **kw: Any) -> dict[str, Any]:
    for seed in range(5000):
        result = generate_result(seed, **kw)
        if predicate(result):
            return result
    raise AssertionError("no generated case matches")


def passed_with_images(result: dict[str, Any]) -> bool:
    return "images" in result


def data_uris(result: dict[str, Any]) -> list[str]:
    uris = list((result.get("images") or {}).values())
    if result.get("multifaces_image"):
        uris.append(result["multifaces_image"])
    return uris


def decode_jpeg(uri: str) -> Image.Image:
    header, _, payload = uri.partition(",")
    assert header in ("data:image/jpeg;base64", "data: image/jpeg;base64")
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    assert image.format == "JPEG"
    image.load()
    return image


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[SimServer]:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, clock=clock)
    with start_in_thread(state) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def get(client: httpx.Client, server: SimServer, biz_id: str | None, **extra: str
        ) -> httpx.Response:
    params = {"api_key": KEY, "api_secret": SECRET, **extra}
    if biz_id is not None:
        params["biz_id"] = biz_id
    return client.get(server.base_url + API, params=params)


def assert_envelope(response: httpx.Response, code: str, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE
    assert body["error_message"] == code
    assert isinstance(body["time_used"], int)
    assert re.fullmatch(r"\d+,[0-9a-f-]{36}", body["request_id"])


# --- generated data -------------------------------------------------------------------------


def test_deterministic() -> None:
    assert generate_result(11) == generate_result(11)
    assert generate_batch(5, seed=2) == generate_batch(5, seed=2)
    assert generate_result(11) != generate_result(12)


def test_batch_covers_statuses_and_procedures(batch: list[dict[str, Any]]) -> None:
    statuses = Counter(r["status"] for r in batch)
    assert set(statuses) == STATUSES
    assert 0.65 <= statuses["OK"] / len(batch) <= 0.85
    procedures = {r["liveness_result"]["procedure_type"] for r in batch if "liveness_result" in r}
    assert procedures == PROCEDURES
    assert len({r["biz_info"]["biz_id"] for r in batch}) == len(batch)


def test_top_level_shape(batch: list[dict[str, Any]]) -> None:
    for result in batch:
        biz_id = result["biz_info"]["biz_id"]
        stamp, _, uid = biz_id.partition(",")
        assert stamp.isdigit() and len(stamp) == 10
        assert uuid.UUID(uid).version == 4
        assert set(result["biz_info"]) == {"biz_id", "biz_no", "biz_extra_data"}
        assert re.fullmatch(r"\d{10},[0-9a-f-]{36}", result["request_id"])
        assert isinstance(result["time_used"], int)
        assert result["multifaces_tag"] in ("0", "1")
        assert (result["multifaces_image"] != "") == (result["multifaces_tag"] == "1")
        if result["status"] in ("NOT_STARTED", "PROCESSING"):
            assert not {"idcard_info", "liveness_result", "verify_result", "images"} & set(result)
        if result["status"] == "WEBRTC_UNSUPPORTED":
            assert result["fail_reason"] in {"NETWORK_ERROR", "PERMISSIONS_ERROR", "SUPPORT_ERROR"}
        else:
            assert "fail_reason" not in result


def test_partial_results_for_interrupted_flows(batch: list[dict[str, Any]]) -> None:
    shapes = {frozenset(k for k in ("idcard_info", "liveness_result") if k in r)
              for r in batch if r["status"] in ("FAILED", "CANCELLED", "TIMEOUT")}
    assert frozenset({"idcard_info"}) in shapes  # idcard_info only
    assert frozenset() in shapes
    for result in batch:
        if result["status"] != "OK" and "liveness_result" in result:
            assert result["liveness_result"]["result"] == "FAIL"


def test_detail_counters_named_as_on_page(batch: list[dict[str, Any]]) -> None:
    seen = set()
    for result in batch:
        liveness = result.get("liveness_result")
        if not liveness:
            continue
        ptype, details = liveness["procedure_type"], liveness["details"]
        still_type = liveness.get("still_type")
        assert (still_type is not None) == (ptype == "still")
        if ptype == "video" or still_type == "STILL_RECORD":
            assert set(details) == VIDEO_KEYS
            assert details["UPLOAD_TIMES"] >= 1
        elif ptype in ("flash",) or still_type == "STILL_WEBRTC":
            assert set(details) == WEBRTC_KEYS
        elif ptype == "meglive_flash":
            assert set(details) == WEBRTC_KEYS | {"ACTION_FAIL"}
        else:
            assert ptype == "selfie"
            assert set(details) == {"face_front", "face_side"}
            assert set(details["face_front"]) == SELFIE_FRONT_KEYS
            assert set(details["face_side"]) == SELFIE_SIDE_KEYS
        seen.add(still_type or ptype)
        values = details.values() if ptype != "selfie" else [
            v for side in details.values() for v in side.values()]
        assert all(isinstance(v, int) and v >= 0 for v in values)
    assert seen == (PROCEDURES - {"still"}) | {"STILL_RECORD", "STILL_WEBRTC"}


def test_face_genuineness(batch: list[dict[str, Any]]) -> None:
    attacks = 0
    metadata_values = set()
    for result in batch:
        liveness = result.get("liveness_result")
        if not liveness:
            continue
        genuineness = liveness["face_genuineness"]
        for kind in ("synthetic_face", "mask", "screen_replay"):
            confidence = genuineness[f"{kind}_confidence"]
            assert 0 <= confidence <= 1
            assert genuineness[f"{kind}_threshold"] == 0.5
            attacks += confidence > 0.5
        replay_capable = (liveness["procedure_type"] == "video"
                          or liveness.get("still_type") == "STILL_RECORD")
        assert ("face_replaced" in genuineness) == replay_capable
        if replay_capable:
            assert genuineness["face_replaced"] in (0, 1)
        is_selfie = liveness["procedure_type"] == "selfie"
        assert ("selfie_inconsistent" in genuineness) == is_selfie
        if is_selfie:
            assert genuineness["selfie_inconsistent"] in ("0", "1")
            metadata_values.add(genuineness.get("selfie_metadata_inconsistent"))
        elif "selfie_metadata_inconsistent" in genuineness:
            raise AssertionError("selfie_metadata_inconsistent outside selfie")
    assert attacks > 0
    assert metadata_values <= {"0", "1", "2", None}


def test_idcard_info(batch: list[dict[str, Any]]) -> None:
    modes, keys, edited = Counter(), Counter(), 0
    for result in batch:
        info = result.get("idcard_info")
        if info is None:
            continue
        mode = info["idcard_mode"]
        modes[mode] += 1
        assert mode in ("1", "2", "3", "4")  # mode 0 never returns idcard_info
        assert ("idcard_mode_user" in info) == (mode == "4")
        keys.update(k for k in info if k.startswith("idcard_uneditable_f"))
        assert is_valid_id_number(info["idcard_number"])
        front = info.get("front_side")
        back = info.get("back_side")
        assert (back is not None) == ("idcard_valid_date" in info) == ("idcard_issued_by" in info)
        if front:
            ocr = front["ocr_result"]
            assert set(ocr) == {"address", "birthday", "gender", "id_card_number", "name", "race",
                                "legality"}
            assert set(ocr["birthday"]) == {"day", "month", "year"}
            assert set(ocr["legality"]) == LEGALITY
            assert front["upload_times"] >= 1
            birthday = ocr["birthday"]
            digits = ocr["id_card_number"][6:14]
            assert digits == f"{int(birthday['year']):04d}{int(birthday['month']):02d}" \
                             f"{int(birthday['day']):02d}"
            if "ocr_front_quality" in info:
                assert set(info["ocr_front_quality"]) == FRONT_QUALITY
                for field in info["ocr_front_quality"].values():
                    assert set(field) == {"quality", "logic", "result"}
            edited += (info["idcard_name"] != ocr["name"]
                       or info["idcard_number"] != ocr["id_card_number"])
        if back:
            assert set(back["ocr_result"]) == {"issued_by", "valid_date", "legality"}
            assert set(back["ocr_result"]["legality"]) == LEGALITY
            if "ocr_back_quality" in info:
                assert set(info["ocr_back_quality"]) == BACK_QUALITY
    assert set(modes) == {"1", "2", "3", "4"}
    assert keys["idcard_uneditable_field"] and keys["idcard_uneditable_feild"]
    assert edited > 0
    qualities = [f["quality"] for r in batch for f in
                 r.get("idcard_info", {}).get("ocr_front_quality", {}).values()]
    assert min(qualities) < 0.7 < max(qualities)


def test_verify_result(batch: list[dict[str, Any]]) -> None:
    confidences, errors, refs = [], Counter(), set()
    for result in batch:
        verify = result.get("verify_result")
        if verify is None:
            continue
        errors[verify["error_message"]] += 1
        assert isinstance(verify["verify_time"], int)
        for key, value in verify.items():
            if key.startswith("result_"):
                assert set(value["thresholds"]) == THRESHOLD_KEYS
                assert 0 <= value["confidence"] <= 100
                confidences.append(value["confidence"])
            if key.startswith("result_ref"):
                refs.add(key)
        if "id_exceptions" in verify:
            assert set(verify["id_exceptions"]) == {"id_attacked", "id_photo_monochrome"}
    assert errors[None] > 0.75 * sum(errors.values())
    assert len(errors) > 2
    assert refs == {"result_ref1", "result_ref2"}
    thresholds = batch_thresholds(batch)
    assert any(c < thresholds["1e-3"] for c in confidences)
    assert any(thresholds["1e-3"] <= c <= thresholds["1e-6"] for c in confidences)
    assert any(c > thresholds["1e-6"] for c in confidences)


def batch_thresholds(batch: list[dict[str, Any]]) -> dict[str, float]:
    for result in batch:
        faceid = result.get("verify_result", {}).get("result_faceid")
        if faceid:
            return faceid["thresholds"]
    raise AssertionError("no result_faceid in batch")


def test_images_follow_page_rule_and_decode(batch: list[dict[str, Any]]) -> None:
    spaced = 0
    for result in batch:
        liveness, verify = result.get("liveness_result"), result.get("verify_result")
        allowed = (liveness is not None and liveness["result"] == "PASS" and verify is not None
                   and (verify["error_message"] is None or verify["error_message"] in BILLED))
        assert ("images" in result) == allowed
        if allowed:
            selfie = liveness["procedure_type"] == "selfie"
            present = set(result["images"])
            assert ("image_best" in present) != selfie
            assert ({"image_face_front", "image_face_side"} <= present) == selfie
            assert ("image_idcard_front" in present) == ("front_side" in result.get(
                "idcard_info", {}))
        for uri in data_uris(result):
            spaced += uri.startswith("data: ")
            image = decode_jpeg(uri)
            assert 200 <= max(image.size) <= 400
    assert spaced > 0


def test_hostile_payloads() -> None:
    result = generate_result(3, hostile=True)
    info = result["idcard_info"]
    assert info["front_side"]["ocr_result"]["name"] == '=HYPERLINK("http://x","a")'
    assert "<script>" in info["front_side"]["ocr_result"]["address"]
    assert "[click](http://evil)" in info["front_side"]["ocr_result"]["address"]
    assert info["back_side"]["ocr_result"]["issued_by"] == "+cmd|' /C calc'!A0"
    extra = result["biz_info"]["biz_extra_data"]
    for payload in ("@SUM(1+1)", "-2+3", "\tTAB", "\rCR"):
        assert payload in extra
    leading = {generate_result(s, hostile=True)["biz_info"]["biz_extra_data"][0]
               for s in range(40)}
    assert leading == {"-", "\t", "\r", "@"}


def test_forced_status_and_procedure() -> None:
    for seed in range(10):
        result = generate_result(seed, status="OK", procedure_type="selfie")
        assert result["status"] == "OK"
        assert result["liveness_result"]["procedure_type"] == "selfie"
    with pytest.raises(ValueError):
        generate_result(1, status="DONE")


# --- HTTP: quota and expiry -----------------------------------------------------------------


def test_three_reads_then_destroyed(server: SimServer, client: httpx.Client) -> None:
    biz_id = server.state.add(generate_result(1, status="OK"))
    first = get(client, server, biz_id)
    assert first.status_code == 200
    assert first.json()["biz_info"]["biz_id"] == biz_id
    for _ in range(2):
        assert get(client, server, biz_id).status_code == 200
    assert_envelope(get(client, server, biz_id), "DATA_DESTROYED", 403)
    assert server.state.reads(biz_id) == 3
    assert server.state.over_quota_reads == 0


def test_expires_after_one_day(server: SimServer, client: httpx.Client,
                               clock: FakeClock) -> None:
    biz_id = server.state.add(generate_result(2))
    clock.advance(86399)
    assert get(client, server, biz_id).status_code == 200
    clock.advance(1)
    assert_envelope(get(client, server, biz_id), "DATA_DESTROYED", 403)
    assert server.state.reads(biz_id) == 1


def test_unknown_biz_id(server: SimServer, client: httpx.Client) -> None:
    assert_envelope(get(client, server, "1462259748,unknown"), "RESULT_NOT_FOUND", 400)


def test_comma_biz_id_round_trips(server: SimServer, client: httpx.Client) -> None:
    biz_id = server.state.add(generate_result(5))
    assert "," in biz_id
    url = f"{server.base_url}{API}?api_key={KEY}&api_secret={SECRET}&biz_id={biz_id}"
    assert client.get(url).status_code == 200  # raw, unencoded comma


# --- HTTP: arguments, auth, paths -----------------------------------------------------------


@pytest.mark.parametrize("missing", ["api_key", "api_secret", "biz_id"])
@pytest.mark.parametrize("blank", [False, True])
def test_missing_arguments(server: SimServer, client: httpx.Client, missing: str,
                           blank: bool) -> None:
    params = {"api_key": KEY, "api_secret": SECRET, "biz_id": "x"}
    if blank:
        params[missing] = ""
    else:
        del params[missing]
    response = client.get(server.base_url + API, params=params)
    assert_envelope(response, f"MISSING_ARGUMENTS:{missing}", 400)


@pytest.mark.parametrize(("name", "value"), [
    ("return_image", "7"), ("return_image", "x"), ("return_image", "-1"),
    ("return_verify_time", "2"), ("return_verify_time", "yes"),
])
def test_bad_arguments(server: SimServer, client: httpx.Client, name: str, value: str) -> None:
    biz_id = server.state.add(generate_result(4))
    assert_envelope(get(client, server, biz_id, **{name: value}), f"BAD_ARGUMENTS:{name}", 400)
    assert server.state.reads(biz_id) == 0


def test_authentication(server: SimServer, client: httpx.Client) -> None:
    biz_id = server.state.add(generate_result(4))
    bad_secret = client.get(server.base_url + API, params={
        "api_key": KEY, "api_secret": "nope", "biz_id": biz_id})
    assert_envelope(bad_secret, "AUTHENTICATION_ERROR", 403)
    bad_key = client.get(server.base_url + API, params={
        "api_key": "other", "api_secret": SECRET, "biz_id": biz_id})
    assert_envelope(bad_key, "AUTHENTICATION_ERROR", 403)
    assert server.state.reads(biz_id) == 0


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/faceid/lite/get_token"), ("GET", "/"), ("POST", API), ("PUT", API),
    ("DELETE", API),
])
def test_api_not_found(server: SimServer, client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, server.base_url + path,
                              params={"api_key": KEY, "api_secret": SECRET, "biz_id": "x"})
    assert_envelope(response, "API_NOT_FOUND", 404)


# --- HTTP: every error code -----------------------------------------------------------------


@pytest.mark.parametrize(("code", "status"), PAGE_ERRORS)
def test_every_error_code_reachable(server: SimServer, client: httpx.Client, code: str,
                                    status: int) -> None:
    biz_id = server.state.add(generate_result(6))
    server.state.fail_next(code)
    assert_envelope(get(client, server, biz_id), code, status)
    # Only an injected INTERNAL_ERROR may have been counted (internal_error_counts=True).
    assert server.state.reads(biz_id) == (1 if code == "INTERNAL_ERROR" else 0)
    assert get(client, server, biz_id).status_code == 200  # the forced error was used up


def test_internal_error_not_counted_when_disabled(client: httpx.Client) -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, internal_error_counts=False)
    with start_in_thread(state) as running:
        biz_id = state.add(generate_result(6))
        state.fail_next("INTERNAL_ERROR", n=2)
        for _ in range(2):
            assert_envelope(get(client, running, biz_id), "INTERNAL_ERROR", 500)
        assert state.reads(biz_id) == 0


def test_internal_error_rate_and_counting_respects_quota(client: httpx.Client) -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, internal_error_rate=1.0)
    with start_in_thread(state) as running:
        biz_id = state.add(generate_result(6))
        for _ in range(5):
            assert_envelope(get(client, running, biz_id), "INTERNAL_ERROR", 500)
        assert state.reads(biz_id) == 3  # counted, but never beyond the quota
        state.internal_error_rate = 0.0
        assert_envelope(get(client, running, biz_id), "DATA_DESTROYED", 403)


def test_fail_next_rejects_unknown_code() -> None:
    with pytest.raises(ValueError):
        SimulatorState().fail_next("NOT_A_CODE")


# --- HTTP: response selection ---------------------------------------------------------------


def test_return_image_selection_non_selfie(server: SimServer, client: httpx.Client) -> None:
    result = find_case(lambda r: passed_with_images(r)
                       and r["idcard_info"]["idcard_mode"] == "2",
                       status="OK", procedure_type="still")
    biz_id = result["biz_info"]["biz_id"]
    server.state.max_reads = 100
    server.state.add(result)
    expected = {
        "1": {"image_best"}, "2": {"image_idcard_front"}, "3": {"image_idcard_back"},
        "4": {"image_best", "image_idcard_front", "image_idcard_back"},
    }
    assert "images" not in get(client, server, biz_id).json()
    assert "images" not in get(client, server, biz_id, return_image="0").json()
    for mode, keys in expected.items():
        images = get(client, server, biz_id, return_image=mode).json()["images"]
        assert set(images) == keys
        for uri in images.values():
            decode_jpeg(uri)
    for mode, key in (("5", "image_face_front"), ("6", "image_face_side")):
        assert get(client, server, biz_id, return_image=mode).json()["images"] == {key: None}


def test_return_image_selection_selfie(server: SimServer, client: httpx.Client) -> None:
    result = find_case(lambda r: passed_with_images(r) and "idcard_info" not in r,
                       status="OK", procedure_type="selfie")
    biz_id = result["biz_info"]["biz_id"]
    server.state.max_reads = 100
    server.state.add(result)
    body = {m: get(client, server, biz_id, return_image=m).json() for m in "0123456"}
    assert "images" not in body["0"]
    assert body["1"]["images"] == {"image_best": None}
    assert body["2"]["images"] == {"image_idcard_front": None}
    assert set(body["4"]["images"]) == {"image_face_front", "image_face_side"}
    assert set(body["5"]["images"]) == {"image_face_front"}
    assert set(body["6"]["images"]) == {"image_face_side"}
    decode_jpeg(body["5"]["images"]["image_face_front"])
    decode_jpeg(body["6"]["images"]["image_face_side"])


def test_no_images_when_liveness_failed(server: SimServer, client: httpx.Client) -> None:
    result = find_case(lambda r: r["liveness_result"]["result"] == "FAIL"
                       and "verify_result" in r, status="OK")
    biz_id = server.state.add(result)
    assert "images" not in get(client, server, biz_id, return_image="4").json()


def test_return_verify_time(server: SimServer, client: httpx.Client) -> None:
    result = find_case(lambda r: "verify_result" in r, status="OK")
    biz_id = server.state.add(result)
    without = get(client, server, biz_id).json()["verify_result"]
    assert "verify_time" not in without
    explicit_zero = get(client, server, biz_id, return_verify_time="0").json()["verify_result"]
    assert "verify_time" not in explicit_zero
    with_time = get(client, server, biz_id, return_verify_time="1").json()["verify_result"]
    assert with_time["verify_time"] == result["verify_result"]["verify_time"]


def test_full_read_matches_generated(server: SimServer, client: httpx.Client) -> None:
    result = find_case(passed_with_images, status="OK")
    biz_id = server.state.add(result)
    body = get(client, server, biz_id, return_image="4", return_verify_time="1").json()
    strip = {"request_id", "time_used"}
    assert {k: v for k, v in body.items() if k not in strip} == {
        k: v for k, v in result.items() if k not in strip}
    assert server.state.result(biz_id) == result  # shaping never mutates the store


def test_multifaces_always_returned(server: SimServer, client: httpx.Client) -> None:
    result = find_case(lambda r: r["multifaces_tag"] == "1")
    biz_id = server.state.add(result)
    body = get(client, server, biz_id).json()
    assert body["multifaces_tag"] == "1"
    decode_jpeg(body["multifaces_image"])


def test_shape_response_unit() -> None:
    result = find_case(passed_with_images, status="OK", procedure_type="video")
    shaped = shape_response(result, return_image="1")
    assert set(shaped["images"]) == {"image_best"}
    assert "verify_time" not in shaped["verify_result"]
    assert "verify_time" in result["verify_result"]


# --- HTTP: concurrency ----------------------------------------------------------------------


def run_parallel(count: int, server: SimServer, biz_id: str) -> list[httpx.Response]:
    """``count`` simultaneous reads; httpx's pool opens one connection per concurrent request."""
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)
    shared = httpx.Client(timeout=10)  # thread-safe; building 16 clients costs more than the test

    def worker() -> None:
        barrier.wait()
        response = get(shared, server, biz_id)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    shared.close()
    return responses


def test_concurrency_limit(client: httpx.Client) -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=0.4, concurrency_limit=2,
                           max_reads=100)
    with start_in_thread(state) as running:
        biz_id = state.add(generate_result(8))
        responses = run_parallel(8, running, biz_id)
        codes = Counter(r.status_code for r in responses)
        assert codes[200] >= 1 and codes[403] >= 1 and codes[200] + codes[403] == 8
        for response in responses:
            if response.status_code == 403:
                assert_envelope(response, "CONCURRENCY_LIMIT_EXCEEDED", 403)
        assert state.reads(biz_id) == codes[200]  # rejected requests never count
        assert state.max_in_flight <= 2
        assert state.total_requests == 8


def test_parallel_reads_never_exceed_quota() -> None:
    state = SimulatorState(api_key=KEY, api_secret=SECRET, latency_s=0.05)
    with start_in_thread(state) as running:
        biz_id = state.add(generate_result(9))
        responses = run_parallel(16, running, biz_id)
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 3, 403: 13}
        assert state.over_quota_reads == 0
        assert state.reads_served[biz_id] == 3
        assert state.max_in_flight > 1


def test_stop_closes_keep_alive_connections(client: httpx.Client) -> None:
    running = start_in_thread(SimulatorState(api_key=KEY, api_secret=SECRET))
    biz_id = running.state.add(generate_result(12))
    assert get(client, running, biz_id).status_code == 200  # pooled, keep-alive connection
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(httpx.TransportError):
        get(client, running, biz_id)


# --- demo-only endpoints --------------------------------------------------------------------


def test_sim_endpoints(server: SimServer, client: httpx.Client) -> None:
    added = client.post(server.base_url + "/_sim/generate", params={"n": 3})
    assert added.status_code == 200
    biz_ids = added.json()["biz_ids"]
    assert len(biz_ids) == 3
    listing = client.get(server.base_url + "/_sim/biz_ids").json()
    assert [row["biz_id"] for row in listing] == biz_ids
    assert all(row["reads"] == 0 for row in listing)
    bad = client.post(server.base_url + "/_sim/generate", params={"n": "lots"})
    assert_envelope(bad, "BAD_ARGUMENTS:n", 400)
    again = client.post(server.base_url + "/_sim/generate", params={"n": 2}).json()["biz_ids"]
    assert not set(again) & set(biz_ids)


def test_add_generated(server: SimServer) -> None:
    biz_ids = server.state.add_generated(4, seed=9)
    assert server.state.biz_ids() == biz_ids
    assert all(server.state.reads(b) == 0 for b in biz_ids)


# --- logging never contains the secret ------------------------------------------------------


def raw_request(server: SimServer, request: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_logs_never_contain_secret(server: SimServer, client: httpx.Client,
                                   caplog: pytest.LogCaptureFixture,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="faceid.api.simulator")
    biz_id = server.state.add(generate_result(10))
    get(client, server, biz_id)
    get(client, server, "unknown")
    get(client, server, biz_id, return_image="9")
    client.get(server.base_url + "/elsewhere", params={"api_secret": SECRET})
    client.get(server.base_url + f"/{SECRET}")
    # Malformed request lines make the stdlib echo the raw line into its error path.
    # (The stdlib answers these HTTP/0.9-style, body only.)
    for line in (f"GET {API}?api_secret={SECRET} HTTP/9.9", f"GET {API}?api_secret={SECRET} x y"):
        reply = raw_request(server, f"{line}\r\n\r\n".encode())
        assert b'"error_message"' in reply
        assert SECRET.encode() not in reply
    raw_request(server, f"BREW {API}?api_secret={SECRET} HTTP/1.1\r\n\r\n".encode())
    raw_request(server, f"{SECRET} {API}?api_secret={SECRET} HTTP/1.1\r\n\r\n".encode())
    server.stop()
    out, err = capfd.readouterr()
    # Only the simulator's records: httpx's own INFO line does contain the secret (client side).
    text = "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("faceid.api.simulator"))
    assert SECRET not in text
    assert SECRET not in out + err
    assert f"GET {API} 200" in text
    assert f"GET {API} 400" in text
    assert "<other path>" in text
