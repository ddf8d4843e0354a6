"""Deterministic generator of FaceID Lite ``GET /faceid/lite/get_result`` responses.

``generate_result`` returns what FaceID would answer to the *first* read of a case with
``return_image=4``, ``return_verify_time=1``, ``get_fail_reason=1`` and
``return_multifaces_tag=1``: the simulator (``backend.shape_response``) trims it per request.

Field names, counter names and quirks follow the get_result page literally, including the ones a
parser must survive (``idcard_uneditable_feild``, the legality key ``"Temporary ID Photo "`` with a
trailing space, ``"data: image/jpeg;base64,..."``, biz_ids containing a comma).

Modelling choices the page leaves open (documented so reviewers of the demo know):
- idcard_mode "0" none, "1" portrait side photographed, "2" both sides photographed, "3" typed
  in by hand, "4" user's choice (``idcard_mode_user`` "0" typed, "1" portrait side photographed).
  ``idcard_valid_date``/``idcard_issued_by``/``back_side`` only exist when the back was shot.
- Images follow the page's rule: only when liveness passed and a verify_result exists whose
  error_message is null or a billed error.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from faceid.api.simulator import images
from faceid.api.simulator.choices import (
    ANCHOR_TS,
    BATCH_STRIDE,
    BILLED_VERIFY_ERRORS,
    FAIL_REASONS,
    HOSTILE_ADDRESS,
    HOSTILE_EXTRA,
    HOSTILE_ISSUED_BY,
    HOSTILE_NAME,
    HOSTILE_RACE,
    IDCARD_MODE_WEIGHTS,
    IDCARD_MODES,
    LEGALITY_KEYS,
    PROCEDURE_TYPES,
    PROCEDURE_WEIGHTS,
    STATUS_WEIGHTS,
    STATUSES,
    STILL_TYPES,
    THRESHOLDS,
    VERIFY_ERRORS,
    pick,
    r3,
    uuid4,
)
from faceid.api.simulator.liveness import details, genuineness, pick_attack
from faceid.api.simulator.people import Person, make_person, other_id_number, similar_name

# --- top level ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Case:
    """Decisions shared by the parts of one response."""

    rng: random.Random
    person: Person
    status: str
    hostile: bool
    started: int
    image_seed: int


def generate_result(seed: int, biz_id: str | None = None, *, status: str | None = None,
                    procedure_type: str | None = None, hostile: bool = False,
                    anchor: int | None = None, spread_s: int | None = None) -> dict[str, Any]:
    """Return the full get_result response for one simulated case, deterministic in ``seed``.

    Cases start up to 30 days before the fixed ``ANCHOR_TS`` (repeatable output), or, given an
    ``anchor`` (unix time, e.g. now), up to 20 hours before it: demo cases must still be inside
    FaceID's 1-day read window, which the desk computes from the biz_id's leading timestamp.
    ``spread_s`` overrides how far before the anchor a case may start.
    """
    _check_choice("status", status, STATUSES)
    _check_choice("procedure_type", procedure_type, PROCEDURE_TYPES)
    rng = random.Random(seed)
    if status is None:
        # Hostile cases exist to exercise OCR rendering, so they must carry OCR text.
        status = "OK" if hostile else pick(rng, STATUSES, STATUS_WEIGHTS)
    person = make_person(rng)
    case = _Case(rng, _hostile_person(person) if hostile else person, status, hostile,
                 _start(rng, anchor, spread_s), rng.getrandbits(31))
    biz_id = biz_id or f"{case.started},{uuid4(rng)}"
    result: dict[str, Any] = {
        "request_id": f"{case.started + rng.randint(900, 3600)},{uuid4(rng)}",
        "status": status,
        "biz_info": _biz_info(case, biz_id),
    }
    if status == "WEBRTC_UNSUPPORTED":
        result["fail_reason"] = rng.choice(FAIL_REASONS)
    result.update(_outcome(case, procedure_type))
    result["time_used"] = rng.randint(40, 400)
    return result


def _start(rng: random.Random, anchor: int | None, spread_s: int | None) -> int:
    if anchor is None:
        return ANCHOR_TS - rng.randrange(spread_s or 30 * 86400)
    return anchor - rng.randrange(spread_s or 20 * 3600)


def generate_batch(n: int, seed: int = 0, *, status: str | None = None,
                   procedure_type: str | None = None, hostile: bool = False,
                   hostile_rate: float = 0.0, anchor: int | None = None) -> list[dict[str, Any]]:
    """``n`` cases with distinct seeds derived from ``seed``.

    ``hostile_rate`` mixes in a fraction of hostile cases (useful for demos); ``hostile=True``
    makes every case hostile.
    """
    mixer = random.Random(seed ^ 0x7A11)
    cases = []
    for index in range(n):
        is_hostile = hostile or mixer.random() < hostile_rate
        cases.append(generate_result(seed * BATCH_STRIDE + index, status=status,
                                     procedure_type=procedure_type, hostile=is_hostile,
                                     anchor=anchor))
    return cases


def _check_choice(name: str, value: str | None, allowed: Sequence[str]) -> None:
    if value is not None and value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _hostile_person(person: Person) -> Person:
    return dataclasses.replace(person, name=HOSTILE_NAME, address=HOSTILE_ADDRESS,
                               issued_by=HOSTILE_ISSUED_BY, race=HOSTILE_RACE)


def _biz_info(case: _Case, biz_id: str) -> dict[str, str]:
    rng = case.rng
    if case.hostile:
        payloads = list(HOSTILE_EXTRA)
        rng.shuffle(payloads)  # vary which payload leads the cell across a batch
        extra = " ".join(payloads)
    else:
        extra = rng.choice(("", "", '{"channel":"app","branch":"SH-021"}',
                            f"order={rng.randint(10**7, 10**8 - 1)}",
                            f"loan-application:{rng.randint(1000, 99999)}"))
    return {"biz_extra_data": extra, "biz_id": biz_id, "biz_no": uuid4(rng)}


# --- which parts exist ----------------------------------------------------------------------


def _stages(case: _Case) -> tuple[bool, bool]:
    """(idcard step reached, liveness step reached) for the case's status."""
    rng = case.rng
    if case.status in ("NOT_STARTED", "PROCESSING"):
        return False, False  # the page: none of idcard_info/liveness/verify is returned
    if case.status == "WEBRTC_UNSUPPORTED":
        return case.hostile or rng.random() < 0.3, False
    if case.status == "OK":
        return True, True
    # FAILED / CANCELLED / TIMEOUT: the user stopped somewhere along the way.
    stage = rng.choice(("nothing", "idcard", "liveness"))
    if case.hostile and stage == "nothing":
        stage = "idcard"
    return stage != "nothing", stage == "liveness"


