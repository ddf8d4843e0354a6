"""Reading what an import is given: files named on the command line, folders walked for
``*.json``, ``*.jsonl`` and ``*.form`` (sorted, symlinks not followed), JSONL line by line,
one document at a time (``_documents``); and decoding each one, a saved callback unwrapped
(``decode``). A document that cannot be read comes out as a ``Refusal`` with the reason.

The storing side is ``faceid.store.importing``; nothing here touches the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from faceid.api.parse import loads_document
from faceid.core.errors import DocumentError

FOLDER_SUFFIXES = frozenset({".json", ".jsonl", ".form"})
#: A get_result with every image is a few MB; anything far larger is not one.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class _FileCount(Protocol):
    """What ``_documents`` counts the files it opens on (``ImportReport``)."""

    files: int


def decode(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """(body to store, decoded document): the file itself, or a saved callback's ``data``.

    Raises ``DocumentError`` with a plain reason (truncated JSON, not an object...).
    """
    stripped = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        doc = loads_document(raw)
        if "data" in doc and "biz_info" not in doc and "error_message" not in doc:
            body = _callback_data(doc.get("data"))
            return body, loads_document(body)
        return raw, doc
    if stripped.startswith((b"data=", b"sign=")) or b"&data=" in stripped[:4096]:
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            raise DocumentError("A form-encoded callback that is not UTF-8 text.") from None
        try:
            fields = parse_qs(text.strip(), keep_blank_values=True, max_num_fields=50)
        except ValueError:
            raise DocumentError("A form-encoded callback with too many fields.") from None
        values = fields.get("data") or []
        if len(values) != 1:
            raise DocumentError("A form-encoded callback needs exactly one data= field.")
        body = _callback_data(values[0])
        return body, loads_document(body)
    return raw, loads_document(raw)  # refuses, saying what is wrong


def unwrap(raw: bytes) -> bytes:
    """The get_result JSON inside ``raw`` (see ``decode``)."""
    return decode(raw)[0]


def _callback_data(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, dict):
        return json.dumps(data, ensure_ascii=False).encode("utf-8")
    raise DocumentError("A saved callback whose data field is not a JSON string.")


Document = tuple[str, str, bytes | Refusal]


def _documents(paths: Iterable[str | os.PathLike[str]], report: _FileCount) -> Iterator[Document]:
    """(label for messages, origin kept in the inbox, body or refusal), one at a time."""
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in _walk(path):
                report.files += 1
                yield from _read(file)
        elif path.is_file():
            report.files += 1
            yield from _read(path)
        else:
            yield str(path), str(path), Refusal(str(path), "no such file or folder")


def count_files(paths: Iterable[str | os.PathLike[str]]) -> int:
    """How many files ``import_paths`` will read (a listing: nothing is opened)."""
    total = 0
    for given in paths:
        path = Path(given)
        if path.is_dir():
            total += sum(1 for _ in _walk(path))
        elif path.is_file():
            total += 1
    return total


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in FOLDER_SUFFIXES:
                yield Path(root) / name


def _read(path: Path) -> Iterator[Document]:
    label = str(path)
    try:
        size = path.stat().st_size
        if path.suffix.lower() == ".jsonl":
            yield from _read_lines(path)
            return
        if size > MAX_DOCUMENT_BYTES:
            yield label, label, Refusal(label, f"larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
            return
        body = path.read_bytes()
    except OSError as exc:
        yield label, label, Refusal(label, f"cannot be read ({exc.strerror or 'I/O error'})")
        return
    yield label, label, body


def _read_lines(path: Path) -> Iterator[Document]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            label = f"{path}:{number}"
            if not line.strip():
                continue
            if len(line) > MAX_DOCUMENT_BYTES:
                yield label, label, Refusal(label, "line too long")
                continue
            yield label, label, line



__all__ = ["FOLDER_SUFFIXES", "MAX_DOCUMENT_BYTES", "Document", "Refusal", "count_files",
           "decode", "unwrap"]
