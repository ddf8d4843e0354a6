"""Masking of personal data shown on screen (OWASP ASVS 14.2.6).

Everything a reviewer sees is masked by default; the clear value is shown only after an
explicit, audited reveal (``ReviewService.reveal_pii``). The masks keep just enough to tell two
people apart at a glance (surname, region prefix of the ID number, birth year).

FaceID itself may send numbers already masked (``xxxxxx19910602xxxx``): masking them again is
harmless.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from faceid.access.permissions import GRANTS, Permission, allowed

MASK = "*"

#: Roles that may reveal masked personal data, read from the permission table (auditors check
#: the process, not identities). Kept as a name because ``faceid.reports.export`` documents it.
REVEAL_ROLES = frozenset(role.value for role in GRANTS[Permission.REVEAL_PII])


def can_reveal(role: str) -> bool:
    return allowed(role, Permission.REVEAL_PII)


def mask_id_number(value: str | None) -> str | None:
    """Keep the first 3 and last 2 characters: ``110101199003071234`` -> ``110*************34``."""
    if value is None:
        return None
    s = value.strip()
    if len(s) <= 6:
        # Too short to keep anything and still hide most of it.
        return MASK * len(s)
    return s[:3] + MASK * (len(s) - 5) + s[-2:]


def mask_name(value: str | None) -> str | None:
    """First character, the rest starred: ``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``."""
    if value is None:
        return None
    s = value.strip()
    if not s:
        return s
    return s[0] + MASK * max(1, len(s) - 1)


def mask_address(value: str | None, keep: int = 6) -> str | None:
    """The first few characters (province/city), the rest starred to a fixed length."""
    if value is None:
        return None
    s = value.strip()
    if not s:
        return s
    keep = min(keep, len(s) // 2)
    # A fixed-length tail: the address length would otherwise hint at the street.
    return s[:keep] + MASK * 6


def mask_birthday(value: str | None) -> str | None:
    """Keep the year only: ``1991-06-02`` -> ``1991-**-**``; anything else is fully masked."""
    if value is None:
        return None
    s = value.strip()
    if len(s) >= 4 and s[:4].isdigit():
        return s[:4] + "-**-**"
    return MASK * len(s)


def mask_part(value: str | None) -> str | None:
    """A month or day of birth on its own."""
    if value is None:
        return None
    return MASK * max(1, len(str(value)))


#: OCR / confirmed field name -> masker. Names follow get_result (ocr_result, idcard_info and
#: the ocr_*_quality keys).
FIELD_MASKS = {
    "name": mask_name,
    "idcard_name": mask_name,
    "id_card_number": mask_id_number,
    "idcard_number": mask_id_number,
    "address": mask_address,
    "birthday": mask_birthday,
    "birth_month": mask_part,
    "birth_day": mask_part,
}


def mask_field(field: str, value: str | None) -> str | None:
    """Mask ``value`` if ``field`` is personal data; other fields pass through unchanged."""
    masker = FIELD_MASKS.get(field)
    return masker(value) if masker and isinstance(value, str) else value


def mask_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a raw get_result document with its personal data masked.

    Covers every place the page puts a name, ID number, address or birthday: the confirmed
    values, both sides' OCR and the lite 2.0 per-field quality ``result`` echoes.
    """
    out = copy.deepcopy(dict(doc))
    info = out.get("idcard_info")
    if not isinstance(info, dict):
        return out
    for key in ("idcard_name", "idcard_number"):
        if isinstance(info.get(key), str):
            info[key] = mask_field(key, info[key])
    for side in ("front_side", "back_side"):
        s = info.get(side)
        ocr = s.get("ocr_result") if isinstance(s, dict) else None
        if not isinstance(ocr, dict):
            continue
        for key in ("name", "id_card_number", "address"):
            if isinstance(ocr.get(key), str):
                ocr[key] = mask_field(key, ocr[key])
        bd = ocr.get("birthday")
        if isinstance(bd, dict):
            for part in ("month", "day"):
                if part in bd:
                    bd[part] = mask_part(str(bd[part]))
        elif isinstance(bd, str):
            ocr["birthday"] = mask_birthday(bd)
    for quality in ("ocr_front_quality", "ocr_back_quality"):
        q = info.get(quality)
        if not isinstance(q, dict):
            continue
        for key, entry in q.items():
            if isinstance(entry, dict) and isinstance(entry.get("result"), str):
                entry["result"] = mask_quality_result(key, entry["result"])
    return out


#: ocr_*_quality keys that echo personal data in their ``result``.
_QUALITY_PII = {"name": "name", "idcard_number": "idcard_number", "address": "address",
                "birth_month": "birth_month", "birth_day": "birth_day"}


def mask_quality_result(quality_key: str, value: str | None) -> str | None:
    field = _QUALITY_PII.get(quality_key)
    return mask_field(field, value) if field else value
