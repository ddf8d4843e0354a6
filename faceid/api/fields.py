"""Tolerant reading of one JSON object of a get_result answer (``Fields``): typed getters
that keep what they can, flag what does not fit (``faceid.api.model.Flag``) and remember which
keys were read, so that the parser (``faceid.api.parse``) keeps the rest as ``extra``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from typing import Any

from faceid.api.model import Flag


def short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class Fields:
    """Reads one JSON object, remembering which keys were consumed and flagging misfits."""

    def __init__(self, data: Mapping[str, Any], path: str, flags: list[Flag]) -> None:
        self.data, self.path, self.flags = data, path, flags
        self.seen: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def flag(self, key: str, problem: str, value: Any = None) -> None:
        self.flags.append(Flag(self._p(key), problem, "" if value is None else short(value)))

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def text(self, key: str, allowed: Collection[str] | None = None) -> str | None:
        v = self.raw(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            self.flag(key, "expected text", v)
            return None
        s = v if isinstance(v, str) else _num_text(v)
        if allowed is not None and s not in allowed:
            self.flag(key, "value not on the FaceID page", s)
        return s

    def integer(self, key: str) -> int | None:
        v = self.raw(key)
        if v is None:
            return None
        if isinstance(v, bool):
            self.flag(key, "expected a whole number", v)
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v.strip())
        self.flag(key, "expected a whole number", v)
        return None

    def number(self, key: str, lo: float | None = None, hi: float | None = None) -> float | None:
        v = self.raw(key)
        if v is None:
            return None
        out: float | None = None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out = float(v)
        elif isinstance(v, str):
            try:
                out = float(v)
            except ValueError:
                out = None
        if out is None or not math.isfinite(out):
            self.flag(key, "expected a number", v)
            return None
        if (lo is not None and out < lo) or (hi is not None and out > hi):
            self.flag(key, f"outside the documented range [{lo:g}, {hi:g}]", v)
        return out

    def obj(self, key: str) -> Fields | None:
        v = self.raw(key)
        if v is None:
            return None
        if not isinstance(v, Mapping):
            self.flag(key, "expected an object", v)
            return None
        return Fields(v, self._p(key), self.flags)

    def extra(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in self.seen}


def _num_text(v: int | float) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


__all__ = ["Fields", "short"]