def _outcome(case: _Case, procedure_type: str | None) -> dict[str, Any]:
    rng = case.rng
    idcard_reached, liveness_reached = _stages(case)
    mode = "2" if case.hostile else pick(rng, IDCARD_MODES, IDCARD_MODE_WEIGHTS)
    part: dict[str, Any] = {}
    front = back = False
    if idcard_reached and mode != "0":
        part["idcard_info"], front, back = _idcard_info(case, mode)
    multifaces = False
    if liveness_reached:
        ptype = procedure_type or pick(rng, PROCEDURE_TYPES, PROCEDURE_WEIGHTS)
        liveness, attacked = _liveness(case, ptype)
        part["liveness_result"] = liveness
        verify = _maybe_verify(case, liveness, attacked, front)
        if verify is not None:
            part["verify_result"] = verify
            if _images_returned(liveness, verify):
                part["images"] = _images(case, ptype, front, back)
        multifaces = rng.random() < 0.07
    part["multifaces_tag"] = "1" if multifaces else "0"
    part["multifaces_image"] = (images.data_uri(images.multiface_jpeg(case.image_seed))
                                if multifaces else "")
    return part


def _images_returned(liveness: dict[str, Any], verify: dict[str, Any]) -> bool:
    # The page: images only when liveness passed and the comparison ended in a billed outcome.
    return liveness["result"] == "PASS" and verify.get("error_message") in (
        None, *BILLED_VERIFY_ERRORS)


# --- idcard_info ----------------------------------------------------------------------------


