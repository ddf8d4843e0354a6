"""The vocabulary of simulated cases: the values the get_result page allows (statuses,
procedure types, detail counters, error codes, thresholds, image keys), the weights the demo
draws them with, the hostile strings, and the seeded-random helpers every part of a case uses.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import TypeVar

STATUSES = ("NOT_STARTED", "PROCESSING", "WEBRTC_UNSUPPORTED", "OK", "FAILED", "CANCELLED",
            "TIMEOUT")
STATUS_WEIGHTS = (0.035, 0.035, 0.035, 0.75, 0.065, 0.045, 0.035)
PROCEDURE_TYPES = ("video", "still", "selfie", "flash", "meglive_flash")
PROCEDURE_WEIGHTS = (0.15, 0.3, 0.15, 0.15, 0.25)
STILL_TYPES = ("STILL_RECORD", "STILL_WEBRTC")
FAIL_REASONS = ("NETWORK_ERROR", "PERMISSIONS_ERROR", "SUPPORT_ERROR")
IDCARD_MODES = ("0", "1", "2", "3", "4")
IDCARD_MODE_WEIGHTS = (0.12, 0.2, 0.43, 0.1, 0.15)

# Detail counters, named exactly as on the page for each procedure type.
UPLOAD_COUNTERS = (  # video, and still with STILL_RECORD
    "UPLOAD_TIMES", "FACE_NOT_FOUND", "LOW_FACE_QUALITY", "INVALID_VIDEO_DURATION", "SR_ERROR",
    "NOT_SYNCHRONIZED", "NO_AUDIO", "VIDEO_FORMAT_UNSUPPORTED", "VIDEO_FACE_INCONSISTENT",
)
WEBRTC_COUNTERS = (  # still with STILL_WEBRTC, and flash
    "FACE_NOT_FOUND", "SIDE_FACE", "UPDOWN_FACE", "EYE_OCCLUSION", "MOUTH_OCCLUSION",
    "AWAY_FROM_CAMERA", "CLOSE_TO_CAMERA", "FACE_OUT_OF_CAMERA", "HIGH_BRIGHTNESS",
    "LOW_BRIGHTNESS", "LOW_FACE_QUALITY",
)
MEGLIVE_FLASH_COUNTERS = (*WEBRTC_COUNTERS, "ACTION_FAIL")
SELFIE_FRONT_COUNTERS = (
    "FACE_UPLOAD_TIMES", "FACE_NOT_FOUND", "FACE_BLURRED", "FACE_MULTIPLE_FACES",
    "FACE_POOR_LIGHT", "FACE_NOT_FRONT", "FACE_NOT_PROPER_POSITION", "UNSUPPORTED_FORMAT",
)
SELFIE_SIDE_COUNTERS = (
    "FACE_UPLOAD_TIMES", "FACE_NOT_FOUND", "FACE_BLURRED", "FACE_MULTIPLE_FACES",
    "FACE_POOR_LIGHT", "FACE_NOT_SIDE", "FACE_NOT_PROPER_POSITION", "UNSUPPORTED_FORMAT",
)
# Still-record counters the page marks "静默活体可忽略": always zero for still.
STILL_IGNORED = frozenset({"SR_ERROR", "NOT_SYNCHRONIZED"})

GENUINENESS_THRESHOLD = 0.5
# Realistic fixed reference thresholds (same for every comparison, as FaceID returns them).
THRESHOLDS: dict[str, float] = {"1e-3": 62.169, "1e-4": 69.315, "1e-5": 74.399, "1e-6": 78.038}
BILLED_VERIFY_ERRORS = ("NO_SUCH_ID_NUMBER", "ID_NUMBER_NAME_NOT_MATCH",
                        "IMAGE_ERROR_UNSUPPORTED_FORMAT", "NO_FACE_FOUND")
VERIFY_ERRORS = (*BILLED_VERIFY_ERRORS, "DATA_SOURCE_ERROR", "INTERNAL_ERROR")
LEGALITY_KEYS = ("ID Photo", "Temporary ID Photo ", "Photocopy", "Screen", "Edited")
IMAGE_KEYS = ("image_best", "image_idcard_front", "image_idcard_back", "image_face_front",
              "image_face_side")

# Attacker-controlled text used when hostile=True (spreadsheet formulas, HTML, Markdown, controls).
HOSTILE_NAME = '=HYPERLINK("http://x","a")'
HOSTILE_ADDRESS = "<script>alert(1)</script>[click](http://evil) <img src=x onerror=alert(1)>"
HOSTILE_ISSUED_BY = "+cmd|' /C calc'!A0"
HOSTILE_RACE = "@SUM(1+1)"
HOSTILE_EXTRA = ("-2+3", "\tTAB", "\rCR", "@SUM(1+1)")

# Cases are spread over the 30 days before this instant; fixed so output is deterministic.
ANCHOR_TS = 1_760_000_000
BATCH_STRIDE = 1_000_003

T = TypeVar("T")


def pick(rng: random.Random, options: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(options, weights=weights, k=1)[0]


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def r3(value: float) -> float:
    return round(value, 3)
