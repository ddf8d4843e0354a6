"""The raw document as the store keeps it: every image payload replaced by ``sha256:<hex>``
(``elide_images``), and put back from the image table when needed (``restore_images``)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from faceid.api.images import decode_data_uri

IMAGE_REF_PREFIX = "sha256:"


def elide_images(doc: Mapping[str, Any], known: Mapping[str, str] | None = None
                 ) -> dict[str, Any]:
    """The document as received, with each image payload replaced by ``sha256:<hex>``.

    This is what the store keeps as the raw response: every other key and value is unchanged,
    in the received order, and ``restore_images`` puts the payloads back from the image table.
    ``known`` maps a response key ("image_best", "multifaces_image") to the sha256 the parser
    already computed, so the payload is not decoded twice.
    """
    known = known or {}
    out = dict(doc)
    images = doc.get("images")
    if isinstance(images, Mapping):
        out["images"] = {k: _ref(v, known.get(k)) for k, v in images.items()}
    if "multifaces_image" in doc:
        out["multifaces_image"] = _ref(doc["multifaces_image"], known.get("multifaces_image"))
    return out


def _ref(value: Any, sha256: str | None = None) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if sha256:
        return IMAGE_REF_PREFIX + sha256
    img = decode_data_uri("x", value)
    if img is None or img.data is None:
        # Undecodable payloads are kept verbatim: they are evidence, and small enough to matter
        # less than losing them.
        return value
    return IMAGE_REF_PREFIX + (img.sha256 or "")


def restore_images(doc: Mapping[str, Any], payloads: Mapping[str, bytes]) -> dict[str, Any]:
    """Inverse of ``elide_images`` given sha256 -> JPEG bytes (for re-export and re-parse)."""
    def back(v: Any) -> Any:
        if isinstance(v, str) and v.startswith(IMAGE_REF_PREFIX) and v[7:] in payloads:
            return "data:image/jpeg;base64," + base64.b64encode(payloads[v[7:]]).decode()
        return v

    out = dict(doc)
    if isinstance(doc.get("images"), Mapping):
        out["images"] = {k: back(v) for k, v in doc["images"].items()}
    if "multifaces_image" in doc:
        out["multifaces_image"] = back(doc["multifaces_image"])
    return out
