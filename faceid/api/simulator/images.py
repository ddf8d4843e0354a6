"""Small synthetic JPEG images for the FaceID simulator, drawn locally with Pillow.

The pictures are cartoons (ellipse faces, card outlines), not photographs: they only have to be
real, decodable JPEGs of realistic size and orientation so that the dashboard's image pipeline is
exercised. Everything is deterministic from a seed and cached, because a demo batch asks for the
same images several times (one per read) and hundreds of cases must generate in seconds.
Text uses ``ImageFont.load_default()`` and ASCII only, so no system font is ever needed.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

PORTRAIT_SIZE = (240, 320)  # phone camera frames
LANDSCAPE_SIZE = (320, 240)  # multi-face frame
CARD_SIZE = (320, 202)  # ID-1 card aspect ratio (85.6 mm x 54 mm)
JPEG_QUALITY = 80

RGB = tuple[int, int, int]

_SKIN: tuple[RGB, ...] = (
    (241, 206, 180), (232, 190, 160), (222, 178, 142), (205, 160, 125), (188, 140, 105),
)
_HAIR: tuple[RGB, ...] = ((25, 20, 18), (45, 32, 25), (70, 50, 35), (20, 20, 30), (90, 70, 60))
_BACKDROPS: tuple[RGB, ...] = (
    (205, 215, 225), (225, 220, 205), (190, 205, 190), (215, 200, 210), (180, 195, 215),
    (235, 235, 235), (200, 190, 175),
)
_SHIRTS: tuple[RGB, ...] = (
    (40, 60, 110), (120, 30, 40), (30, 90, 70), (70, 70, 70), (200, 200, 205),
)


@dataclass(frozen=True)
class _Palette:
    skin: RGB
    hair: RGB
    backdrop: RGB
    shirt: RGB


def _palette(rng: random.Random) -> _Palette:
    return _Palette(rng.choice(_SKIN), rng.choice(_HAIR), _jitter(rng, rng.choice(_BACKDROPS)),
                    rng.choice(_SHIRTS))


def _jitter(rng: random.Random, colour: RGB, amount: int = 12) -> RGB:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)
    return (r, g, b)


def _darker(colour: RGB, factor: float = 0.75) -> RGB:
    r, g, b = (int(c * factor) for c in colour)
    return (r, g, b)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _ascii(text: str) -> str:
    # The default font has no CJK glyphs; and the bitmap fallback cannot even encode them.
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _backdrop(size: tuple[int, int], colour: RGB) -> Image.Image:
    """A soft vertical gradient, so frames look lit rather than flat."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    width, height = size
    for y in range(0, height, 8):
        shade = 1.0 - 0.18 * y / height
        draw.rectangle((0, y, width, y + 8), fill=_darker(colour, shade))
    return image


