"""The liveness part of a simulated case: which attack, the per-procedure detail counters
(upload-based vs on-screen prompts, as the page lists them) and the fake-face signals against
their threshold."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from faceid.api.simulator.choices import (
    GENUINENESS_THRESHOLD,
    MEGLIVE_FLASH_COUNTERS,
    SELFIE_FRONT_COUNTERS,
    SELFIE_SIDE_COUNTERS,
    STILL_IGNORED,
    UPLOAD_COUNTERS,
    WEBRTC_COUNTERS,
    r3,
)


def pick_attack(rng: random.Random, ptype: str, still_type: str | None) -> str:
    kinds = ["synthetic_face", "mask", "screen_replay"]
    if ptype == "video" or still_type == "STILL_RECORD":
        kinds.append("face_replaced")
    if ptype == "selfie":
        kinds += ["selfie_inconsistent", "selfie_metadata"]
    return rng.choice(kinds)


def details(rng: random.Random, ptype: str, still_type: str | None,
             failed: bool) -> dict[str, Any]:
    if ptype == "selfie":
        return {"face_front": _upload_counters(rng, SELFIE_FRONT_COUNTERS, failed),
                "face_side": _upload_counters(rng, SELFIE_SIDE_COUNTERS, failed)}
    if ptype == "video" or still_type == "STILL_RECORD":
        ignored = STILL_IGNORED if ptype == "still" else frozenset()
        return _upload_counters(rng, UPLOAD_COUNTERS, failed, ignored)
    names = MEGLIVE_FLASH_COUNTERS if ptype == "meglive_flash" else WEBRTC_COUNTERS
    return _prompt_counters(rng, names, failed)


def _upload_counters(rng: random.Random, names: Sequence[str], failed: bool,
                     ignored: frozenset[str] = frozenset()) -> dict[str, int]:
    """Upload-based flows: every rejected upload bumps one error counter.

    A passing flow's last upload succeeded, so errors = uploads - 1; a failed flow's uploads
    were all rejected.
    """
    errors = rng.randint(2, 5) if failed else rng.choice((0, 0, 0, 0, 1, 1, 2, 3))
    counters = dict.fromkeys(names, 0)
    upload_key, error_keys = names[0], [n for n in names[1:] if n not in ignored]
    counters[upload_key] = errors if failed else errors + 1
    for _ in range(errors):
        counters[rng.choice(error_keys)] += 1
    return counters


def _prompt_counters(rng: random.Random, names: Sequence[str], failed: bool) -> dict[str, int]:
    """Live (webRTC/flash) flows: counts of on-screen prompts; a failure shows one spike."""
    counters = {name: rng.choice((0, 0, 0, 0, 0, 0, 1, 1, 2, 3)) for name in names}
    if failed:
        counters[rng.choice(names)] += rng.randint(4, 12)
    return counters


def genuineness(rng: random.Random, ptype: str, still_type: str | None,
                 attack: str | None) -> dict[str, Any]:
    def confidence(kind: str) -> float:
        if attack == kind:
            return r3(rng.uniform(0.55, 0.99))
        return r3(rng.random() ** 3 * 0.45)  # mostly near zero, never over the threshold

    genuineness: dict[str, Any] = {}
    for kind in ("synthetic_face", "mask", "screen_replay"):
        genuineness[f"{kind}_confidence"] = confidence(kind)
        genuineness[f"{kind}_threshold"] = GENUINENESS_THRESHOLD
    if ptype == "video" or still_type == "STILL_RECORD":  # page: only still-record or video
        genuineness["face_replaced"] = 1 if attack == "face_replaced" else 0
    if ptype == "selfie":
        genuineness["selfie_inconsistent"] = "1" if attack == "selfie_inconsistent" else "0"
        if rng.random() < 0.85:  # absent with liveness_preferences=selfie_no_metadata_check
            metadata = rng.choice(("1", "2")) if attack == "selfie_metadata" else "0"
            genuineness["selfie_metadata_inconsistent"] = metadata
    return genuineness
