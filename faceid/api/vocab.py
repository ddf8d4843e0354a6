"""The closed vocabularies of the get_result page, each with its plain-language meaning.

The parser keeps a value it does not find here (FaceID may add one) and flags it; these tables
are what a reviewer reads next to the value. Wording follows the page, translated.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    PROCESSING = "PROCESSING"
    WEBRTC_UNSUPPORTED = "WEBRTC_UNSUPPORTED"
    OK = "OK"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"


STATUS_MEANING: dict[str, str] = {
    "NOT_STARTED": "Token issued, but the user never opened the verification page.",
    "PROCESSING": "The user is still going through the verification.",
    "WEBRTC_UNSUPPORTED": "Failed because the user's browser does not support the camera flow.",
    "OK": "The flow finished normally. This does NOT mean the person passed: read the scores.",
    "FAILED": "The flow did not finish or hit an error (in flash mode: the mirror step was not "
    "passed within 30 s).",
    "CANCELLED": "The user cancelled the verification.",
    "TIMEOUT": "The verification timed out.",
}

#: Statuses where the page says idcard_info / liveness_result / verify_result are never returned.
STATUSES_WITHOUT_RESULTS = frozenset({"NOT_STARTED", "PROCESSING"})


class FailReason(StrEnum):
    NETWORK_ERROR = "NETWORK_ERROR"
    PERMISSIONS_ERROR = "PERMISSIONS_ERROR"
    SUPPORT_ERROR = "SUPPORT_ERROR"


FAIL_REASON_MEANING: dict[str, str] = {
    "NETWORK_ERROR": "The user's device could not connect (network problem).",
    "PERMISSIONS_ERROR": "The user refused camera permission, or the browser/app cannot open "
    "the camera.",
    "SUPPORT_ERROR": "The browser does not support the WebRTC API.",
}


class ProcedureType(StrEnum):
    VIDEO = "video"
    SELFIE = "selfie"
    STILL = "still"
    FLASH = "flash"
    MEGLIVE_FLASH = "meglive_flash"


PROCEDURE_MEANING: dict[str, str] = {
    "video": "Selfie video with speech (lip-reading liveness).",
    "selfie": "Two selfies, one front and one side.",
    "still": "Silent liveness from a short face video.",
    "flash": "Colour-flash liveness.",
    "meglive_flash": "MegLive flash (action + flash) liveness.",
}


class StillType(StrEnum):
    STILL_RECORD = "STILL_RECORD"
    STILL_WEBRTC = "STILL_WEBRTC"


STILL_TYPE_MEANING: dict[str, str] = {
    "STILL_RECORD": "Silent liveness by a recorded video upload.",
    "STILL_WEBRTC": "Silent liveness by a real-time WebRTC stream.",
}


class LivenessVerdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"


#: Every detail counter on the page, with what one count means.
DETAIL_MEANING: dict[str, str] = {
    "UPLOAD_TIMES": "Liveness videos uploaded",
    "FACE_NOT_FOUND": "Times no face was found",
    "LOW_FACE_QUALITY": "Times the face quality was too poor",
    "INVALID_VIDEO_DURATION": "Times the video length was wrong",
    "SR_ERROR": "Times speech recognition did not match (ignore for silent liveness)",
    "NOT_SYNCHRONIZED": "Times lip movement did not match the speech (ignore for silent liveness)",
    "NO_AUDIO": "Times the video had no sound",
    "VIDEO_FORMAT_UNSUPPORTED": "Times the video format was wrong",
    "VIDEO_FACE_INCONSISTENT": "Different faces appeared in the video",
    "SIDE_FACE": "Times the face was turned sideways",
    "UPDOWN_FACE": "Times the face was tilted up or down",
    "EYE_OCCLUSION": "Times the eyes were covered",
    "MOUTH_OCCLUSION": "Times the mouth was covered",
    "AWAY_FROM_CAMERA": "Times the face was too far from the camera",
    "CLOSE_TO_CAMERA": "Times the face was too close to the camera",
    "FACE_OUT_OF_CAMERA": "Times the user did not look at the camera",
    "HIGH_BRIGHTNESS": "Times the light was too bright",
    "LOW_BRIGHTNESS": "Times the light was too dark",
    "ACTION_FAIL": "Times a requested action failed",
    # selfie: per photo (face_front / face_side)
    "FACE_UPLOAD_TIMES": "Photos uploaded",
    "FACE_BLURRED": "Times the face was too blurred",
    "FACE_MULTIPLE_FACES": "Times more than one face was in the photo",
    "FACE_POOR_LIGHT": "Times the face was too bright or too dark",
    "FACE_NOT_FRONT": "Times the photo was not a frontal face",
    "FACE_NOT_SIDE": "Times the photo was not a side face",
    "FACE_NOT_PROPER_POSITION": "Times the face was badly positioned",
    "UNSUPPORTED_FORMAT": "Times the photo format was wrong",
}

_VIDEO_COUNTERS = (
    "UPLOAD_TIMES", "FACE_NOT_FOUND", "LOW_FACE_QUALITY", "INVALID_VIDEO_DURATION", "SR_ERROR",
    "NOT_SYNCHRONIZED", "NO_AUDIO", "VIDEO_FORMAT_UNSUPPORTED", "VIDEO_FACE_INCONSISTENT",
)
_REALTIME_COUNTERS = (
    "FACE_NOT_FOUND", "SIDE_FACE", "UPDOWN_FACE", "EYE_OCCLUSION", "MOUTH_OCCLUSION",
    "AWAY_FROM_CAMERA", "CLOSE_TO_CAMERA", "FACE_OUT_OF_CAMERA", "HIGH_BRIGHTNESS",
    "LOW_BRIGHTNESS", "LOW_FACE_QUALITY",
)
_SELFIE_COMMON = (
    "FACE_UPLOAD_TIMES", "FACE_NOT_FOUND", "FACE_BLURRED", "FACE_MULTIPLE_FACES",
    "FACE_POOR_LIGHT", "FACE_NOT_PROPER_POSITION", "UNSUPPORTED_FORMAT",
)

#: Which counters the page documents for each procedure (still splits by still_type).
DETAIL_COUNTERS: dict[str, tuple[str, ...]] = {
    "video": _VIDEO_COUNTERS,
    "still:STILL_RECORD": _VIDEO_COUNTERS,
    "still:STILL_WEBRTC": _REALTIME_COUNTERS,
    "flash": _REALTIME_COUNTERS,
    "meglive_flash": (*_REALTIME_COUNTERS, "ACTION_FAIL"),
    "selfie:face_front": (*_SELFIE_COMMON, "FACE_NOT_FRONT"),
    "selfie:face_side": (*_SELFIE_COMMON, "FACE_NOT_SIDE"),
}

#: Genuineness (fake-face) signals: confidence key, threshold key, meaning.
GENUINENESS_SIGNALS: tuple[tuple[str, str, str], ...] = (
    ("synthetic_face_confidence", "synthetic_face_threshold", "Synthetic (generated) face"),
    ("mask_confidence", "mask_threshold", "Mask"),
    ("screen_replay_confidence", "screen_replay_threshold", "Screen replay"),
)

SELFIE_INCONSISTENT_MEANING: dict[str, str] = {
    "0": "The two selfies show consistent content.",
    "1": "The two selfies are INCONSISTENT.",
}
SELFIE_METADATA_MEANING: dict[str, str] = {
    "0": "Photo metadata is consistent.",
    "1": "Photo metadata is INCONSISTENT between the two selfies.",
    "2": "A photo is not a JPEG (likely picked from the album, not taken as a selfie).",
}


class VerifyError(StrEnum):
    NO_SUCH_ID_NUMBER = "NO_SUCH_ID_NUMBER"
    ID_NUMBER_NAME_NOT_MATCH = "ID_NUMBER_NAME_NOT_MATCH"
    IMAGE_ERROR_UNSUPPORTED_FORMAT = "IMAGE_ERROR_UNSUPPORTED_FORMAT"
    NO_FACE_FOUND = "NO_FACE_FOUND"
    DATA_SOURCE_ERROR = "DATA_SOURCE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


VERIFY_ERROR_MEANING: dict[str, str] = {
    "NO_SUCH_ID_NUMBER": "No record of this ID number in the reference source (billed).",
    "ID_NUMBER_NAME_NOT_MATCH": "The ID number does not match the name given (billed).",
    "IMAGE_ERROR_UNSUPPORTED_FORMAT": "Name and number are right, but the reference image could "
    "not be used (billed).",
    "NO_FACE_FOUND": "No face was found in the image (billed).",
    "DATA_SOURCE_ERROR": "The reference data source failed. FaceID advises stopping business and "
    "contacting them.",
    "INTERNAL_ERROR": "FaceID internal error during comparison; retry, and contact FaceID if it "
    "persists.",
}

#: Verify errors the page marks as billed: with these, images are still returned.
BILLED_VERIFY_ERRORS = frozenset(
    {"NO_SUCH_ID_NUMBER", "ID_NUMBER_NAME_NOT_MATCH", "IMAGE_ERROR_UNSUPPORTED_FORMAT",
     "NO_FACE_FOUND"}
)

IDCARD_MODE_USER_MEANING: dict[str, str] = {
    "0": "The user typed the ID card details by hand.",
    "1": "The user photographed the ID card portrait side.",
}

MULTIFACES_MEANING: dict[str, str] = {"0": "Single face", "1": "Multiple faces"}

#: The legality scores of an ID card photo, keyed by the normalised (stripped) name.
LEGALITY_MEANING: dict[str, str] = {
    "ID Photo": "Genuine ID card photo",
    "Temporary ID Photo": "Temporary ID card",
    "Photocopy": "Photocopy",
    "Screen": "Photo of a screen",
    "Edited": "Edited image",
}

#: The four risk levels of the face-compare thresholds, loosest first.
THRESHOLD_KEYS: tuple[str, ...] = ("1e-3", "1e-4", "1e-5", "1e-6")
THRESHOLD_MEANING: dict[str, str] = {
    "1e-3": "false-accept risk 1 in 1,000",
    "1e-4": "false-accept risk 1 in 10,000",
    "1e-5": "false-accept risk 1 in 100,000",
    "1e-6": "false-accept risk 1 in 1,000,000",
}

#: Image kinds: storage name -> response key, in the order a reviewer looks at them.
IMAGE_KEYS: dict[str, str] = {
    "best": "image_best",
    "idcard_front": "image_idcard_front",
    "idcard_back": "image_idcard_back",
    "face_front": "image_face_front",
    "face_side": "image_face_side",
}
MULTIFACES_KIND = "multifaces"
IMAGE_LABELS: dict[str, str] = {
    "best": "Best liveness frame",
    "idcard_front": "ID card, portrait side",
    "idcard_back": "ID card, emblem side",
    "face_front": "Selfie, front",
    "face_side": "Selfie, side",
    "multifaces": "Frame with several faces",
}


def meaning(table: dict[str, str], value: str | None) -> str:
    """Plain meaning of ``value`` in ``table``, or an honest 'unknown' for new values."""
    if value is None or value == "":
        return "—"
    return table.get(value, f"Unknown value {value!r} (not on the FaceID page).")