def _draw_face(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], palette: _Palette,
               turn: float = 0.0) -> None:
    """Draw head, hair, shoulders and features inside ``box``.

    ``turn`` in [-1, 1] slides the features sideways and narrows the far eye, which is enough
    for a "side face" selfie to look different from the frontal one.
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    cx = (left + right) / 2
    # Shoulders first, so the head overlaps them.
    draw.ellipse((left - width * 0.35, bottom - height * 0.08, right + width * 0.35,
                  bottom + height * 0.9), fill=palette.shirt)
    draw.rectangle((cx - width * 0.14, bottom - height * 0.2, cx + width * 0.14,
                    bottom + height * 0.05), fill=_darker(palette.skin, 0.92))
    draw.ellipse((left, top - height * 0.06, right, top + height * 0.55), fill=palette.hair)
    if turn:  # a turned head shows one ear, on the side away from the turn
        ear_x = cx - turn / abs(turn) * width * 0.42
        draw.ellipse((ear_x - width * 0.08, top + height * 0.38, ear_x + width * 0.08,
                      top + height * 0.6), fill=_darker(palette.skin, 0.93))
    draw.ellipse((left + width * 0.06, top + height * 0.05, right - width * 0.06, bottom),
                 fill=palette.skin)
    _draw_features(draw, box, palette, turn)


def _draw_features(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                   palette: _Palette, turn: float) -> None:
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    shift = turn * width * 0.3
    eye_y = top + height * 0.45
    eye_w, eye_h = width * 0.12, height * 0.05
    for side in (-1, 1):
        ex = (left + right) / 2 + side * width * 0.2 + shift
        # The eye on the far side of a turned head is foreshortened.
        scale = 1.0 - max(0.0, side * turn) * 0.7 if turn else 1.0
        draw.ellipse((ex - eye_w * scale, eye_y - eye_h, ex + eye_w * scale, eye_y + eye_h),
                     fill=(250, 250, 250))
        draw.ellipse((ex - eye_h * scale, eye_y - eye_h, ex + eye_h * scale, eye_y + eye_h),
                     fill=(40, 30, 25))
        draw.line((ex - eye_w * scale, eye_y - eye_h * 2.6, ex + eye_w * scale,
                   eye_y - eye_h * 2.9),
                  fill=palette.hair, width=3)
    nose_x = (left + right) / 2 + shift * 1.4
    draw.polygon([(nose_x, eye_y + height * 0.04), (nose_x - width * 0.06 + shift * 0.3,
                  eye_y + height * 0.18), (nose_x + width * 0.04, eye_y + height * 0.18)],
                 fill=_darker(palette.skin, 0.85))
    mouth_y = top + height * 0.78
    mouth_x = (left + right) / 2 + shift
    draw.chord((mouth_x - width * 0.14, mouth_y - height * 0.05, mouth_x + width * 0.14,
                mouth_y + height * 0.05), 0, 180, fill=(170, 70, 75))


def _portrait(seed: int, turn: float) -> Image.Image:
    rng = random.Random(seed)
    palette = _palette(rng)
    image = _backdrop(PORTRAIT_SIZE, palette.backdrop)
    draw = ImageDraw.Draw(image)
    width, height = PORTRAIT_SIZE
    face_w = int(width * rng.uniform(0.42, 0.52))
    cx = width // 2 + rng.randint(-12, 12)
    top = int(height * rng.uniform(0.18, 0.26))
    _draw_face(draw, (cx - face_w // 2, top, cx + face_w // 2, top + int(face_w * 1.3)), palette,
               turn)
    return image


@functools.lru_cache(maxsize=1024)
def best_frame_jpeg(seed: int) -> bytes:
    """The liveness "image_best": one frontal face on a plain background."""
    return _encode(_portrait(seed, turn=0.0))


@functools.lru_cache(maxsize=1024)
def selfie_front_jpeg(seed: int) -> bytes:
    """Selfie procedure, frontal photo (image_face_front)."""
    return _encode(_portrait(seed ^ 0x5E1F, turn=0.0))


@functools.lru_cache(maxsize=1024)
def selfie_side_jpeg(seed: int) -> bytes:
    """Selfie procedure, turned-head photo (image_face_side); same person as the front one."""
    direction = 1 if seed % 2 else -1
    return _encode(_portrait(seed ^ 0x5E1F, turn=0.8 * direction))


@functools.lru_cache(maxsize=512)
def multiface_jpeg(seed: int) -> bytes:
    """A frame with two or three faces (multifaces_image)."""
    rng = random.Random(seed ^ 0x3F)
    image = _backdrop(LANDSCAPE_SIZE, _jitter(rng, rng.choice(_BACKDROPS)))
    draw = ImageDraw.Draw(image)
    width, height = LANDSCAPE_SIZE
    count = rng.choice((2, 2, 3))
    slot = width // count
    for index in range(count):
        face_w = int(slot * rng.uniform(0.45, 0.6))
        cx = slot * index + slot // 2 + rng.randint(-8, 8)
        top = int(height * rng.uniform(0.15, 0.35))
        _draw_face(draw, (cx - face_w // 2, top, cx + face_w // 2, top + int(face_w * 1.3)),
                   _palette(rng), turn=rng.uniform(-0.4, 0.4))
    return _encode(image)


def _card_base(rng: random.Random) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", CARD_SIZE, _jitter(rng, (120, 110, 100), 20))  # the table behind
    draw = ImageDraw.Draw(image)
    tint = _jitter(rng, (236, 240, 246), 8)
    draw.rounded_rectangle((6, 6, CARD_SIZE[0] - 7, CARD_SIZE[1] - 7), radius=12, fill=tint,
                           outline=(170, 180, 200), width=2)
    for y in range(20, CARD_SIZE[1] - 20, 14):  # guilloche-like security lines
        draw.arc((-80, y - 60, CARD_SIZE[0] + 80, y + 60), 200, 340, fill=_darker(tint, 0.93))
    return image, draw


@functools.lru_cache(maxsize=1024)
def idcard_front_jpeg(seed: int, id_number: str = "") -> bytes:
    """ID card portrait side: text lines on the left, portrait on the right, number below."""
    rng = random.Random(seed ^ 0x1DF)
    image, draw = _card_base(rng)
    font, small = _font(12), _font(10)
    for row, label in enumerate(("NAME", "SEX", "BORN", "ADDRESS", "")):
        y = 24 + row * 24
        draw.text((20, y), label, fill=(90, 110, 150), font=small)
        draw.line((80, y + 8, 80 + rng.randint(50, 110), y + 8), fill=(60, 60, 60), width=4)
    # Draw the portrait on its own tile so the shoulders are cropped by the photo frame.
    photo = Image.new("RGB", (90, 118), _jitter(rng, (245, 245, 245), 6))
    _draw_face(ImageDraw.Draw(photo), (16, 16, 74, 92), _palette(rng))
    image.paste(photo, (206, 22))
    draw.text((20, 160), "CITIZEN ID NO.", fill=(90, 110, 150), font=small)
    draw.text((110, 158), _ascii(id_number) or "000000000000000000", fill=(20, 20, 20), font=font)
    return _encode(image)


@functools.lru_cache(maxsize=1024)
def idcard_back_jpeg(seed: int, valid_date: str = "") -> bytes:
    """ID card emblem side: a star emblem, a title bar and the validity line."""
    rng = random.Random(seed ^ 0xBAC)
    image, draw = _card_base(rng)
    font, small = _font(12), _font(10)
    draw.ellipse((22, 20, 88, 86), fill=(200, 40, 40))
    _draw_star(draw, (55, 53), 24, (250, 210, 60))
    draw.rectangle((108, 34, 296, 52), fill=(200, 40, 40))
    draw.text((112, 37), "RESIDENT IDENTITY CARD", fill=(255, 255, 255), font=small)
    draw.text((20, 128), "AUTHORITY", fill=(90, 110, 150), font=small)
    draw.line((100, 136, 100 + rng.randint(90, 170), 136), fill=(60, 60, 60), width=4)
    draw.text((20, 156), "VALID", fill=(90, 110, 150), font=small)
    text = valid_date.replace("长期", "PERMANENT")
    draw.text((100, 154), _ascii(text) or "2015.05.15-2035.05.15", fill=(20, 20, 20), font=font)
    return _encode(image)


def _draw_star(draw: ImageDraw.ImageDraw, centre: tuple[int, int], radius: int,
               colour: RGB) -> None:
    points = []
    for index in range(10):
        angle = math.pi / 2 + index * math.pi / 5
        r = radius if index % 2 == 0 else radius * 0.4
        points.append((centre[0] + r * math.cos(angle), centre[1] - r * math.sin(angle)))
    draw.polygon(points, fill=colour)


def data_uri(jpeg: bytes, *, space: bool = False) -> str:
    """Encode JPEG bytes as FaceID does; ``space=True`` mimics the page's "data: image/jpeg"."""
    prefix = "data: image/jpeg;base64," if space else "data:image/jpeg;base64,"
    return prefix + base64.b64encode(jpeg).decode("ascii")
