"""Typed model of a ``GET /faceid/lite/get_result`` response: frozen value objects, each keeping
what it did not recognise in ``extra``; ``GetResult.flags`` lists what did not fit the page.
Built by the tolerant parser, ``faceid.api.parse`` (its docstring has the rules)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faceid.api import vocab
from faceid.api.images import DecodedImage


@dataclass(frozen=True, slots=True)
class Flag:
    """Something in the document that did not fit the page; shown to the reviewer."""

    path: str
    problem: str
    raw: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" + (f" (got {self.raw})" if self.raw else "")


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True, slots=True)
class BizInfo:
    biz_id: str
    biz_no: str | None = None
    biz_extra_data: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Birthday:
    year: str | None = None
    month: str | None = None
    day: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def iso(self) -> str | None:
        if not (self.year and self.month and self.day):
            return None
        try:
            return f"{int(self.year):04d}-{int(self.month):02d}-{int(self.day):02d}"
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class OcrResult:
    """One side's OCR (fields differ by side; both are optional)."""

    name: str | None = None
    gender: str | None = None
    race: str | None = None
    birthday: Birthday | None = None
    address: str | None = None
    id_card_number: str | None = None
    issued_by: str | None = None
    valid_date: str | None = None
    #: Legality scores keyed as received (the page has "Temporary ID Photo " with a space).
    legality: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def legality_normalised(self) -> dict[str, float | None]:
        """Legality keyed by stripped name, so "Temporary ID Photo " reads as its label."""
        return {k.strip(): v for k, v in self.legality.items()}


@dataclass(frozen=True, slots=True)
class CardSide:
    ocr_result: OcrResult | None = None
    upload_times: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OcrFieldQuality:
    """lite 2.0 per-field check: ``quality`` in [0, 1]; ``logic`` 0 means consistent."""

    quality: float | None = None
    logic: int | None = None
    result: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def is_low(self, threshold: float = 0.8) -> bool:
        return (self.quality is not None and self.quality < threshold) or bool(self.logic)


@dataclass(frozen=True, slots=True)
class IdCardInfo:
    idcard_mode: str | None = None
    idcard_mode_user: str | None = None
    #: Fields the user could not edit (from idcard_uneditable_field or the page's "feild").
    uneditable_fields: tuple[str, ...] = ()
    idcard_number: str | None = None
    idcard_name: str | None = None
    idcard_valid_date: str | None = None
    idcard_issued_by: str | None = None
    front_side: CardSide | None = None
    back_side: CardSide | None = None
    ocr_front_quality: dict[str, OcrFieldQuality] = field(default_factory=dict)
    ocr_back_quality: dict[str, OcrFieldQuality] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Signal:
    """A fake-face signal: flagged when ``confidence`` is above ``threshold`` (the page's rule)."""

    name: str
    label: str
    confidence: float | None
    threshold: float | None

    @property
    def exceeded(self) -> bool:
        return (
            self.confidence is not None
            and self.threshold is not None
            and self.confidence > self.threshold
        )


@dataclass(frozen=True, slots=True)
class Genuineness:
    signals: tuple[Signal, ...] = ()
    face_replaced: int | None = None
    selfie_inconsistent: str | None = None
    selfie_metadata_inconsistent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def exceeded(self) -> list[Signal]:
        return [s for s in self.signals if s.exceeded]


@dataclass(frozen=True, slots=True)
class Liveness:
    result: str | None = None
    procedure_type: str | None = None
    still_type: str | None = None
    #: Flat counters (video, still, flash, meglive_flash).
    details: dict[str, int | None] = field(default_factory=dict)
    #: Selfie counters, per photo.
    face_front: dict[str, int | None] = field(default_factory=dict)
    face_side: dict[str, int | None] = field(default_factory=dict)
    genuineness: Genuineness | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        return {"PASS": True, "FAIL": False}.get(self.result or "")

    def counter_set(self) -> str | None:
        """The key of ``vocab.DETAIL_COUNTERS`` documenting this liveness's flat counters."""
        if self.procedure_type == "still":
            return f"still:{self.still_type}" if self.still_type else None
        return self.procedure_type


@dataclass(frozen=True, slots=True)
class Band:
    """Where a confidence stands against the four thresholds."""

    passed: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def strictest_passed(self) -> str | None:
        return self.passed[-1] if self.passed else None

    def describe(self) -> str:
        if not self.passed and not self.failed:
            return "no thresholds"
        parts = []
        if self.passed:
            parts.append(f"passes {self.passed[-1]}")
        if self.failed:
            parts.append(f"fails {self.failed[0]}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One face comparison (result_faceid, result_refN, result_idcard_photo, ...)."""

    name: str
    confidence: float | None
    thresholds: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def band(self) -> Band:
        """Which thresholds the confidence reaches. Higher confidence = lower risk (the page)."""
        passed: list[str] = []
        failed: list[str] = []
        for key in vocab.THRESHOLD_KEYS:
            t = self.thresholds.get(key)
            if t is None or self.confidence is None:
                continue
            (passed if self.confidence >= t else failed).append(key)
        return Band(tuple(passed), tuple(failed))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    error_message: str | None = None
    comparisons: tuple[Comparison, ...] = ()
    id_attacked: int | None = None
    id_photo_monochrome: int | None = None
    verify_time: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def comparison(self, name: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.name == name), None)

    @property
    def faceid(self) -> Comparison | None:
        return self.comparison("result_faceid")


@dataclass(frozen=True, slots=True)
class GetResult:
    """One parsed get_result response. ``flags`` lists what did not fit the page."""

    biz_info: BizInfo
    request_id: str | None = None
    status: str | None = None
    fail_reason: str | None = None
    time_used: int | None = None
    idcard_info: IdCardInfo | None = None
    liveness: Liveness | None = None
    verify: VerifyResult | None = None
    #: kind -> image ("best", "idcard_front", ...). Only images that were sent.
    images: dict[str, DecodedImage] = field(default_factory=dict)
    multifaces_tag: str | None = None
    multifaces_image: DecodedImage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    flags: tuple[Flag, ...] = ()

    @property
    def biz_id(self) -> str:
        return self.biz_info.biz_id

    def all_images(self) -> Iterator[DecodedImage]:
        yield from self.images.values()
        if self.multifaces_image is not None:
            yield self.multifaces_image

    @property
    def verify_time(self) -> int | None:
        return self.verify.verify_time if self.verify else None


# --------------------------------------------------------------------------- raw document