def _idcard_info(case: _Case, mode: str) -> tuple[dict[str, Any], bool, bool]:
    """Build idcard_info; also say whether the portrait (front) and emblem (back) were shot."""
    rng, person = case.rng, case.person
    info: dict[str, Any] = {"idcard_mode": mode}
    front, back = mode in ("1", "2"), mode == "2"
    if mode == "4":
        info["idcard_mode_user"] = rng.choice(("0", "1"))
        front = info["idcard_mode_user"] == "1"
    uneditable = [f for f in ("idcard_number", "idcard_name", "idcard_valid_date")
                  if rng.random() < 0.4]
    # The page's own example spells the key "feild"; emit both spellings so parsers handle both.
    key = "idcard_uneditable_feild" if rng.random() < 0.25 else "idcard_uneditable_field"
    info[key] = ",".join(uneditable)
    info["idcard_number"] = person.id_number
    info["idcard_name"] = person.name
    if back:
        info["idcard_valid_date"] = person.valid_date
        info["idcard_issued_by"] = person.issued_by
    if front and not case.hostile and rng.random() < 0.15:
        _apply_user_edit(rng, person, info, uneditable)
    if front:
        info["front_side"] = {"ocr_result": _front_ocr(rng, person),
                              "upload_times": rng.choice((1, 1, 1, 2, 3))}
        if rng.random() < 0.85:  # "lite2.0 only"
            info["ocr_front_quality"] = _front_quality(rng, person)
    if back:
        info["back_side"] = {"ocr_result": _back_ocr(rng, person),
                             "upload_times": rng.choice((1, 1, 1, 2, 3))}
        if rng.random() < 0.85:
            info["ocr_back_quality"] = _back_quality(rng, person)
    return info, front, back


def _apply_user_edit(rng: random.Random, person: Person, info: dict[str, Any],
                     uneditable: list[str]) -> None:
    """Make one confirmed field differ from the OCR read, as if the user corrected it."""
    editable = [f for f in ("idcard_number", "idcard_name", "idcard_valid_date",
                            "idcard_issued_by") if f in info and f not in uneditable]
    if not editable:
        return
    field = rng.choice(editable)
    if field == "idcard_number":
        info[field] = other_id_number(rng, person)
    elif field == "idcard_name":
        info[field] = similar_name(rng, person.name)
    elif field == "idcard_valid_date":
        start = person.valid_start.replace(day=min(28, person.valid_start.day % 28 + 1))
        info[field] = dataclasses.replace(person, valid_start=start).valid_date
    else:  # users often shorten the authority to the city bureau, as in the page's example
        info[field] = person.issued_by.split("局")[0] + "局"


def _legality(rng: random.Random) -> dict[str, float]:
    """Legality scores summing to ~1; mostly a genuine card, sometimes a copy or a screen."""
    kind = pick(rng, LEGALITY_KEYS, (0.86, 0.02, 0.05, 0.05, 0.02))
    main = rng.uniform(0.72, 0.99)
    rest = [rng.random() for _ in range(len(LEGALITY_KEYS) - 1)]
    scale = (1.0 - main) / (sum(rest) or 1.0)
    others = iter(r * scale for r in rest)
    return {key: r3(main if key == kind else next(others)) for key in LEGALITY_KEYS}


def _front_ocr(rng: random.Random, person: Person) -> dict[str, Any]:
    return {
        "address": person.address,
        "birthday": person.birthday,
        "gender": person.gender,
        "id_card_number": person.id_number,
        "name": person.name,
        "race": person.race,
        "legality": _legality(rng),
    }


def _back_ocr(rng: random.Random, person: Person) -> dict[str, Any]:
    return {"issued_by": person.issued_by, "valid_date": person.valid_date,
            "legality": _legality(rng)}


def _quality_block(rng: random.Random, results: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per-field quality/logic/result; about one case in six has one or two poor fields."""
    poor: set[str] = set()
    if rng.random() < 0.17:
        poor = set(rng.sample(sorted(results), k=rng.choice((1, 1, 2))))
    block = {}
    for name, value in results.items():
        low = name in poor
        quality = rng.uniform(0.3, 0.69) if low else rng.uniform(0.9, 0.999)
        logic = 1 if low and rng.random() < 0.4 else 0
        block[name] = {"quality": r3(quality), "logic": logic, "result": value}
    return block


def _front_quality(rng: random.Random, person: Person) -> dict[str, dict[str, Any]]:
    birth = person.birthday
    return _quality_block(rng, {
        "gender": person.gender, "address": person.address, "idcard_number": person.id_number,
        "name": person.name, "birth_month": birth["month"], "birth_day": birth["day"],
        "nationality": person.race, "birth_year": birth["year"],
    })


def _back_quality(rng: random.Random, person: Person) -> dict[str, dict[str, Any]]:
    end = "长期" if person.valid_end is None else f"{person.valid_end:%Y%m%d}"
    return _quality_block(rng, {"issued_by": person.issued_by, "valid_date_end": end,
                                "valid_date_start": f"{person.valid_start:%Y%m%d}"})


# --- liveness_result ------------------------------------------------------------------------


def _liveness(case: _Case, ptype: str) -> tuple[dict[str, Any], bool]:
    """Return (liveness_result, attack detected by face_genuineness)."""
    rng = case.rng
    still_type = rng.choice(STILL_TYPES) if ptype == "still" else None
    # Users abandoning or failing mid-flow never pass; OK cases fail on counters now and then.
    counters_fail = case.status != "OK" or rng.random() < 0.07
    attack = pick_attack(rng, ptype, still_type) if rng.random() < 0.11 else None
    # fmp_mode "1" reports PASS despite a detected cloud attack; the scores still show it.
    attack_fails = attack is not None and rng.random() < 0.8
    result = "FAIL" if counters_fail or attack_fails else "PASS"
    liveness: dict[str, Any] = {"result": result, "procedure_type": ptype}
    if still_type:
        liveness["still_type"] = still_type
    liveness["details"] = details(rng, ptype, still_type, counters_fail)
    liveness["face_genuineness"] = genuineness(rng, ptype, still_type, attack)
    return liveness, attack is not None


# --- verify_result --------------------------------------------------------------------------


def _maybe_verify(case: _Case, liveness: dict[str, Any], attacked: bool,
                  front: bool) -> dict[str, Any] | None:
    """Comparison runs when a usable face was captured: not after a counter-driven failure."""
    if case.status != "OK":
        return None
    counter_failure = liveness["result"] == "FAIL" and not attacked
    if counter_failure:
        return None
    impostor = (attacked and case.rng.random() < 0.6) or case.rng.random() < 0.03
    return _verify_result(case, front, impostor)


def _verify_result(case: _Case, front: bool, impostor: bool) -> dict[str, Any]:
    rng = case.rng
    datasource = rng.random() < 0.9  # comparison_type 1; otherwise only image_ref comparisons
    error = rng.choice(VERIFY_ERRORS) if datasource and rng.random() < 0.12 else None
    base = _confidence(rng, impostor)
    verify: dict[str, Any] = {"error_message": error}
    if datasource and error is None:
        verify["result_faceid"] = _score(base)
    ref_count = rng.choice((0, 0, 0, 1, 1, 2)) if datasource else rng.choice((1, 2))
    for index in range(1, ref_count + 1):
        verify[f"result_ref{index}"] = _score(_near(rng, base))
    if front:
        verify["result_idcard_photo"] = _score(_near(rng, base))
    if datasource and error is None:
        if front:
            verify["result_idcard_datasource"] = _score(_near(rng, rng.uniform(75, 95)))
        verify["id_exceptions"] = {"id_attacked": int(rng.random() < 0.03),
                                   "id_photo_monochrome": int(rng.random() < 0.08)}
    verify["verify_time"] = case.started + rng.randint(20, 600)
    return verify


def _confidence(rng: random.Random, impostor: bool) -> float:
    """Spread around the thresholds: some below 1e-3, many between, some above 1e-6."""
    if impostor:
        return rng.uniform(8.0, THRESHOLDS["1e-3"] + 3)
    band = rng.random()
    if band < 0.12:
        return rng.uniform(35.0, THRESHOLDS["1e-3"])
    if band < 0.65:
        return rng.uniform(THRESHOLDS["1e-3"], THRESHOLDS["1e-6"])
    return rng.uniform(THRESHOLDS["1e-6"], 96.0)


def _near(rng: random.Random, value: float) -> float:
    return min(100.0, max(0.0, value + rng.gauss(0.0, 3.0)))


def _score(confidence: float) -> dict[str, Any]:
    return {"confidence": r3(confidence), "thresholds": dict(THRESHOLDS)}


# --- images ---------------------------------------------------------------------------------


def _images(case: _Case, ptype: str, front: bool, back: bool) -> dict[str, str]:
    # The page's own example writes "data: image/jpeg"; produce that form now and then.
    space = case.rng.random() < 0.15
    seed = case.image_seed
    found: dict[str, str] = {}
    if ptype == "selfie":
        found["image_face_front"] = images.data_uri(images.selfie_front_jpeg(seed), space=space)
        found["image_face_side"] = images.data_uri(images.selfie_side_jpeg(seed), space=space)
    else:
        found["image_best"] = images.data_uri(images.best_frame_jpeg(seed), space=space)
    if front:
        jpeg = images.idcard_front_jpeg(seed, case.person.id_number)
        found["image_idcard_front"] = images.data_uri(jpeg, space=space)
    if back:
        jpeg = images.idcard_back_jpeg(seed, case.person.valid_date)
        found["image_idcard_back"] = images.data_uri(jpeg, space=space)
    return found
